"""Localization and classification errors of Zhou et al. (CVPR 2016, Sec. 3.1), GT-known.

ILSVRC localization: a guess ``(class, box)`` is right when the class is the label AND
the box overlaps some ground-truth box with IoU >= 0.5. Top-1 error: the first guess is
wrong; top-5 error: all of the first five guesses are wrong. GT-known accuracy (Choe et
al., CVPR 2020): the box made from the ground-truth class's map has IoU >= 0.5.
Classification errors: the label is not the first / among the first five classes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax.metrics import counter, inputs
from camjax.metrics.overlap import max_iou
from camjax.metrics.registry import MetricContext, MetricSpec, register

State = counter.State
_HIT_KEYS = ("loc_top1", "loc_top5", "cls_top1", "cls_top5", "gt_known")
TOP_K = 5


def localization_hits(
    class_ids: jnp.ndarray,
    boxes: jnp.ndarray,
    labels: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    *,
    ranked_classes: jnp.ndarray | None = None,
    iou_threshold: float = 0.5,
    top_k: int = 5,
) -> dict[str, jnp.ndarray]:
    """Per-image hits for the paper's errors (Zhou et al. 2016, Sec. 3.1): bool ``[B]`` each.

    Guesses are ordered ``(class_ids[:, k], boxes[:, k])`` pairs, ``k < K``. A guess is
    right when ``class == label`` AND ``max_g IoU(box, gt_g) >= iou_threshold`` (ILSVRC
    localization, 0.5). Keys:

    - ``loc_top1``: guess 0 is right; ``loc_top5``: any of the first ``min(K, top_k)``
      guesses is right.
    - ``cls_top1``: ``ranked[:, 0] == label``; ``cls_top5``: label in ``ranked[:, :top_k]``,
      where ``ranked = ranked_classes`` if given, else ``class_ids`` (pass the logits' top-5
      separately when guesses repeat a class, e.g. the paper's tight/loose heuristic).
    """
    class_ids = jnp.asarray(class_ids)
    labels = jnp.asarray(labels)[:, None]
    overlaps = max_iou(boxes, gt_boxes, gt_valid)  # [B, K]: guesses play the P axis
    guess_right = (class_ids == labels) & (overlaps >= iou_threshold)
    ranked = class_ids if ranked_classes is None else jnp.asarray(ranked_classes)
    return {
        "loc_top1": guess_right[:, 0],
        "loc_top5": guess_right[:, :top_k].any(axis=1),
        "cls_top1": ranked[:, 0] == labels[:, 0],
        "cls_top5": (ranked[:, :top_k] == labels).any(axis=1),
    }


def gt_known_hits(
    gt_known_boxes: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    iou_threshold: float = 0.5,
) -> jnp.ndarray:
    """GT-known localization hit per image, bool ``[B]`` (Choe et al. 2020, Sec. 4.1).

    The box comes from the ground-truth class's map, so only the box is judged:
    ``max_g IoU(gt_known_boxes[b], gt[b, g]) >= iou_threshold``.
    """
    best = max_iou(jnp.asarray(gt_known_boxes)[:, None], gt_boxes, gt_valid)
    return best[:, 0] >= iou_threshold


def init_state() -> State:
    """Zero counts: one per hit kind, plus ``count``, ``gt_known_count`` and ``no_gt``."""
    return {k: counter.zeros(()) for k in (*_HIT_KEYS, "count", "gt_known_count", "no_gt")}


@jax.jit
def update_state(
    state: State,
    class_ids: jnp.ndarray,
    boxes: jnp.ndarray,
    labels: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    sample_valid: jnp.ndarray,
    gt_known_boxes: jnp.ndarray | None,
    ranked_classes: jnp.ndarray | None,
    iou_threshold: jnp.ndarray,
) -> State:
    """Jitted pure update with one batch (arguments as in ``LocalizationErrorEvaluator.update``).

    Adds ``sum_b keep_b * hit_b`` for each hit kind of :func:`localization_hits` and
    :func:`gt_known_hits`; errors are ``100 * (1 - hits / count)``.
    """
    keep = jnp.asarray(sample_valid, bool)
    hits = localization_hits(
        class_ids,
        boxes,
        labels,
        gt_boxes,
        gt_valid,
        ranked_classes=ranked_classes,
        iou_threshold=iou_threshold,
        top_k=TOP_K,
    )
    if gt_known_boxes is None:
        known = hits["gt_known"] = jnp.zeros_like(keep)
    else:
        known = keep
        hits["gt_known"] = gt_known_hits(gt_known_boxes, gt_boxes, gt_valid, iou_threshold)
    new = {k: counter.add(state[k], jnp.sum(hits[k] & keep)) for k in _HIT_KEYS}
    new["count"] = counter.add(state["count"], jnp.sum(keep))
    new["gt_known_count"] = counter.add(state["gt_known_count"], jnp.sum(known))
    no_gt = keep & ~jnp.asarray(gt_valid, bool).any(axis=-1)
    new["no_gt"] = counter.add(state["no_gt"], jnp.sum(no_gt))
    return new


class LocalizationErrorEvaluator:
    """Top-1/top-5 localization error, GT-known accuracy, classification errors.

    ``update(class_ids [B, K], boxes [B, K, 4], labels [B], gt_boxes [B, G, 4],
    gt_valid [B, G], sample_valid [B], *, gt_known_boxes [B, 4] or [B, 1, 4],
    ranked_classes [B, >=5])``:

    - ``(class_ids[:, k], boxes[:, k])`` are the ordered guesses (e.g. ``extract``'s
      ``class_ids`` and ``boxes``; or the paper's heuristic with repeated classes: then
      pass the logits' top-5 as ``ranked_classes`` for the classification errors).
    - ``gt_known_boxes``: the box of the ground-truth class's map (``extract``'s
      ``gt_boxes``); give it in every update or in none.
    - ``sample_valid`` False marks eval padding: never counted.

    ``result()`` keys (percent): ``loc_top1_error``, ``cls_top1_error``; with ``K >= 5``
    guesses also ``loc_top5_error`` and ``cls_top5_error``; with ``gt_known_boxes``
    ``gt_known_loc`` (an accuracy, as Choe et al. report it); and ``num_examples``,
    ``num_examples_without_gt`` (their localization is counted wrong).
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.5,
        image_hw: tuple[int, int] | None = None,
        validate: bool = True,
    ):
        (self.iou_threshold,) = inputs.check_thresholds(
            [iou_threshold], "iou_threshold", allow_zero=False
        )
        self.image_hw = image_hw
        self.validate = validate
        self.reset()

    def reset(self) -> None:
        """Forget every example seen."""
        self.state = init_state()
        self._has_gt_known: bool | None = None
        self._has_top5: bool | None = None

    def update(
        self,
        class_ids,
        boxes,
        labels,
        gt_boxes,
        gt_valid=None,
        sample_valid=None,
        *,
        gt_known_boxes=None,
        ranked_classes=None,
    ) -> None:
        """Count one batch (shapes in the class docstring)."""
        class_ids = jnp.asarray(class_ids, jnp.int32)
        boxes = jnp.asarray(boxes)
        labels = jnp.asarray(labels, jnp.int32)
        gt_boxes = jnp.asarray(gt_boxes)
        if class_ids.ndim != 2:
            raise ValueError(f"class_ids must be [B, K], got {class_ids.shape}")
        b, k = class_ids.shape
        if boxes.shape != (b, k, 4):
            raise ValueError(f"boxes must be [{b}, {k}, 4] like class_ids, got {boxes.shape}")
        if labels.shape != (b,):
            raise ValueError(f"labels must be [{b}], got {labels.shape}")
        if gt_boxes.ndim != 3 or gt_boxes.shape[0] != b:
            raise ValueError(f"gt_boxes must be [{b}, G, 4], got {gt_boxes.shape}")
        gt_valid = (
            jnp.ones(gt_boxes.shape[:2], bool) if gt_valid is None else jnp.asarray(gt_valid, bool)
        )
        if gt_valid.shape != gt_boxes.shape[:2]:
            raise ValueError(f"gt_valid shape {gt_valid.shape} != {gt_boxes.shape[:2]}")
        keep = inputs.sample_valid(sample_valid, b)
        if gt_known_boxes is not None:
            gt_known_boxes = jnp.asarray(gt_known_boxes).reshape(b, 4)
        if ranked_classes is not None:
            ranked_classes = jnp.asarray(ranked_classes, jnp.int32)
            if ranked_classes.ndim != 2 or ranked_classes.shape[0] != b:
                raise ValueError(f"ranked_classes must be [{b}, N], got {ranked_classes.shape}")
        has_top5 = (k if ranked_classes is None else min(k, ranked_classes.shape[1])) >= TOP_K
        for name, now, before in (
            ("gt_known_boxes", gt_known_boxes is not None, self._has_gt_known),
            ("top-5 guesses", has_top5, self._has_top5),
        ):
            if before is not None and now != before:
                raise ValueError(f"{name} must be given in every update or in none")
        self._has_gt_known, self._has_top5 = gt_known_boxes is not None, has_top5
        if self.validate:
            live = np.asarray(keep)
            if np.any(np.asarray(labels)[live] < 0):
                raise ValueError("labels must be non-negative class indices")
            inputs.check_boxes(
                gt_boxes, np.asarray(gt_valid) & live[:, None], "gt_boxes", self.image_hw
            )
            inputs.check_boxes(
                boxes, np.broadcast_to(live[:, None], (b, k)), "boxes", self.image_hw
            )
            if gt_known_boxes is not None:
                inputs.check_boxes(gt_known_boxes, live, "gt_known_boxes", self.image_hw)
        self.state = update_state(
            self.state,
            class_ids,
            boxes.astype(jnp.int32),
            labels,
            gt_boxes.astype(jnp.int32),
            gt_valid,
            keep,
            None if gt_known_boxes is None else gt_known_boxes.astype(jnp.int32),
            ranked_classes,
            jnp.float32(self.iou_threshold),
        )

    def merge(self, other: LocalizationErrorEvaluator) -> None:
        """Add another evaluator's counts, e.g. from another host."""
        if (self._has_gt_known, self._has_top5) != (other._has_gt_known, other._has_top5):
            if None not in (self._has_gt_known, other._has_gt_known):
                raise ValueError("cannot merge evaluators fed with different inputs")
        self.state = counter.merge_states(self.state, other.state)
        if self._has_gt_known is None:
            self._has_gt_known, self._has_top5 = other._has_gt_known, other._has_top5

    def result(self) -> dict[str, Any]:
        """The metrics as plain Python numbers (see the class docstring for the keys)."""
        totals = {k: int(counter.total(v)) for k, v in self.state.items()}
        n = totals["count"]
        if n == 0:
            raise ValueError("LocalizationErrorEvaluator.result(): no example has been counted")
        out: dict[str, Any] = {
            "num_examples": n,
            "num_examples_without_gt": totals["no_gt"],
            "loc_top1_error": 100.0 * (1.0 - totals["loc_top1"] / n),
            "cls_top1_error": 100.0 * (1.0 - totals["cls_top1"] / n),
        }
        if self._has_top5:
            out["loc_top5_error"] = 100.0 * (1.0 - totals["loc_top5"] / n)
            out["cls_top5_error"] = 100.0 * (1.0 - totals["cls_top5"] / n)
        if self._has_gt_known:
            out["gt_known_loc"] = 100.0 * totals["gt_known"] / totals["gt_known_count"]
        return out


class LocErrorMetric:
    """The registered ``loc_error`` (the top-k classes' boxes) or ``gt_known`` (the
    ground-truth class's box): a :class:`LocalizationErrorEvaluator`."""

    def __init__(self, ctx: MetricContext, *, gt_known: bool):
        self.gt_known = gt_known
        self.evaluator = LocalizationErrorEvaluator(
            iou_threshold=inputs.IOU_LOC, image_hw=ctx.image_hw
        )

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        labels = np.asarray(batch["label"])
        if not self.gt_known:
            self.evaluator.update(
                np.asarray(out["class_ids"]), np.asarray(out["boxes"]), labels, gt_boxes,
                gt_valid, inputs.valid(batch),
            )  # fmt: skip
            return
        known = np.asarray(out["gt_boxes"])
        # The guess is the GT class itself; only its box decides.
        self.evaluator.update(
            labels[:, None], known.reshape(-1, 1, 4), labels, gt_boxes, gt_valid,
            inputs.valid(batch), gt_known_boxes=known,
        )  # fmt: skip

    def merge(self, other: LocErrorMetric) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        r = self.evaluator.result()
        if self.gt_known:
            return {"gt_known_loc": r["gt_known_loc"]}
        return {
            "loc_top1_error": r["loc_top1_error"],
            "loc_top5_error": r.get("loc_top5_error"),  # None with fewer than 5 classes
            "num_examples_without_gt": r["num_examples_without_gt"],
        }


register(
    MetricSpec(
        name="loc_error",
        factory=functools.partial(LocErrorMetric, gt_known=False),
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
register(
    MetricSpec(
        name="gt_known",
        factory=functools.partial(LocErrorMetric, gt_known=True),
        table=inputs.TABLE_WSOL,
        columns=(("gt_known_loc", "GT-known loc"),),
        needs=frozenset({"boxes"}),
        description=(
            "GT-known: box of the ground-truth class's min-max normalised map at 20%, IoU >= 0.5."
        ),
    )
)
