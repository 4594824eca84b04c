"""CAM methods: one file per method, one registry, one combine step.

``METHODS[name]`` is a :class:`~camjax.methods.registry.Method` (``.display`` is its
report name); calling it, or :func:`compute_maps`, gives raw maps for any Linen model
at any layer (:mod:`camjax.methods.layer`), any NNX model
(:mod:`camjax.methods.nnx_models`) or any JAX model given as two functions
(:mod:`camjax.methods.functions`), for class ids or any target
(:mod:`camjax.methods.targets`), with optional smoothing (:mod:`camjax.methods.smoothing`).
The import order below is the report's row order.
"""

# Each file registers its method; this order is the registry's (and the report's) order.
# isort: off
from camjax.methods import cam  # noqa: F401
from camjax.methods import gradcam  # noqa: F401
from camjax.methods import gradcampp  # noqa: F401
from camjax.methods import hirescam  # noqa: F401
from camjax.methods import xgradcam  # noqa: F401
from camjax.methods import scorecam  # noqa: F401
from camjax.methods import layercam  # noqa: F401
from camjax.methods import backprop  # noqa: F401

# isort: on
from camjax.methods.checks import CamjaxWarning
from camjax.methods.compute import compute_maps, output_shape
from camjax.methods.cuts import cut
from camjax.methods.functions import Functions
from camjax.methods.layer import Cut
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
    "CamjaxWarning",
    "ClassLogit",
    "ClassProbability",
    "Cut",
    "Functions",
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
