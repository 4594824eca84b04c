"""Insertion and deletion AUC (Petsiuk et al., "RISE", BMVC 2018, Sec. 4.1).

Deletion: pixels are set to 0 (the mean colour) from the most salient down,
``ceil(HW / S)`` per step for ``S = config.eval.faithfulness_steps`` steps (default 8);
the class probability after each step (the untouched image first) is a curve on
``[0, 1]`` whose trapezoid area is the AUC (lower is better). Insertion: pixels of the
image are put, in the same order, into its blurred copy (an 11-tap Gaussian of sigma 5,
as the paper's code); higher is better. AUCs in percent of the unit square;
``2 (S + 1)`` forwards per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.metrics import perturbation as pt
from camjax.metrics.registry import MetricContext, MetricSpec, register

DEFAULT_STEPS = 8


def curves(
    score_fn, images: np.ndarray, maps: np.ndarray, classes: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(insertion [B, S+1], deletion [B, S+1])`` class-probability curves."""
    hw = images.shape[1:3]
    ranks = pt.order(maps)
    start = pt.blur(images)
    ins, dele = [], []
    for count in pt.step_counts(hw[0] * hw[1], steps):
        mask = pt.top_mask(ranks, count, hw)[..., None]
        ins.append(pt.class_prob(score_fn, np.where(mask, images, start), classes))
        dele.append(pt.class_prob(score_fn, np.where(mask, 0.0, images), classes))
    return np.stack(ins, 1), np.stack(dele, 1)


class InsertionDeletion:
    """Sums of the insertion and deletion AUCs over the valid images."""

    def __init__(self, ctx: MetricContext):
        self.score_fn = ctx.score_fn
        self.options = dict(ctx.options)
        self.steps = int(pt.option(self.options, "faithfulness_steps", DEFAULT_STEPS))
        pt.step_counts(1, self.steps)  # checks the option before the first batch
        self.insertion = 0.0
        self.deletion = 0.0
        self.count = 0

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        images, maps, classes, valid = pt.explained(batch, out, self.options)
        ins, dele = curves(self.score_fn, images, maps, classes, self.steps)
        self.insertion += float(pt.auc(ins)[valid].sum())
        self.deletion += float(pt.auc(dele)[valid].sum())
        self.count += int(valid.sum())

    def merge(self, other: InsertionDeletion) -> None:
        self.insertion += other.insertion
        self.deletion += other.deletion
        self.count += other.count

    def result(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {
            "insertion_auc": 100.0 * self.insertion / n,
            "deletion_auc": 100.0 * self.deletion / n,
            "insertion_deletion_steps": self.steps,
        }


register(
    MetricSpec(
        name="insertion_deletion",
        factory=InsertionDeletion,
        table=pt.TABLE,
        columns=(("insertion_auc", "Insertion AUC"), ("deletion_auc", "Deletion AUC (lower)")),
        needs=frozenset({"score_fn"}),
        description=(
            "Insertion / deletion: area under the class probability as the most salient "
            "pixels are added to a blurred image / set to 0 (Petsiuk et al., BMVC 2018)."
        ),
    )
)
