"""Localization error top-1 / top-5 (Zhou et al., CVPR 2016, Sec. 3.1 and Table 2).

A box from each of the top-k predicted classes' maps; an image is right at top-n when
some ``j < n`` has ``class_ids[j] == label`` and ``IoU(box_j, g) >= 0.5`` for a
ground-truth box ``g``; error = ``100 * (1 - right / N)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register


class LocError:
    """Counts of :class:`camjax.evaluators.LocalizationErrorEvaluator` on the top-k boxes."""

    def __init__(self, ctx: MetricContext):
        from camjax.evaluators import LocalizationErrorEvaluator

        self.evaluator = LocalizationErrorEvaluator(
            iou_threshold=inputs.IOU_LOC, image_hw=ctx.image_hw
        )

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        self.evaluator.update(
            np.asarray(out["class_ids"]),
            np.asarray(out["boxes"]),
            np.asarray(batch["label"]),
            gt_boxes,
            gt_valid,
            inputs.valid(batch),
        )

    def merge(self, other: LocError) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        r = self.evaluator.result()
        return {
            "loc_top1_error": r["loc_top1_error"],
            "loc_top5_error": r.get("loc_top5_error"),  # None with fewer than 5 classes
            "num_examples_without_gt": r["num_examples_without_gt"],
        }


SPEC = register(
    MetricSpec(
        name="loc_error",
        factory=LocError,
        table=inputs.TABLE_LOC,
        columns=(("loc_top1_error", "top-1 loc. error"), ("loc_top5_error", "top-5 loc. error")),
        needs=frozenset({"boxes"}),
        description=(
            "A box per top-5 predicted class (20% of the min-max normalised map, i.e. "
            "min + 0.2 (max - min) of the raw map, largest connected component); right when "
            "the class is right and IoU >= 0.5 with any ground-truth box. The paper's rule "
            "(20% of the raw max) is paper_loc."
        ),
    )
)
