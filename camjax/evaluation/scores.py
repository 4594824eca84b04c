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

from collections.abc import Mapping
from typing import Any

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


class MethodScores:
    """Running counts of one method's localization metrics over a stream of batches.

    ``update(batch, out)`` takes an evaluation batch and what ``camjax.extract`` returned
    for it; ``result()`` gives percentages (keys listed in ``camjax.evaluation.report``).
    """

    def __init__(self, top_k: int, has_masks: bool = False):
        self.top_k = top_k
        self.has_masks = has_masks
        self.count = 0
        self.hits = {"loc_top1": 0, "loc_top5": 0, "heur_top1": 0, "heur_top5": 0, "gt_known": 0}
        self.box_eval = None
        self.mask_eval = None

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        from camjax.metrics import gt_known_hits, localization_hits

        labels = np.asarray(batch["label"])
        valid = np.asarray(batch.get("valid", np.ones(len(labels), bool)), bool)
        gt_boxes, gt_valid = np.asarray(batch["bboxes"]), np.asarray(batch["bbox_valid"])
        class_ids = np.asarray(out["class_ids"])
        loc = localization_hits(class_ids, np.asarray(out["boxes"]), labels, gt_boxes, gt_valid)
        guesses, guess_boxes = heuristic_guesses(class_ids, np.asarray(out["maps"]))
        heur = localization_hits(
            guesses, guess_boxes, labels, gt_boxes, gt_valid, ranked_classes=class_ids
        )
        gt_box = np.asarray(out["gt_boxes"])[:, 0]
        known = gt_known_hits(gt_box, gt_boxes, gt_valid)
        for key, hit in (
            ("loc_top1", loc["loc_top1"]),
            ("loc_top5", loc["loc_top5"]),
            ("heur_top1", heur["loc_top1"]),
            ("heur_top5", heur["loc_top5"]),
            ("gt_known", known),
        ):
            self.hits[key] += int(np.asarray(hit)[valid].sum())
        self.count += int(valid.sum())
        gt_maps = np.asarray(out["gt_maps"])[:, 0]
        self._box_evaluator().update(gt_maps, gt_boxes, gt_valid, valid)
        if self.has_masks:
            self._mask_evaluator().update(gt_maps, np.asarray(batch["mask"]), valid)

    def _box_evaluator(self):
        if self.box_eval is None:
            from camjax.evaluators import BoxEvaluator

            self.box_eval = BoxEvaluator()
        return self.box_eval

    def _mask_evaluator(self):
        if self.mask_eval is None:
            from camjax.evaluators import MaskEvaluator

            self.mask_eval = MaskEvaluator()
        return self.mask_eval

    def result(self) -> dict[str, Any]:
        n = max(self.count, 1)
        err = lambda k: 100.0 * (1.0 - self.hits[k] / n)
        out = {
            "loc_top1_error": err("loc_top1"),
            "loc_top5_error": err("loc_top5"),
            "heuristic_top1_error": err("heur_top1"),
            "heuristic_top5_error": err("heur_top5"),
            "gt_known_loc": 100.0 * self.hits["gt_known"] / n,
            "pxap": None,
        }
        out.update(self._box_evaluator().result())
        if self.has_masks:
            out["pxap"] = self._mask_evaluator().result()["pxap"]
        return out


def heuristic_guesses(class_ids: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's five test-set guesses from the top-3 maps: ``([B, 5], [B, 5, 4])``."""
    from camjax.boxes import heuristic_boxes

    return heuristic_boxes(maps, class_ids)
