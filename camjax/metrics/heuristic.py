"""The paper's test-set heuristic localization error (Zhou et al., CVPR 2016, Sec. 3.1).

Five ``(class, box)`` guesses from the top-3 maps: top-1 tight, top-1 loose, top-2
tight, top-2 loose, top-3 loose (``camjax.boxes.heuristic_boxes``), scored like the
localization error: top-1 = the first guess, top-5 = any of the five. Needs at least
three classes; with fewer the result is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from camjax.boxes import heuristic_boxes
from camjax.metrics import inputs
from camjax.metrics.loc_error import LocalizationErrorEvaluator
from camjax.metrics.registry import MetricContext, MetricSpec, register


def heuristic_guesses(class_ids: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The five guesses from the top-3 maps: ``([B, 5], [B, 5, 4])``."""
    guesses = np.asarray(class_ids)[:, [0, 0, 1, 1, 2]]
    return guesses, np.asarray(heuristic_boxes(np.asarray(maps)[:, :3]))


class Heuristic:
    """Counts of a :class:`LocalizationErrorEvaluator` on the five guesses."""

    def __init__(self, ctx: MetricContext):
        self.evaluator = LocalizationErrorEvaluator(
            iou_threshold=inputs.IOU_LOC, image_hw=ctx.image_hw
        )
        self.seen = False

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        class_ids = np.asarray(out["class_ids"])
        if class_ids.shape[1] < 3:  # the heuristic needs the top-3 classes' maps
            return
        gt_boxes, gt_valid = inputs.gt(batch)
        guesses, boxes = heuristic_guesses(class_ids, np.asarray(out["maps"]))
        self.evaluator.update(
            guesses, boxes, np.asarray(batch["label"]), gt_boxes, gt_valid,
            inputs.valid(batch), ranked_classes=class_ids,
        )  # fmt: skip
        self.seen = True

    def merge(self, other: Heuristic) -> None:
        if other.seen:
            self.evaluator.merge(other.evaluator)
            self.seen = True

    def result(self) -> dict[str, Any]:
        if not self.seen:
            return {"heuristic_top1_error": None, "heuristic_top5_error": None}
        r = self.evaluator.result()
        return {
            "heuristic_top1_error": r["loc_top1_error"],
            "heuristic_top5_error": r.get("loc_top5_error"),
        }


register(
    MetricSpec(
        name="heuristic",
        factory=Heuristic,
        table=inputs.TABLE_LOC,
        columns=(
            ("heuristic_top1_error", "heuristic top-1"),
            ("heuristic_top5_error", "heuristic top-5"),
        ),
        needs=frozenset({"boxes"}),
        description=(
            "Heuristic: camjax's reading of the paper's test-set variant (tight 50% and loose "
            "20% boxes from the top-1 and top-2 maps, a loose box from the top-3 map); the "
            "released code's order and boxes are released_loc."
        ),
    )
)
