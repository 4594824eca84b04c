"""Boxes between model-input pixels and original-image pixels.

An image of ``H x W`` pixels resized (without cropping) to the model's ``h x w`` input:
input pixel ``i`` covers the continuous span ``[i, i + 1) * W / w`` of the original.
Convention (pixel centres, as bilinear resizing with half-pixel centres uses): an
original pixel belongs to a box when its centre ``x' + 0.5`` lies in the box's continuous
span. For an inclusive input box ``[x0, x1]``:

    x0' = ceil(x0 * W / w - 0.5),   x1' = ceil((x1 + 1) * W / w - 0.5) - 1,

clipped to ``[0, W - 1]`` and widened to at least one pixel (when the original is smaller
than the input, an input pixel may hold no original pixel centre). The inverse map is
the same formula with the two sizes swapped. When the original is at least as large as
the input (the usual case), every original pixel lies in exactly one input pixel, and
``to_input(to_original(b)) == b`` exactly, for any aspect ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _axis(lo: np.ndarray, hi: np.ndarray, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    r = dst / src
    new_lo = np.ceil(lo * r - 0.5).astype(np.int64)
    new_hi = np.ceil((hi + 1) * r - 0.5).astype(np.int64) - 1
    new_lo = np.clip(new_lo, 0, dst - 1)
    new_hi = np.clip(np.maximum(new_hi, new_lo), 0, dst - 1)
    return new_lo, new_hi


def rescale_boxes(
    boxes: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]
) -> np.ndarray:
    """Map inclusive ``(x0, y0, x1, y1)`` boxes ``[..., 4]`` from an image of
    ``from_size = (H, W)`` pixels to one of ``to_size = (H', W')`` (same content, resized).

    See the module docstring for the pixel-centre convention. Returns int32.
    """
    (fh, fw), (th, tw) = (int(s) for s in from_size), (int(s) for s in to_size)
    if min(fh, fw, th, tw) < 1:
        raise ValueError(f"image sizes must be positive, got {from_size} -> {to_size}")
    b = np.asarray(boxes, dtype=np.int64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes must end in an axis of 4 corners, got shape {b.shape}")
    x0, x1 = _axis(b[..., 0], b[..., 2], fw, tw)
    y0, y1 = _axis(b[..., 1], b[..., 3], fh, th)
    return np.stack([x0, y0, x1, y1], axis=-1).astype(np.int32)
