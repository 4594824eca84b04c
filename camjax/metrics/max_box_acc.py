"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020, Sec. 4.1): hits, evaluator, registration.

For CAM thresholds ``t`` and IoU thresholds ``delta``:
``BoxAcc(t, delta) = 100/N * #{images: max_{box of M(t), gt} IoU >= delta}`` where
``M(t) = {pixels with map >= t * max(map)}``, and ``MaxBoxAcc(delta) = max_t BoxAcc``.
MaxBoxAcc uses ``delta = 0.5`` and the largest component's box; MaxBoxAccV2 averages
``MaxBoxAcc(delta)`` over ``delta in {0.3, 0.5, 0.7}`` with every component's box counted
(the benchmark's ``multi_iou_eval`` and ``multi_contour_eval``). Each ``delta`` takes its
own best ``t``, as the benchmark's ``BoxEvaluator.compute`` does.

Deliberate differences from the benchmark code (``compute_bboxes_from_scoremaps``): it
thresholds the map quantised to uint8 with ``v > int(t * max)`` (``mode="wsol"`` here
keeps exactly those pixels; the default ``"ge"`` keeps float ``v >= t * max``), boxes
contours with ``x1 = x + w`` (one pixel wider than the contour; here a component's box
is its exact inclusive extent) and, with ``RETR_TREE``, also boxes the contours of holes
(here only components count). A threshold with no component (the benchmark boxes
``[0, 0, 0, 0]`` then) scores IoU 0 here. ``bench/evaluators_throughput.py`` checks that
with ``mode="wsol"`` the curves equal a host loop with outer contours and inclusive boxes.

The state is a pytree of exact counts (hits per ``(delta, t)``, examples, examples
without a ground-truth box), updated on device by jitted pure functions, so memory does
not grow with the number of images.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax import boxes as boxes_lib
from camjax.metrics import counter, inputs
from camjax.metrics.overlap import max_iou
from camjax.metrics.registry import MetricContext, MetricSpec, register

State = counter.State
IOU_V2 = (0.3, 0.5, 0.7)  # MaxBoxAccV2's IoU thresholds


def box_hits(
    boxes: jnp.ndarray,
    valid: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    iou_thresholds: jnp.ndarray,
) -> jnp.ndarray:
    """Per image, IoU threshold and CAM threshold: is any predicted box right? ``[B, D, T]``.

    ``hit[b, d, t] = max_{m valid, g valid} IoU(boxes[b, t, m], gt[b, g]) >= delta_d``.
    With ``boxes [B, T, M, 4]`` = every component's box at each CAM threshold
    (``camjax.boxes.component_boxes``) this is MaxBoxAccV2's "any component counts"
    (Choe et al. 2020, ``multi_contour_eval``); with ``M = 1`` largest-component boxes it
    is MaxBoxAcc. ``valid [B, T, M]`` marks real components.
    """
    gt_b = jnp.asarray(gt_boxes)[:, None]
    gt_v = jnp.asarray(gt_valid, bool)[:, None]
    best = max_iou(boxes, gt_b, gt_v, valid).max(axis=-1, initial=0.0)  # [B, T]
    thr = jnp.asarray(iou_thresholds, jnp.float32)
    return best[:, None, :] >= thr[None, :, None]


def init_state(num_iou_thresholds: int, num_cam_thresholds: int) -> State:
    """Zero counts: ``hits [D, T]``, ``count``, ``no_gt``."""
    return {
        "hits": counter.zeros((num_iou_thresholds, num_cam_thresholds)),
        "count": counter.zeros(()),
        "no_gt": counter.zeros(()),
    }


def update_state(
    state: State, hits: jnp.ndarray, sample_valid: jnp.ndarray, gt_valid: jnp.ndarray
) -> State:
    """Add one batch of :func:`box_hits` ``[B, D, T]``; padded rows skipped.

    An example without a valid ground-truth box has IoU 0 everywhere (counted wrong) and is
    also counted in ``no_gt`` so that the report can show it.
    """
    keep = jnp.asarray(sample_valid, bool)
    no_gt = keep & ~jnp.asarray(gt_valid, bool).any(axis=-1)
    return {
        "hits": counter.add(state["hits"], jnp.sum(hits & keep[:, None, None], axis=0)),
        "count": counter.add(state["count"], jnp.sum(keep)),
        "no_gt": counter.add(state["no_gt"], jnp.sum(no_gt)),
    }


@functools.partial(
    jax.jit,
    static_argnames=(
        "cam_thresholds",
        "multi_contour",
        "max_components",
        "connectivity",
        "backend",
        "mode",
    ),
)
def update_from_maps(
    state: State,
    maps: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    sample_valid: jnp.ndarray,
    iou_thresholds: jnp.ndarray,
    *,
    cam_thresholds: tuple[float, ...],
    multi_contour: bool,
    max_components: int,
    connectivity: int = 8,
    backend: str = "auto",
    mode: str = "ge",
) -> State:
    """Jitted pure update: maps -> boxes at every CAM threshold -> hits -> new state.

    ``cam_thresholds`` is a static tuple so that the box module sees concrete values
    (exact integer cuts in its ``mode="wsol"``).
    """
    # Padded examples may hold anything (NaN included); they must not reach the labelling.
    maps = jnp.where(jnp.asarray(sample_valid, bool)[:, None, None], maps, 0.0)
    # One pass over a component tree per map, components largest first: the
    # largest-component box of MaxBoxAcc is M = 1, the same component as
    # largest_component_box (most pixels, ties to the first in raster order). A threshold
    # that keeps no pixel (an all-zero map) has no valid box.
    boxes, valid = boxes_lib.component_boxes(
        maps,
        np.asarray(cam_thresholds, np.float64),
        max_components=max_components if multi_contour else 1,
        connectivity=connectivity,
        backend=backend,
        mode=mode,
    )
    hits = box_hits(boxes, valid, gt_boxes, gt_valid, iou_thresholds)
    return update_state(state, hits, sample_valid, gt_valid)


@jax.jit
def update_from_boxes(
    state: State,
    boxes: jnp.ndarray,
    valid: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    sample_valid: jnp.ndarray,
    iou_thresholds: jnp.ndarray,
) -> State:
    """Jitted pure update from boxes already made at every CAM threshold."""
    hits = box_hits(boxes, valid, gt_boxes, gt_valid, iou_thresholds)
    return update_state(state, hits, sample_valid, gt_valid)


def _key(delta: float) -> str:
    """``0.5 -> "50"``: the IoU threshold in percent, as the benchmark names them."""
    return f"{float(np.round(delta * 100, 4)):g}"


class BoxEvaluator:
    """MaxBoxAcc / MaxBoxAccV2 over a stream of batches.

    ``update(maps [B,H,W] in [0,1], gt_boxes [B,G,4] int, gt_valid [B,G], sample_valid [B])``
    then ``result()``. Defaults give MaxBoxAccV2 on the benchmark's 100-point grid;
    ``BoxEvaluator(iou_thresholds=(0.5,), multi_contour=False)`` gives MaxBoxAcc.

    ``result()`` keys (accuracies in percent, thresholds as fractions):

    - ``num_examples``, ``num_examples_without_gt`` (counted wrong; see ``max_iou``)
    - ``cam_thresholds``: the grid; ``iou_thresholds``: the deltas
    - ``accuracy_per_iou[k]``: ``max_t BoxAcc(t, delta)``; ``best_threshold_per_iou[k]``:
      the lowest ``t`` reaching it; ``curve_per_iou[k]``: ``BoxAcc(t, delta)`` for every
      ``t`` (``k = "30"``, ``"50"``, ``"70"``, ...)
    - ``max_box_acc_mean``: mean of ``accuracy_per_iou`` over the deltas
    - ``max_box_acc_v2`` and ``max_box_acc_v2_per_iou``: when ``multi_contour`` and the
      deltas are exactly (0.3, 0.5, 0.7)
    - ``max_box_acc``: when not ``multi_contour`` and 0.5 is a delta (its accuracy)

    ``mode``: ``"ge"`` keeps ``map >= t * max`` (the paper's rule); ``"wsol"`` the WSOL
    benchmark's uint8 rule (``camjax.boxes.component_boxes``). ``max_components``: more
    components than that at one threshold keep the largest ones only (blob-like CAMs at
    224 x 224 reach ~30 at some threshold; raise it for noisy maps or tiny objects).

    Bad input (NaN/inf or values outside [0, 1] in counted maps, malformed boxes or boxes
    outside the image, thresholds outside [0, 1]) raises ``ValueError`` when ``validate``.
    """

    def __init__(
        self,
        cam_thresholds: Sequence[float] | np.ndarray | None = None,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        *,
        multi_contour: bool = True,
        max_components: int = 32,
        connectivity: int = 8,
        backend: str = "auto",
        mode: str = "ge",
        validate: bool = True,
    ):
        if cam_thresholds is None:
            cam_thresholds = inputs.default_cam_thresholds()
        self.cam_thresholds = inputs.check_thresholds(cam_thresholds, "cam_thresholds")
        self.iou_thresholds = inputs.check_thresholds(
            iou_thresholds, "iou_thresholds", allow_zero=False
        )
        if max_components < 1:
            raise ValueError(f"max_components must be >= 1, got {max_components}")
        self.multi_contour = bool(multi_contour)
        self.max_components = int(max_components) if multi_contour else 1
        self.connectivity = connectivity
        self.backend = backend
        self.mode = mode
        self.validate = validate
        self.reset()

    def reset(self) -> None:
        """Forget every example seen."""
        self.state = init_state(len(self.iou_thresholds), len(self.cam_thresholds))

    def _prepare(self, gt_boxes, gt_valid, sample_valid, batch, image_hw):
        gt_boxes = jnp.asarray(gt_boxes)
        if gt_boxes.ndim != 3 or gt_boxes.shape[0] != batch:
            raise ValueError(f"gt_boxes must be [{batch}, G, 4], got {gt_boxes.shape}")
        gt_valid = jnp.ones(gt_boxes.shape[:2], bool) if gt_valid is None else jnp.asarray(gt_valid)
        if gt_valid.shape != gt_boxes.shape[:2]:
            raise ValueError(f"gt_valid shape {gt_valid.shape} != {gt_boxes.shape[:2]}")
        keep = inputs.sample_valid(sample_valid, batch)
        if self.validate:
            live = np.asarray(gt_valid, bool) & np.asarray(keep)[:, None]
            inputs.check_boxes(gt_boxes, live, "gt_boxes", image_hw)
        return gt_boxes.astype(jnp.int32), gt_valid.astype(bool), keep

    def update(self, maps, gt_boxes, gt_valid=None, sample_valid=None) -> None:
        """Count one batch: ``maps [B, H, W]`` normalised to [0, 1] (one map per image, e.g.
        the ground-truth class's), ``gt_boxes [B, G, 4]`` with padding rows marked False in
        ``gt_valid [B, G]``, ``sample_valid [B]`` False for eval padding (never counted)."""
        maps = jnp.asarray(maps)
        if maps.ndim != 3:
            raise ValueError(f"maps must be [B, H, W], got shape {maps.shape}")
        gt_boxes, gt_valid, keep = self._prepare(
            gt_boxes, gt_valid, sample_valid, maps.shape[0], maps.shape[1:]
        )
        if self.validate:
            inputs.check_maps(maps, keep)
        self.state = update_from_maps(
            self.state,
            maps.astype(jnp.float32),
            gt_boxes,
            gt_valid,
            keep,
            jnp.asarray(self.iou_thresholds, jnp.float32),
            cam_thresholds=tuple(float(t) for t in self.cam_thresholds),
            multi_contour=self.multi_contour,
            max_components=self.max_components,
            connectivity=self.connectivity,
            backend=self.backend,
            mode=self.mode,
        )

    def update_boxes(
        self, boxes, valid, gt_boxes, gt_valid=None, sample_valid=None, image_hw=None
    ) -> None:
        """Count one batch from boxes made elsewhere: ``boxes [B, T, M, 4]`` at this
        evaluator's ``T`` CAM thresholds, ``valid [B, T, M]``."""
        boxes = jnp.asarray(boxes)
        t = len(self.cam_thresholds)
        if boxes.ndim != 4 or boxes.shape[1] != t or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be [B, {t}, M, 4], got {boxes.shape}")
        valid = jnp.asarray(valid, bool)
        if valid.shape != boxes.shape[:3]:
            raise ValueError(f"valid shape {valid.shape} != boxes shape {boxes.shape[:3]}")
        gt_boxes, gt_valid, keep = self._prepare(
            gt_boxes, gt_valid, sample_valid, boxes.shape[0], image_hw
        )
        if self.validate:
            live = np.asarray(valid) & np.asarray(keep)[:, None, None]
            inputs.check_boxes(boxes, live, "boxes", image_hw)
        self.state = update_from_boxes(
            self.state,
            boxes.astype(jnp.int32),
            valid,
            gt_boxes,
            gt_valid,
            keep,
            jnp.asarray(self.iou_thresholds, jnp.float32),
        )

    def merge(self, other: BoxEvaluator) -> None:
        """Add another evaluator's counts (same thresholds), e.g. from another host."""
        if not (
            np.array_equal(self.cam_thresholds, other.cam_thresholds)
            and np.array_equal(self.iou_thresholds, other.iou_thresholds)
        ):
            raise ValueError("cannot merge evaluators with different thresholds")
        self.state = counter.merge_states(self.state, other.state)

    def result(self) -> dict[str, Any]:
        """The metrics as plain Python numbers (see the class docstring for the keys)."""
        n = int(counter.total(self.state["count"]))
        if n == 0:
            raise ValueError("BoxEvaluator.result(): no example has been counted")
        curves = 100.0 * counter.total(self.state["hits"]) / n  # [D, T]
        keys = [_key(d) for d in self.iou_thresholds]
        best = curves.argmax(axis=1)  # first maximum: the lowest best threshold
        per_iou = {k: float(curves[i, best[i]]) for i, k in enumerate(keys)}
        out: dict[str, Any] = {
            "num_examples": n,
            "num_examples_without_gt": int(counter.total(self.state["no_gt"])),
            "cam_thresholds": [float(t) for t in self.cam_thresholds],
            "iou_thresholds": [float(d) for d in self.iou_thresholds],
            "accuracy_per_iou": per_iou,
            "best_threshold_per_iou": {
                k: float(self.cam_thresholds[best[i]]) for i, k in enumerate(keys)
            },
            "curve_per_iou": {k: [float(a) for a in curves[i]] for i, k in enumerate(keys)},
            "max_box_acc_mean": float(np.mean(list(per_iou.values()))),
        }
        if self.multi_contour and keys == ["30", "50", "70"]:
            out["max_box_acc_v2"] = out["max_box_acc_mean"]
            out["max_box_acc_v2_per_iou"] = dict(per_iou)
        if not self.multi_contour and "50" in per_iou:
            out["max_box_acc"] = per_iou["50"]
        return out


class BoxAccMetric:
    """The registered ``max_box_acc`` (``v2`` False) or ``max_box_acc_v2``: a
    :class:`BoxEvaluator` fed the ground-truth class's maps."""

    def __init__(self, ctx: MetricContext, *, v2: bool):
        self.v2 = v2
        ious = IOU_V2 if v2 else (inputs.IOU_LOC,)
        self.evaluator = BoxEvaluator(ctx.cam_thresholds, ious, multi_contour=v2)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        gt_boxes, gt_valid = inputs.gt(batch)
        self.evaluator.update(inputs.gt_maps(out), gt_boxes, gt_valid, inputs.valid(batch))

    def merge(self, other: BoxAccMetric) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        r = self.evaluator.result()
        if not self.v2:
            return {"max_box_acc": r["max_box_acc"]}
        return {
            "max_box_acc_v2": r["max_box_acc_v2"],
            "max_box_acc_v2_per_iou": r["max_box_acc_v2_per_iou"],
            "best_cam_threshold_per_iou": r["best_threshold_per_iou"],
            "num_examples_without_gt": r["num_examples_without_gt"],
            "curve": {"cam_thresholds": r["cam_thresholds"], "box_acc": r["curve_per_iou"]},
        }


register(
    MetricSpec(
        name="max_box_acc",
        factory=functools.partial(BoxAccMetric, v2=False),
        table=inputs.TABLE_WSOL,
        columns=(("max_box_acc", "MaxBoxAcc"),),
        needs=frozenset({"boxes"}),
        description=(
            "MaxBoxAcc: best accuracy over CAM thresholds at IoU 0.5, largest component by "
            "pixel count, float cut (the benchmark's exact rule: wsol_box)."
        ),
    )
)
register(
    MetricSpec(
        name="max_box_acc_v2",
        factory=functools.partial(BoxAccMetric, v2=True),
        table=inputs.TABLE_WSOL,
        columns=(
            ("max_box_acc_v2", "MaxBoxAccV2"),
            ("max_box_acc_v2_per_iou.30", "IoU 0.3"),
            ("max_box_acc_v2_per_iou.50", "IoU 0.5"),
            ("max_box_acc_v2_per_iou.70", "IoU 0.7"),
        ),
        needs=frozenset({"boxes"}),
        description=(
            "MaxBoxAccV2: mean over IoU 0.3/0.5/0.7 of the best accuracy over CAM "
            "thresholds, any component's box counts; float cut, exact pixel extents (the "
            "benchmark's uint8 rule and contour boxes: wsol_box)."
        ),
    )
)
