"""MaxBoxAcc (Choe et al., CVPR 2020, Sec. 4.1).

Box accuracy of the ground-truth class's map at IoU 0.5, the box of the largest
connected component of ``map >= t``, maximised over the CAM threshold grid ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register


class MaxBoxAcc:
    """Counts of :class:`camjax.evaluators.BoxEvaluator` (one IoU, largest component)."""

    def __init__(self, ctx: MetricContext):
        from camjax.evaluators import BoxEvaluator

        self.evaluator = BoxEvaluator(ctx.cam_thresholds, (inputs.IOU_LOC,), multi_contour=False)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        self.evaluator.update(inputs.gt_maps(out), gt_boxes, gt_valid, inputs.valid(batch))

    def merge(self, other: MaxBoxAcc) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        return {"max_box_acc": self.evaluator.result()["max_box_acc"]}


SPEC = register(
    MetricSpec(
        name="max_box_acc",
        factory=MaxBoxAcc,
        table=inputs.TABLE_WSOL,
        columns=(("max_box_acc", "MaxBoxAcc"),),
        needs=frozenset({"boxes"}),
        description=(
            "MaxBoxAcc: best accuracy over CAM thresholds at IoU 0.5, largest component by "
            "pixel count, float cut (the benchmark's exact rule: wsol_box)."
        ),
    )
)
