"""The ``released`` protocol: the authors' heatmaps and boxes (zhoubolei/CAM).

``ILSVRC_generate_heatmap.m`` turns each of the top-5 maps into an 8-bit image: the map
resized bicubically (l. 344, 352), divided by its maximum (l. 353), written with
``imwrite`` (l. 356: ``uint8`` as ``round(255 v)`` with values clipped to [0, 1], then
JPEG). ``ILSVRC_evaluate_bbox.m`` runs ``dt_box`` on it with levels ``20 100 110``
(l. 63, 89) and scores three sets of guesses (l. 109-153):

- ``bbox1``: the first box of each top-5 class;
- ``bbox2``: the second box of each;
- the heuristic (``bboxCombine``): ``[top-1 bbox1, top-1 bbox2, top-2 bbox1,
  top-2 bbox2, top-3 bbox1]``, the first five of the interleaved list (l. 137).

camjax leaves out the JPEG step by default (lossy, codec-dependent); pass
``jpeg_quality`` (MATLAB's ``imwrite`` default is 75) to go through OpenCV's encoder.
With ``eval.ten_crop`` the maps are the ten crops merged as ``mergeTenCrop.m`` does
(:mod:`camjax.protocols.ten_crop`), whose absolute values keep negative CAM evidence;
single-crop maps have their negatives clipped (there is no single-crop path in the
released code).
"""

from __future__ import annotations

import numpy as np

from camjax.protocols import dt_box

# Guess order of the heuristic (ILSVRC_evaluate_bbox.m l. 109-137): (class rank, box).
HEURISTIC_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))


def to_grey(maps: np.ndarray, jpeg_quality: int | None = None) -> np.ndarray:
    """``maps [..., H, W]`` divided by their max -> uint8 as MATLAB's ``imwrite`` stores them.

    Each map is divided by its own maximum (a map whose max is not positive gives zeros),
    clipped to [0, 1] and stored as ``floor(255 v + 0.5)`` (round half away from zero).
    """
    m = np.nan_to_num(np.asarray(maps, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = m.max(axis=(-2, -1), keepdims=True)
    v = np.where(top > 0, m / np.where(top > 0, top, 1.0), 0.0)
    grey = np.floor(255.0 * np.clip(v, 0.0, 1.0) + 0.5).astype(np.uint8)
    if jpeg_quality is None:
        return grey
    import cv2

    flat = grey.reshape((-1,) + grey.shape[-2:])
    for i, g in enumerate(flat):
        ok, buf = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise ValueError("JPEG encoding failed")
        flat[i] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return flat.reshape(grey.shape)


def boxes(maps: np.ndarray, jpeg_quality: int | None = None) -> np.ndarray:
    """``bbox1`` and ``bbox2`` of every map: ``maps [..., H, W]`` -> int32 ``[..., 2, 4]``."""
    grey = to_grey(maps, jpeg_quality)
    flat = grey.reshape((-1,) + grey.shape[-2:])
    out = np.stack([dt_box.released_boxes(g) for g in flat]) if len(flat) else None
    if out is None:
        return np.zeros(grey.shape[:-2] + (2, 4), np.int32)
    return out.reshape(grey.shape[:-2] + (2, 4))


def heuristic(class_ids: np.ndarray, boxes12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The released five guesses: ``class_ids [B, >=3]``, ``boxes12 [B, >=3, 2, 4]`` ->
    ``(classes [B, 5], boxes [B, 5, 4])`` in :data:`HEURISTIC_ORDER`."""
    ranks = [r for r, _ in HEURISTIC_ORDER]
    which = [b for _, b in HEURISTIC_ORDER]
    return np.asarray(class_ids)[:, ranks], np.asarray(boxes12)[:, ranks, which]
