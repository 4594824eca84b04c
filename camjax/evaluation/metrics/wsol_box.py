"""MaxBoxAcc and MaxBoxAccV2 under the ``wsol`` protocol: Choe et al. (CVPR 2020) exactly.

The ground-truth class's raw map resized with OpenCV's ``INTER_CUBIC``, min-max
normalised, cut as ``uint8 > int(t * max)`` at ``np.arange(0, 1, 1 / steps)``, boxes of
the contours as the benchmark makes them (:mod:`camjax.protocols.wsol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register
from camjax.protocols import blacklist, predict, wsol


class WsolBox:
    """The benchmark's two ``BoxEvaluator`` configurations on one stream."""

    def __init__(self, ctx: MetricContext):
        self.options = dict(ctx.options)
        self.hw = tuple(ctx.image_hw)
        ts = wsol.thresholds(int(self.options.get("cam_threshold_steps", 100)))
        self.v2 = wsol.WsolBoxCounts(ts, wsol.IOU_V2, multi_contour=True)
        self.v1 = wsol.WsolBoxCounts(ts, (0.5,), multi_contour=False)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_maps = np.asarray(predict.maps_for(out, "wsol")["gt_maps"])[:, 0]
        keep = blacklist.counted(batch, self.options)
        scoremaps = np.zeros((len(gt_maps),) + self.hw, np.float32)
        scoremaps[keep] = wsol.resize_and_normalise(gt_maps[keep], self.hw)
        gt_boxes, gt_valid = inputs.gt(batch)
        both = {i: wsol.boxes_both(scoremaps[i], self.v2.ts) for i in np.flatnonzero(keep)}
        self.v2.update(scoremaps, gt_boxes, gt_valid, keep, {i: b[0] for i, b in both.items()})
        self.v1.update(scoremaps, gt_boxes, gt_valid, keep, {i: b[1] for i, b in both.items()})

    def merge(self, other: WsolBox) -> None:
        self.v2.merge(other.v2)
        self.v1.merge(other.v1)

    def result(self) -> dict[str, Any]:
        v2, v1 = self.v2.result(), self.v1.result()
        per = v2["accuracy_per_iou"]
        return {
            "wsol_max_box_acc": v1["accuracy_per_iou"]["50"],
            "wsol_max_box_acc_v2": v2["mean"],
            "wsol_iou30": per["30"],
            "wsol_iou50": per["50"],
            "wsol_iou70": per["70"],
            "wsol_best_threshold_per_iou": v2["best_threshold_per_iou"],
            "num_examples": v2["num_examples"],
        }


SPEC = register(
    MetricSpec(
        name="wsol_box",
        factory=WsolBox,
        table="WSOL accuracy, protocol `wsol` (Choe et al. 2020 exactly)",
        columns=(
            ("wsol_max_box_acc", "MaxBoxAcc"),
            ("wsol_max_box_acc_v2", "MaxBoxAccV2"),
            ("wsol_iou30", "IoU 0.3"),
            ("wsol_iou50", "IoU 0.5"),
            ("wsol_iou70", "IoU 0.7"),
        ),
        needs=frozenset({"boxes"}),
        description=(
            "clovaai/wsolevaluation's BoxEvaluator: INTER_CUBIC resize, min-max, uint8 cut "
            "> int(t max), RETR_TREE contours (largest by contourArea for MaxBoxAcc), boxes "
            "(x, y, min(x+w, W-1), min(y+h, H-1)), float64 IoU (Choe et al. 2020)."
        ),
    )
)
