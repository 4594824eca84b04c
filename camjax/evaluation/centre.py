"""The centre baseline: a class-agnostic map that peaks in the middle of the image.

Choe et al. (CVPR 2020, "Evaluating WSOL Methods Right") compare every method with a
centre-Gaussian map, which needs no network at all. We do the same so that a reader of
the report sees what the numbers mean on their data: the baseline's map is

    M(x, y) = exp(-((x - cx)^2 / (2 sx^2) + (y - cy)^2 / (2 sy^2))),
    cx = (W - 1) / 2, cy = (H - 1) / 2, sx = W / 4, sy = H / 4,

the same for every class. Thresholding it at a fraction t of its max keeps the ellipse
``r^2 <= 2 ln(1/t)`` (in sigma units), so its box is a centred box whose side shrinks as
``t`` grows: at the paper's t = 0.2 the box spans ``2 * sqrt(2 ln 5) / 4 = 0.90`` of each
side (clipped to the image), and MaxBoxAcc over the threshold grid is the best centred
box over every scale from the full image down to a single pixel. It goes through exactly
the same box and metric code as CAM, with the model's predicted classes for the
class-aware errors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

CENTRE_SIGMA_FRACTION = 0.25  # sigma as a fraction of the image side (see module doc)
CENTRE_THRESHOLD = 0.2  # the paper's box threshold, as camjax.extract's default


def centre_map(height: int, width: int) -> np.ndarray:
    """The ``[H, W]`` float32 centre-Gaussian map in [0, 1] with its max at the centre."""
    if height < 1 or width < 1:
        raise ValueError(f"map size must be positive, got {height}x{width}")
    ys = (np.arange(height, dtype=np.float64) - (height - 1) / 2) / (CENTRE_SIGMA_FRACTION * height)
    xs = (np.arange(width, dtype=np.float64) - (width - 1) / 2) / (CENTRE_SIGMA_FRACTION * width)
    m = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return (m / m.max()).astype(np.float32)


def centre_maps(batch: int, num_maps: int, height: int, width: int) -> np.ndarray:
    """``[batch, num_maps, H, W]`` copies of :func:`centre_map` (a broadcast view)."""
    return np.broadcast_to(centre_map(height, width), (batch, num_maps, height, width))


@functools.lru_cache(maxsize=8)
def centre_box(height: int, width: int) -> np.ndarray:
    """The centre map's box at :data:`CENTRE_THRESHOLD` (int32 ``[4]``, read-only)."""
    from camjax.boxes import largest_component_box

    one = np.ascontiguousarray(centre_map(height, width)[None, None])
    box = np.array(np.asarray(largest_component_box(one, CENTRE_THRESHOLD))[0, 0], np.int32)
    box.setflags(write=False)
    return box


def centre_prediction(first: Mapping[str, Any], image_hw: tuple[int, int]) -> dict[str, Any]:
    """What a predictor returns for the centre baseline on a batch: the network's
    classification (``first``: a network method's output for the same batch) with
    centre maps for every class and their box at the paper's 20% threshold."""
    class_ids = np.asarray(first["class_ids"])
    b, k = class_ids.shape
    h, w = image_hw
    maps = centre_maps(b, k, h, w)
    box = centre_box(h, w)
    return {
        "logits": first["logits"],
        "class_ids": class_ids,
        "probs": first["probs"],
        "maps": maps,
        "boxes": np.broadcast_to(box, (b, k, 4)),
        "gt_maps": centre_maps(b, 1, h, w),
        "gt_boxes": np.broadcast_to(box, (b, 1, 4)),
    }
