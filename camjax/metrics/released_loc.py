"""Localization error under the ``released`` protocol (zhoubolei/CAM's evaluation script).

Each top-5 map becomes the released 8-bit heatmap and is boxed by ``dt_box`` (levels
20/100/110): errors with ``bbox1``, with ``bbox2``, and with the heuristic
``[top-1 bbox1, top-1 bbox2, top-2 bbox1, top-2 bbox2, top-3 bbox1]``
(``ILSVRC_evaluate_bbox.m`` l. 109-153; :mod:`camjax.protocols.released`). GT-known uses
``bbox1`` of the ground-truth class's map. ``eval.released_jpeg_quality`` (default none)
adds the JPEG round trip of the released heatmaps. Rows in ``eval.blacklist`` are skipped.
With ``eval.ten_crop`` the predictor gives ``boxes12`` from the ten crops, at the original
image size, scored against ``orig_bboxes`` (:func:`camjax.protocols.predict.ten_crop_released`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.metrics import inputs
from camjax.metrics.loc_error import LocalizationErrorEvaluator
from camjax.metrics.registry import MetricContext, MetricSpec, register
from camjax.protocols import blacklist, predict, released

_SETS = ("bbox1", "bbox2", "heuristic")


class ReleasedLoc:
    """Three localization errors (bbox1, bbox2, heuristic) and GT-known, as released."""

    def __init__(self, ctx: MetricContext):
        self.options = dict(ctx.options)
        self.jpeg = self.options.get("released_jpeg_quality") or None
        # Ten-crop boxes live in each original image: no common size to check them against.
        hw = None if self.options.get("ten_crop") else ctx.image_hw
        self.evaluators = {
            s: LocalizationErrorEvaluator(iou_threshold=inputs.IOU_LOC, image_hw=hw) for s in _SETS
        }
        self.has_heuristic = False

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        o = predict.maps_for(out, "released")
        gt_boxes, gt_valid = inputs.gt(batch)
        if "boxes12" in o:  # ten-crop: classes from the crops' mean, original-size boxes
            class_ids, b = np.asarray(o["class_ids"]), np.asarray(o["boxes12"])
            gt_boxes = np.asarray(batch["orig_bboxes"])
            k = class_ids.shape[1]
        else:
            class_ids = np.asarray(out["class_ids"])
            k = class_ids.shape[1]
            maps = np.concatenate([np.asarray(o["maps"])[:, :k], np.asarray(o["gt_maps"])], axis=1)
            b = released.boxes(maps, self.jpeg)  # [B, k + 1, 2, 4]
        labels = np.asarray(batch["label"])
        keep = blacklist.counted(batch, self.options)
        for j, name in enumerate(_SETS[:2]):
            self.evaluators[name].update(
                class_ids, b[:, :k, j], labels, gt_boxes, gt_valid, keep,
                gt_known_boxes=b[:, k, j],
            )  # fmt: skip
        if k >= 3:
            guesses, boxes = released.heuristic(class_ids, b[:, :k])
            self.evaluators["heuristic"].update(
                guesses, boxes, labels, gt_boxes, gt_valid, keep, ranked_classes=class_ids
            )
            self.has_heuristic = True

    def merge(self, other: ReleasedLoc) -> None:
        for name in _SETS[:2]:
            self.evaluators[name].merge(other.evaluators[name])
        if other.has_heuristic:
            self.evaluators["heuristic"].merge(other.evaluators["heuristic"])
            self.has_heuristic = True

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _SETS:
            if name == "heuristic" and not self.has_heuristic:
                out.update(released_heuristic_top1_error=None, released_heuristic_top5_error=None)
                continue
            r = self.evaluators[name].result()
            out[f"released_{name}_top1_error"] = r["loc_top1_error"]
            out[f"released_{name}_top5_error"] = r.get("loc_top5_error")
            if name != "heuristic":
                out[f"released_{name}_gt_known"] = r["gt_known_loc"]
        out["num_examples"] = self.evaluators["bbox1"].result()["num_examples"]
        return out


register(
    MetricSpec(
        name="released_loc",
        factory=ReleasedLoc,
        table="Localization error, protocol `released` (zhoubolei/CAM evaluation code)",
        columns=(
            ("released_bbox1_top1_error", "bbox1 top-1"),
            ("released_bbox1_top5_error", "bbox1 top-5"),
            ("released_bbox2_top1_error", "bbox2 top-1"),
            ("released_bbox2_top5_error", "bbox2 top-5"),
            ("released_heuristic_top1_error", "heuristic top-1"),
            ("released_heuristic_top5_error", "heuristic top-5"),
            ("released_bbox1_gt_known", "GT-known (bbox1)"),
        ),
        needs=frozenset({"boxes"}),
        protocol="released",
        description=(
            "Released heatmaps (bicubic resize, divided by the max, 8 bit) boxed by dt_box "
            "at levels 20/100/110; bbox1/bbox2 = its first/second box; heuristic = [top-1 "
            "bbox1, top-1 bbox2, top-2 bbox1, top-2 bbox2, top-3 bbox1] "
            "(ILSVRC_evaluate_bbox.m)."
        ),
    )
)
