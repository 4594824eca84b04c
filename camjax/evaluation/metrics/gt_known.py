"""GT-known localization accuracy (Choe et al., CVPR 2020, Sec. 4).

The box of the ground-truth class's map (at the extraction threshold, largest connected
component) is right when ``IoU >= 0.5`` with some ground-truth box; accuracy in percent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register


class GtKnown:
    """Counts of :class:`camjax.evaluators.LocalizationErrorEvaluator` on the GT-class box."""

    def __init__(self, ctx: MetricContext):
        from camjax.evaluators import LocalizationErrorEvaluator

        self.evaluator = LocalizationErrorEvaluator(
            iou_threshold=inputs.IOU_LOC, image_hw=ctx.image_hw
        )

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        labels = np.asarray(batch["label"])
        known = np.asarray(out["gt_boxes"])
        # The guess is the GT class itself; only its box decides.
        self.evaluator.update(
            labels[:, None], known.reshape(-1, 1, 4), labels, gt_boxes, gt_valid,
            inputs.valid(batch), gt_known_boxes=known,
        )  # fmt: skip

    def merge(self, other: GtKnown) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        return {"gt_known_loc": self.evaluator.result()["gt_known_loc"]}


SPEC = register(
    MetricSpec(
        name="gt_known",
        factory=GtKnown,
        table=inputs.TABLE_WSOL,
        columns=(("gt_known_loc", "GT-known loc"),),
        needs=frozenset({"boxes"}),
        description=(
            "GT-known: box of the ground-truth class's min-max normalised map at 20%, IoU >= 0.5."
        ),
    )
)
