"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy
for Attribution Methods", ICML 2022).

For each removed fraction ``p`` in ``config.eval.road_fractions`` (default 0.2, 0.4,
0.6, 0.8), the ``p`` most salient pixels (MoRF) or the ``p`` least salient (LeRF) are
replaced by noisy linear imputation (each the 1/6-direct, 1/12-diagonal weighted mean
of its neighbours, solved as one sparse system, plus Gaussian noise of std
``config.eval.road_noise``, default 0.01 as the paper), and the
class probability is measured. Reported in percent: the mean MoRF probability (lower is
better), the mean LeRF probability (higher is better) and ``(LeRF - MoRF) / 2`` (higher
is better; pytorch-grad-cam's ``ROADCombined``). ``2 len(fractions)`` forwards per batch;
the imputation noise comes from a generator seeded by ``config.eval.road_seed`` (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.metrics import perturbation as pt
from camjax.metrics.registry import MetricContext, MetricSpec, register

DEFAULT_FRACTIONS = (0.2, 0.4, 0.6, 0.8)
NOISE = 0.01  # the paper's imputation noise (absolute, in the normalised input)


def road_curves(
    score_fn,
    images: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    fractions: tuple[float, ...],
    rng: np.random.Generator,
    noise: float = NOISE,
) -> tuple[np.ndarray, np.ndarray]:
    """``(morf [B, F], lerf [B, F])`` class probabilities after imputation."""
    b, h, w, _ = images.shape
    ranks = pt.order(maps)
    morf, lerf = [], []
    for p in fractions:
        count = int(round(p * h * w))
        most = pt.top_mask(ranks, count, (h, w))
        least = pt.top_mask(ranks[:, ::-1], count, (h, w))
        for mask, into in ((most, morf), (least, lerf)):
            x = np.stack([pt.impute(images[i], mask[i], noise, rng) for i in range(b)])
            into.append(pt.class_prob(score_fn, x, classes))
    return np.stack(morf, 1), np.stack(lerf, 1)


class Road:
    """Sums of the mean MoRF and LeRF probabilities over the valid images."""

    def __init__(self, ctx: MetricContext):
        self.score_fn = ctx.score_fn
        self.options = dict(ctx.options)
        fr = tuple(float(f) for f in pt.option(self.options, "road_fractions", DEFAULT_FRACTIONS))
        if not fr or not all(0.0 < f < 1.0 for f in fr):
            raise ValueError(f"road_fractions must be fractions in (0, 1), got {fr}")
        self.fractions = fr
        self.rng = np.random.default_rng(int(pt.option(self.options, "road_seed", 0)))
        self.noise = float(pt.option(self.options, "road_noise", NOISE))
        self.morf = 0.0
        self.lerf = 0.0
        self.count = 0

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        images, maps, classes, valid = pt.explained(batch, out, self.options)
        morf, lerf = road_curves(
            self.score_fn, images, maps, classes, self.fractions, self.rng, self.noise
        )
        self.morf += float(morf.mean(1)[valid].sum())
        self.lerf += float(lerf.mean(1)[valid].sum())
        self.count += int(valid.sum())

    def merge(self, other: Road) -> None:
        self.morf += other.morf
        self.lerf += other.lerf
        self.count += other.count

    def result(self) -> dict[str, Any]:
        n = max(self.count, 1)
        morf, lerf = 100.0 * self.morf / n, 100.0 * self.lerf / n
        return {
            "road_morf": morf,
            "road_lerf": lerf,
            "road_combined": (lerf - morf) / 2,
            "road_fractions": list(self.fractions),
        }


register(
    MetricSpec(
        name="road",
        factory=Road,
        table=pt.TABLE,
        columns=(
            ("road_morf", "ROAD MoRF (lower)"),
            ("road_lerf", "ROAD LeRF"),
            ("road_combined", "ROAD (LeRF-MoRF)/2"),
        ),
        needs=frozenset({"score_fn"}),
        description=(
            "ROAD: class probability after the most / least salient pixels are replaced by "
            "noisy linear imputation, mean over removed fractions (Rong et al., ICML 2022)."
        ),
    )
)
