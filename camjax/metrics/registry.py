"""The metric registry: each metric file registers a :class:`MetricSpec` under its name.

A metric (:class:`Metric`) keeps running counts for one method: ``update(batch, out)``
with each evaluation batch and the predictor's output for it, ``merge(other)`` to add
another process's counts, ``result()`` for plain numbers. ``config.eval.metrics`` names
the metrics to compute; the one evaluation loop
(:func:`camjax.evaluation.runner.evaluate_stream`) creates one per name and method
(:func:`create`), and the report lays each spec's ``columns`` out under its ``table``.
This module only holds the table: the metric files fill it, and importing
:mod:`camjax.metrics` imports them all.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

NEEDS = frozenset({"boxes", "masks", "score_fn"})


@dataclasses.dataclass(frozen=True)
class MetricContext:
    """What a metric may need to know before its first batch."""

    image_hw: tuple[int, int]  # model input size of the eval batches
    has_masks: bool = False
    cam_thresholds: np.ndarray | None = None  # MaxBoxAcc/PxAP grid (None: 0.00..0.99)
    # images [B,H,W,3] (normalised for the model) -> softmax probabilities [B,C]; jitted.
    score_fn: Callable[[np.ndarray], np.ndarray] | None = None
    options: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )  # config.eval as a plain dict


class Metric(Protocol):
    """Running counts of one metric for one method over a stream of batches."""

    def update(self, batch: Mapping[str, np.ndarray], out: Mapping[str, Any]) -> None: ...

    def result(self) -> dict[str, Any]: ...  # plain floats / lists, percent where a rate

    def merge(self, other: Metric) -> None: ...  # add another host's/shard's counts


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """A registered metric: how to build it and where its numbers go in the report."""

    name: str
    factory: Callable[[MetricContext], Metric]
    table: str  # report table heading the columns go under
    columns: tuple[tuple[str, str], ...]  # (result key, column header) shown in report.md
    needs: frozenset[str] = frozenset()  # subset of NEEDS
    description: str = ""  # one sentence under the table: formula + paper
    protocol: str | None = None  # the camjax.protocols maps it reads (None: extract's)

    def __post_init__(self):
        unknown = set(self.needs) - NEEDS
        if unknown:
            raise ValueError(f"metric {self.name!r} needs unknown inputs {sorted(unknown)}")


METRICS: dict[str, MetricSpec] = {}


def register(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to :data:`METRICS`; a second metric of the same name is an error."""
    if spec.name in METRICS:
        raise ValueError(f"metric {spec.name!r} is already registered")
    METRICS[spec.name] = spec
    return spec


def get(name: str) -> MetricSpec:
    """The spec registered as ``name``; ``ValueError`` listing the known names."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def check_names(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of known metric names (``ValueError`` on an unknown one)."""
    if isinstance(names, str):
        names = tuple(n for n in names.split(",") if n)
    names = tuple(str(n) for n in names)
    for n in names:
        get(n)
    return names


def create(name: str, ctx: MetricContext) -> Metric:
    """A fresh metric ``name`` for one method; ``ValueError`` listing the known names."""
    return get(name).factory(ctx)


def available(spec: MetricSpec, *, has_boxes: bool, has_masks: bool, has_score_fn: bool) -> bool:
    """Whether the data and predictor give everything ``spec`` needs."""
    have = {"boxes": has_boxes, "masks": has_masks, "score_fn": has_score_fn}
    return all(have[n] for n in spec.needs)
