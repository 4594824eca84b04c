"""Localization error under the ``paper`` protocol (Zhou et al., CVPR 2016, Sec. 3, 4.1).

Each top-k class's map divided by its max (negatives clipped), pixels ``>= 20%`` kept,
box of the largest component; right when the class is right and IoU ``>= 0.5`` with a
ground-truth box. GT-known: the same box from the ground-truth class's map. Rows listed
in ``eval.blacklist`` are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.boxes import largest_component_box
from camjax.metrics import inputs
from camjax.metrics.loc_error import LocalizationErrorEvaluator
from camjax.metrics.registry import MetricContext, MetricSpec, register
from camjax.protocols import blacklist, predict

THRESHOLD = 0.2  # Zhou et al. 2016, Sec. 3: "above 20% of the max value of the CAM"


class PaperLoc:
    """Top-1/top-5 localization error and GT-known localization, ``paper`` protocol."""

    def __init__(self, ctx: MetricContext):
        self.options = dict(ctx.options)
        self.evaluator = LocalizationErrorEvaluator(
            iou_threshold=inputs.IOU_LOC, image_hw=ctx.image_hw
        )

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        o = predict.maps_for(out, "paper")
        class_ids = np.asarray(out["class_ids"])
        if "boxes" in o and o is not out:
            boxes, gt_known = np.asarray(o["boxes"]), np.asarray(o["gt_boxes"])
        else:  # maps as given (no protocol outputs): the paper's rule on them
            boxes = np.asarray(largest_component_box(np.asarray(o["maps"]), THRESHOLD))
            gt_known = np.asarray(largest_component_box(np.asarray(o["gt_maps"]), THRESHOLD))
        gt_boxes, gt_valid = inputs.gt(batch)
        self.evaluator.update(
            class_ids, boxes[:, : class_ids.shape[1]], np.asarray(batch["label"]), gt_boxes,
            gt_valid, blacklist.counted(batch, self.options), gt_known_boxes=gt_known,
        )  # fmt: skip

    def merge(self, other: PaperLoc) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        r = self.evaluator.result()
        return {
            "paper_top1_error": r["loc_top1_error"],
            "paper_top5_error": r.get("loc_top5_error"),
            "paper_gt_known": r["gt_known_loc"],
            "num_examples": r["num_examples"],
        }


register(
    MetricSpec(
        name="paper_loc",
        factory=PaperLoc,
        table="Localization error, protocol `paper` (Zhou et al. 2016, Sec. 3 as written)",
        columns=(
            ("paper_top1_error", "top-1 loc. error"),
            ("paper_top5_error", "top-5 loc. error"),
            ("paper_gt_known", "GT-known loc"),
        ),
        needs=frozenset({"boxes"}),
        protocol="paper",
        description=(
            "Each top-5 class's map divided by its max (negatives clipped), pixels >= 20% "
            "kept, box of the largest 8-connected component; right when the class is "
            "right and IoU >= 0.5 with a ground-truth box (Zhou et al. 2016, Sec. 3)."
        ),
    )
)
