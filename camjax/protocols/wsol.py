"""The ``wsol`` protocol: MaxBoxAcc / MaxBoxAccV2 exactly as Choe et al. (CVPR 2020) compute.

clovaai/wsolevaluation, per image (facts from its code, camjax's own implementation):

1. the raw CAM is resized to the input size with ``cv2.resize(..., INTER_CUBIC)``
   (``inference.py`` l. 86-87) and min-max normalised (``normalize_scoremap``, l. 38-50:
   all zeros when the map holds a NaN or is constant);
2. at each CAM threshold ``t`` of ``np.arange(0, 1, interval)`` the map is cut as
   ``uint8(map * 255) > int(t * max)`` (``evaluation.py`` l. 132-139), contours found with
   ``RETR_TREE`` (holes included, l. 140-143); MaxBoxAcc keeps the contour of largest
   ``cv2.contourArea`` (l. 148-149: the polygon area, not the pixel count camjax's
   :class:`~camjax.metrics.max_box_acc.BoxEvaluator` uses), MaxBoxAccV2 every contour;
3. a contour's box is ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` from
   ``cv2.boundingRect`` (l. 153-157: one pixel wider and taller than the pixels), and
   ``(0, 0, 0, 0)`` when there is no contour (l. 145-146);
4. an image is right at ``(t, delta)`` when some box has IoU ``>= delta`` with some
   ground-truth box, IoU with "+1" areas in float64 (``calculate_multiple_iou``, l. 45-90);
   ``MaxBoxAcc(delta) = max_t`` accuracy, V2 the mean over ``delta`` in 0.3 / 0.5 / 0.7
   (the counts: :mod:`camjax.metrics.wsol_box`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def thresholds(steps: int = 100) -> np.ndarray:
    """The benchmark's grid ``np.arange(0, 1, 1 / steps)`` (its ``cam_curve_interval``)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.arange(0, 1, 1.0 / steps)


def resize_and_normalise(maps: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Step 1 for ``maps [N, h, w]``: float32 ``[N, H, W]`` in [0, 1]."""
    import cv2

    out = np.zeros((len(maps),) + tuple(hw), np.float32)
    for i, m in enumerate(np.asarray(maps, np.float32)):
        cam = cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
        if np.isnan(cam).any() or cam.min() == cam.max():
            continue
        cam -= cam.min()
        cam /= cam.max()
        out[i] = cam
    return out


def boxes_at(scoremap: np.ndarray, ts: Sequence[float], multi_contour: bool) -> list[np.ndarray]:
    """Steps 2-3 for one ``scoremap [H, W]`` in [0, 1]: int ``[n_t, 4]`` boxes per threshold."""
    every, largest = boxes_both(scoremap, ts)
    return every if multi_contour else largest


def boxes_both(scoremap: np.ndarray, ts: Sequence[float]) -> tuple[list, list]:
    """:func:`boxes_at` with and without ``multi_contour`` from one contour search."""
    import cv2

    h, w = scoremap.shape
    image = (np.asarray(scoremap, np.float32) * 255).astype(np.uint8)
    top = int(image.max())
    every, largest = [], []
    for t in ts:
        _, cut = cv2.threshold(image, int(t * top), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(cut, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            every.append(np.zeros((1, 4), np.int64))
            largest.append(every[-1])
            continue
        rects = np.asarray([cv2.boundingRect(c) for c in contours], np.int64)
        x, y, bw, bh = rects.T
        boxes = np.stack([x, y, np.minimum(x + bw, w - 1), np.minimum(y + bh, h - 1)], -1)
        # max() keeps the first of equal areas, as the benchmark's max(contours, key=...).
        best = max(range(len(contours)), key=lambda i: cv2.contourArea(contours[i]))
        every.append(boxes)
        largest.append(boxes[best : best + 1])
    return every, largest
