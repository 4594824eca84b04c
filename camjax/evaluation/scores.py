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
  ``IoU >= 0.5`` with some ground-truth box;
- MaxBoxAcc / MaxBoxAccV2 / PxAP of the ground-truth class's map (Choe et al. 2020).
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


class MethodScores:
    """Running counts of one method's localization metrics over a stream of batches.

    ``update(batch, out)`` takes an evaluation batch and what ``camjax.extract`` returned
    for it (with ``gt_labels``); ``result()`` gives percentages under the keys that
    ``camjax.evaluation.report`` prints. Counts live in ``camjax.evaluators``' streaming
    evaluators: the paper's errors (two :class:`LocalizationErrorEvaluator`, top-k boxes
    and heuristic guesses), MaxBoxAccV2 and MaxBoxAcc (:class:`BoxEvaluator`, any
    component / largest component) and PxAP (:class:`MaskEvaluator`).
    """

    def __init__(
        self,
        has_masks: bool = False,
        cam_thresholds: np.ndarray | None = None,
        image_hw: tuple[int, int] | None = None,
    ):
        from camjax.evaluators import BoxEvaluator, LocalizationErrorEvaluator, MaskEvaluator

        self.has_masks = has_masks
        self.has_heuristic = False
        self.loc = LocalizationErrorEvaluator(iou_threshold=IOU_LOC, image_hw=image_hw)
        self.heuristic = LocalizationErrorEvaluator(iou_threshold=IOU_LOC, image_hw=image_hw)
        self.box_v2 = BoxEvaluator(cam_thresholds)
        self.box_v1 = BoxEvaluator(cam_thresholds, (IOU_LOC,), multi_contour=False)
        self.mask = MaskEvaluator(cam_thresholds) if has_masks else None

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        labels = np.asarray(batch["label"])
        valid = np.asarray(batch.get("valid", np.ones(len(labels), bool)), bool)
        gt_boxes, gt_valid = np.asarray(batch["bboxes"]), np.asarray(batch["bbox_valid"])
        class_ids = np.asarray(out["class_ids"])
        self.loc.update(
            class_ids,
            np.asarray(out["boxes"]),
            labels,
            gt_boxes,
            gt_valid,
            valid,
            gt_known_boxes=np.asarray(out["gt_boxes"]),
        )
        if class_ids.shape[1] >= 3:  # the heuristic needs the top-3 classes' maps
            guesses, guess_boxes = heuristic_guesses(class_ids, np.asarray(out["maps"]))
            self.heuristic.update(
                guesses, guess_boxes, labels, gt_boxes, gt_valid, valid, ranked_classes=class_ids
            )
            self.has_heuristic = True
        gt_maps = np.asarray(out["gt_maps"])[:, 0]
        self.box_v2.update(gt_maps, gt_boxes, gt_valid, valid)
        self.box_v1.update(gt_maps, gt_boxes, gt_valid, valid)
        if self.mask is not None:
            self.mask.update(gt_maps, np.asarray(batch["mask"]), valid)

    def result(self) -> dict[str, Any]:
        loc = self.loc.result()
        heur = self.heuristic.result() if self.has_heuristic else {"loc_top1_error": None}
        v2, v1 = self.box_v2.result(), self.box_v1.result()
        return {
            "loc_top1_error": loc["loc_top1_error"],
            "loc_top5_error": loc.get("loc_top5_error"),
            "heuristic_top1_error": heur["loc_top1_error"],
            "heuristic_top5_error": heur.get("loc_top5_error"),
            "gt_known_loc": loc["gt_known_loc"],
            "max_box_acc": v1["max_box_acc"],
            "max_box_acc_v2": v2["max_box_acc_v2"],
            "max_box_acc_v2_per_iou": v2["max_box_acc_v2_per_iou"],
            "best_cam_threshold_per_iou": v2["best_threshold_per_iou"],
            "pxap": None if self.mask is None else self.mask.result()["pxap"],
            "num_examples_without_gt": loc["num_examples_without_gt"],
            "curve": {"cam_thresholds": v2["cam_thresholds"], "box_acc": v2["curve_per_iou"]},
        }


def heuristic_guesses(class_ids: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's five test-set guesses from the top-3 maps: ``([B, 5], [B, 5, 4])``.

    Classes (top-1, top-1, top-2, top-2, top-3) with the boxes of
    ``camjax.boxes.heuristic_boxes`` (tight, loose, tight, loose, loose).
    """
    from camjax.boxes import heuristic_boxes

    guesses = np.asarray(class_ids)[:, [0, 0, 1, 1, 2]]
    return guesses, np.asarray(heuristic_boxes(np.asarray(maps)[:, :3]))
