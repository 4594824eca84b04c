"""Per-method metric accumulators for the streaming evaluation.

One :class:`MethodScores` per method holds running counts only. It feeds the library's
streaming evaluators (``camjax.evaluators``) and adds the paper's class-aware errors:

- localization error top-1 / top-5 (Zhou et al. 2016, Sec. 3.1 / Table 2): the box of
  each of the top-k predicted classes' maps; an image is right at top-n when some
  ``j < n`` has ``class_ids[j] == label`` and ``IoU(box_j, g) >= 0.5`` for some
  ground-truth box ``g``; error = 100 * (1 - right / N);
- the test-set heuristic variant: the five (class, box) guesses (top-1 tight, top-1
  loose, top-2 tight, top-2 loose, top-3 loose) from ``camjax.boxes.heuristic_boxes``,
  scored the same way (top-1 = the first guess, top-5 = any of the five);
- GT-known localization accuracy: the box of the ground-truth class's map,
  ``IoU >= 0.5`` with some ground-truth box.
"""

from __future__ import annotations

import numpy as np

IOU_LOC = 0.5  # the paper's (and ILSVRC's) localization criterion


def classification_counts(
    logits: np.ndarray, labels: np.ndarray, valid: np.ndarray
) -> tuple[int, int, int]:
    """``(top-1 right, top-5 right, count)`` over the valid rows of a batch.

    Ties in the logits rank the lower class id first (``argsort`` is stable on ``-z``).
    """
    logits = np.asarray(logits)
    k = min(5, logits.shape[-1])
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    hit = order == np.asarray(labels)[:, None]
    valid = np.asarray(valid, bool)
    return int(hit[:, 0][valid].sum()), int(hit.any(-1)[valid].sum()), int(valid.sum())


def loc_hits(
    class_ids: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
) -> np.ndarray:
    """``[B, k]`` bool: guess ``j`` has the right class and IoU >= 0.5 with some GT box."""
    from camjax.metrics import iou

    ious = np.asarray(iou(np.asarray(boxes), np.asarray(gt_boxes)))  # [B, k, G]
    box_ok = ((ious >= IOU_LOC) & np.asarray(gt_valid, bool)[:, None, :]).any(-1)
    return box_ok & (np.asarray(class_ids) == np.asarray(labels)[:, None])
