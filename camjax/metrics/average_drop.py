"""Average Drop and Increase in Confidence (Chattopadhyay et al., WACV 2018, Sec. 5.1).

With ``Y`` the class probability on the image and ``O`` on the image multiplied by the
class's map (in [0, 1], so masked-out pixels go to 0, the mean colour):
Average Drop ``= 100 * mean(max(0, Y - O) / Y)`` (lower is better), Increase in
Confidence ``= 100 * mean(Y < O)`` (higher is better). Two forwards per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.metrics import perturbation as pt
from camjax.metrics.registry import MetricContext, MetricSpec, register


class AverageDrop:
    """Sums of ``max(0, Y - O) / Y`` and of ``Y < O`` over the valid images."""

    def __init__(self, ctx: MetricContext):
        self.score_fn = ctx.score_fn
        self.options = dict(ctx.options)
        self.drop = 0.0
        self.increase = 0
        self.count = 0

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        images, maps, classes, valid = pt.explained(batch, out, self.options)
        y = pt.class_prob(self.score_fn, images, classes)[valid]
        o = pt.class_prob(self.score_fn, images * maps[..., None], classes)[valid]
        # Y is a softmax probability, > 0 unless it underflows; such an image counts 0.
        self.drop += float(np.sum(np.where(y > 0, np.maximum(y - o, 0) / np.maximum(y, 1e-30), 0)))
        self.increase += int(np.sum(y < o))
        self.count += int(valid.sum())

    def merge(self, other: AverageDrop) -> None:
        self.drop += other.drop
        self.increase += other.increase
        self.count += other.count

    def result(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {
            "average_drop": 100.0 * self.drop / n,
            "increase_in_confidence": 100.0 * self.increase / n,
            "faithfulness_images": self.count,
        }


register(
    MetricSpec(
        name="average_drop",
        factory=AverageDrop,
        table=pt.TABLE,
        columns=(("average_drop", "Avg drop (lower)"), ("increase_in_confidence", "Increase")),
        needs=frozenset({"score_fn"}),
        description=(
            "Average Drop = mean max(0, Y - O) / Y, Increase in Confidence = share of Y < O, "
            "O the class probability on image x map (Chattopadhyay et al., WACV 2018)."
        ),
    )
)
