"""MaxBoxAccV2 (Choe et al., CVPR 2020, Sec. 4.1 and their code's ``BoxEvaluator``).

Mean over IoU 0.3 / 0.5 / 0.7 of the best box accuracy over the CAM threshold grid, where
an image is right when the box of any connected component of the ground-truth class's
thresholded map reaches the IoU. Also keeps the accuracy-vs-threshold curve (figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


class MaxBoxAccV2:
    """Counts of :class:`camjax.evaluators.BoxEvaluator` (three IoUs, any component)."""

    def __init__(self, ctx: MetricContext):
        from camjax.evaluators import BoxEvaluator

        self.evaluator = BoxEvaluator(ctx.cam_thresholds, IOU_THRESHOLDS)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        self.evaluator.update(inputs.gt_maps(out), gt_boxes, gt_valid, inputs.valid(batch))

    def merge(self, other: MaxBoxAccV2) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        r = self.evaluator.result()
        return {
            "max_box_acc_v2": r["max_box_acc_v2"],
            "max_box_acc_v2_per_iou": r["max_box_acc_v2_per_iou"],
            "best_cam_threshold_per_iou": r["best_threshold_per_iou"],
            "num_examples_without_gt": r["num_examples_without_gt"],
            "curve": {"cam_thresholds": r["cam_thresholds"], "box_acc": r["curve_per_iou"]},
        }


SPEC = register(
    MetricSpec(
        name="max_box_acc_v2",
        factory=MaxBoxAccV2,
        table=inputs.TABLE_WSOL,
        columns=(
            ("max_box_acc_v2", "MaxBoxAccV2"),
            ("max_box_acc_v2_per_iou.30", "IoU 0.3"),
            ("max_box_acc_v2_per_iou.50", "IoU 0.5"),
            ("max_box_acc_v2_per_iou.70", "IoU 0.7"),
        ),
        needs=frozenset({"boxes"}),
        description=(
            "MaxBoxAccV2: mean over IoU 0.3/0.5/0.7 of the best accuracy over CAM "
            "thresholds, any component's box counts; float cut, exact pixel extents (the "
            "benchmark's uint8 rule and contour boxes: wsol_box)."
        ),
    )
)
