"""CAM methods: one file per method, one registry, one combine step.

``METHODS[name]`` is a :class:`~camjax.methods.registry.Method` (``.display`` is its
report name); calling it, or :func:`compute_maps`, gives raw maps for any Linen model
at any layer (:mod:`camjax.methods.layer`), for class ids or any target
(:mod:`camjax.methods.targets`), with optional smoothing (:mod:`camjax.methods.smoothing`).
The import order below is the report's row order.
"""

# isort: off  (each file registers its method; this order is the registry's order)
from camjax.methods import (
    backprop,  # noqa: F401
    cam,  # noqa: F401
    gradcam,  # noqa: F401
    gradcampp,  # noqa: F401
    hirescam,  # noqa: F401
    layercam,  # noqa: F401
    scorecam,  # noqa: F401
    xgradcam,  # noqa: F401
)

# isort: on
from camjax.methods.compute import compute_maps, output_shape
from camjax.methods.layer import Cut, cut
from camjax.methods.registry import METHODS, Method, get, register
from camjax.methods.smoothing import TTA, SmoothGrad
from camjax.methods.targets import (
    ClassLogit,
    ClassProbability,
    RegionSum,
    Similarity,
    per_image,
)

__all__ = [
    "METHODS",
    "TTA",
    "ClassLogit",
    "ClassProbability",
    "Cut",
    "Method",
    "RegionSum",
    "Similarity",
    "SmoothGrad",
    "compute_maps",
    "cut",
    "get",
    "output_shape",
    "per_image",
    "register",
]
