"""PxAP (Choe et al., CVPR 2020, Sec. 4.2): pixel average precision of the maps.

The area under the pixel precision-recall curve of the ground-truth class's map against
the foreground mask, over the CAM threshold grid; pixels marked 255 are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.evaluation.metrics import inputs
from camjax.evaluation.registry import MetricContext, MetricSpec, register


class PxAP:
    """Counts of :class:`camjax.evaluators.MaskEvaluator`."""

    def __init__(self, ctx: MetricContext):
        from camjax.evaluators import MaskEvaluator

        self.evaluator = MaskEvaluator(ctx.cam_thresholds)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        self.evaluator.update(inputs.gt_maps(out), np.asarray(batch["mask"]), inputs.valid(batch))

    def merge(self, other: PxAP) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        return {"pxap": self.evaluator.result()["pxap"]}


SPEC = register(
    MetricSpec(
        name="pxap",
        factory=PxAP,
        table=inputs.TABLE_WSOL,
        columns=(("pxap", "PxAP"),),
        needs=frozenset({"masks"}),
        description="PxAP: area under the pixel precision-recall curve (Choe et al. 2020).",
    )
)
