"""Compatibility names: CAM's relatives now live in :mod:`camjax.methods`.

``METHODS[name](model, variables, images, class_ids, **kw)`` gives raw maps
``[B, N, h, w]`` as before (``layer="head"`` by default for a camjax ``CAMNet``), and
the functions below are the same registered methods under their old names. New code
should use :func:`camjax.methods.compute_maps` and :mod:`camjax.methods`.
"""

from __future__ import annotations

from camjax.methods import METHODS

cam = METHODS["cam"]
gradcam = METHODS["gradcam"]
gradcampp = METHODS["gradcampp"]
hirescam = METHODS["hirescam"]
xgradcam = METHODS["xgradcam"]
scorecam = METHODS["scorecam"]
layercam = METHODS["layercam"]
backprop = METHODS["backprop"]

__all__ = [
    "METHODS",
    "backprop",
    "cam",
    "gradcam",
    "gradcampp",
    "hirescam",
    "layercam",
    "scorecam",
    "xgradcam",
]
