"""MaxBoxAcc and MaxBoxAccV2 under the ``wsol`` protocol: Choe et al. (CVPR 2020) exactly.

The ground-truth class's raw map resized with OpenCV's ``INTER_CUBIC``, min-max
normalised, cut as ``uint8 > int(t * max)`` at ``np.arange(0, 1, 1 / steps)``, boxes of
the contours as the benchmark makes them, IoU in float64 (:mod:`camjax.protocols.wsol`,
steps 1-4). The counts are exact integers, merged across hosts by adding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from camjax.metrics import inputs
from camjax.metrics.max_box_acc import IOU_V2
from camjax.metrics.registry import MetricContext, MetricSpec, register
from camjax.protocols import blacklist, predict, wsol


def iou64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[A, B]`` of inclusive boxes in float64, as the benchmark computes it."""
    a, b = np.asarray(a, np.int64)[:, None], np.asarray(b, np.int64)[None]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter).astype(np.float64)


class WsolBoxCounts:
    """Hits per ``(delta, t)`` over a stream of images, the benchmark's ``BoxEvaluator``.

    ``update(scoremaps [B, H, W], gt_boxes [B, G, 4], gt_valid [B, G], valid [B])`` with
    maps already resized and normalised (:func:`camjax.protocols.wsol.resize_and_normalise`).
    """

    def __init__(self, ts: np.ndarray, iou_thresholds: Sequence[float], multi_contour: bool):
        self.ts = np.asarray(ts, np.float64)
        self.deltas = tuple(float(d) for d in iou_thresholds)
        self.multi_contour = bool(multi_contour)
        self.hits = np.zeros((len(self.deltas), len(self.ts)), np.int64)
        self.count = 0

    def update(self, scoremaps, gt_boxes, gt_valid, valid, boxes=None) -> None:
        """``boxes``: per image, the :func:`camjax.protocols.wsol.boxes_at` lists when known."""
        for i in np.flatnonzero(np.asarray(valid, bool)):
            gts = np.asarray(gt_boxes[i])[np.asarray(gt_valid[i], bool)]
            self.count += 1
            if len(gts) == 0:
                continue  # counted wrong at every threshold
            per_t = (
                boxes[i] if boxes is not None
                else wsol.boxes_at(scoremaps[i], self.ts, self.multi_contour)
            )  # fmt: skip
            best = np.asarray([iou64(b, gts).max() for b in per_t])
            for d, delta in enumerate(self.deltas):
                self.hits[d] += best >= delta

    def merge(self, other: WsolBoxCounts) -> None:
        if not np.array_equal(self.ts, other.ts) or self.deltas != other.deltas:
            raise ValueError("cannot merge counts over different thresholds")
        self.hits += other.hits
        self.count += other.count

    def result(self) -> dict[str, Any]:
        if self.count == 0:
            raise ValueError("no example has been counted")
        curves = 100.0 * self.hits / self.count
        best = curves.argmax(axis=1)
        keys = [f"{round(d * 100):d}" for d in self.deltas]
        return {
            "accuracy_per_iou": {k: float(curves[i, best[i]]) for i, k in enumerate(keys)},
            "best_threshold_per_iou": {k: float(self.ts[best[i]]) for i, k in enumerate(keys)},
            "mean": float(np.mean(curves.max(axis=1))),
            "num_examples": self.count,
        }


class WsolBox:
    """The benchmark's two ``BoxEvaluator`` configurations on one stream."""

    def __init__(self, ctx: MetricContext):
        self.options = dict(ctx.options)
        self.hw = tuple(ctx.image_hw)
        ts = wsol.thresholds(int(self.options.get("cam_threshold_steps", 100)))
        self.v2 = WsolBoxCounts(ts, IOU_V2, multi_contour=True)
        self.v1 = WsolBoxCounts(ts, (0.5,), multi_contour=False)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_maps = np.asarray(predict.maps_for(out, "wsol")["gt_maps"])[:, 0]
        keep = blacklist.counted(batch, self.options)
        scoremaps = np.zeros((len(gt_maps),) + self.hw, np.float32)
        scoremaps[keep] = wsol.resize_and_normalise(gt_maps[keep], self.hw)
        gt_boxes, gt_valid = inputs.gt(batch)
        both = {i: wsol.boxes_both(scoremaps[i], self.v2.ts) for i in np.flatnonzero(keep)}
        self.v2.update(scoremaps, gt_boxes, gt_valid, keep, {i: b[0] for i, b in both.items()})
        self.v1.update(scoremaps, gt_boxes, gt_valid, keep, {i: b[1] for i, b in both.items()})

    def merge(self, other: WsolBox) -> None:
        self.v2.merge(other.v2)
        self.v1.merge(other.v1)

    def result(self) -> dict[str, Any]:
        v2, v1 = self.v2.result(), self.v1.result()
        per = v2["accuracy_per_iou"]
        return {
            "wsol_max_box_acc": v1["accuracy_per_iou"]["50"],
            "wsol_max_box_acc_v2": v2["mean"],
            "wsol_iou30": per["30"],
            "wsol_iou50": per["50"],
            "wsol_iou70": per["70"],
            "wsol_best_threshold_per_iou": v2["best_threshold_per_iou"],
            "num_examples": v2["num_examples"],
        }


register(
    MetricSpec(
        name="wsol_box",
        factory=WsolBox,
        table="WSOL accuracy, protocol `wsol` (Choe et al. 2020 exactly)",
        columns=(
            ("wsol_max_box_acc", "MaxBoxAcc"),
            ("wsol_max_box_acc_v2", "MaxBoxAccV2"),
            ("wsol_iou30", "IoU 0.3"),
            ("wsol_iou50", "IoU 0.5"),
            ("wsol_iou70", "IoU 0.7"),
        ),
        needs=frozenset({"boxes"}),
        protocol="wsol",
        description=(
            "clovaai/wsolevaluation's BoxEvaluator: INTER_CUBIC resize, min-max, uint8 cut "
            "> int(t max), RETR_TREE contours (largest by contourArea for MaxBoxAcc), boxes "
            "(x, y, min(x+w, W-1), min(y+h, H-1)), float64 IoU (Choe et al. 2020)."
        ),
    )
)
