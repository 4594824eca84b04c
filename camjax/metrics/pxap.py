"""PxAP: area under the pixel precision-recall curve (Choe et al., CVPR 2020, Sec. 4.2).

A pixel is predicted foreground at threshold ``tau`` when its (normalised) CAM value is
``>= tau``; against a mask (1 fg, 0 bg, 255 ignored) that gives ``P(tau)``, ``R(tau)`` and
``PxAP = 100 * sum_j P(tau_j) (R(tau_j) - R(tau_{j-1}))`` over ``tau`` descending
(:func:`pxap_from_histograms`). The state is two value histograms over
the threshold grid (fg and bg pixels), exact int counts on device, so streaming equals
all-at-once exactly for the grid, as in the benchmark's ``MaskEvaluator``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax import labeling
from camjax.metrics import counter, inputs
from camjax.metrics.inputs import MASK_BACKGROUND, MASK_FOREGROUND, MASK_IGNORE
from camjax.metrics.registry import MetricContext, MetricSpec, register

State = counter.State


def _histograms_jax(maps, masks, edges, keep) -> jnp.ndarray:
    # The unrolled binary search runs faster than the rolled scan on CPU; same answer.
    bins = jnp.searchsorted(edges, maps, side="right", method="scan_unrolled")
    fg = masks == MASK_FOREGROUND
    counted = keep[:, None, None] & (fg | (masks == MASK_BACKGROUND))
    num_bins = edges.shape[0] + 1
    # One scatter for both rows: background pixels go to the second half.
    index = bins + num_bins * (~fg).astype(bins.dtype)
    hist = jnp.zeros((2 * num_bins,), jnp.int32).at[index].add(counted.astype(jnp.int32))
    return hist.reshape(2, num_bins)


def pixel_histograms_np(maps, masks, edges, keep) -> np.ndarray:
    """The host (numpy) kernel of :func:`pixel_histograms`: same arguments, int32 out."""
    maps, masks, keep = np.asarray(maps), np.asarray(masks), np.asarray(keep, bool)
    # np.histogram bins are [a, b) (the last one closed): with -inf and +inf around the
    # edges, bin k holds the values with exactly k edges <= v, as in _histograms_jax. It
    # sorts the values and compares float32 values with float32-valued edges exactly.
    bounds = np.concatenate([[-np.inf], np.asarray(edges, np.float64), [np.inf]])
    kept = maps[keep], masks[keep]
    rows = [np.histogram(kept[0][kept[1] == v], bins=bounds)[0] for v in (1, 0)]
    return np.stack(rows).astype(np.int32)


def pixel_histograms(
    maps: jnp.ndarray,
    masks: jnp.ndarray,
    edges: jnp.ndarray,
    sample_valid: jnp.ndarray | None = None,
    *,
    backend: str = "jax",
) -> jnp.ndarray:
    """Histograms of CAM values at foreground and background pixels: int32 ``[2, E + 1]``.

    ``edges`` ascending ``[E]``; bin ``k`` holds values with exactly ``k`` edges ``<= v``,
    so the count of pixels with ``v >= edges[j]`` is ``hist[j + 1:].sum()``. Row 0 counts
    foreground (mask 1), row 1 background (mask 0); ignore pixels (255) and images with
    ``sample_valid`` False are left out. Summing these over batches gives exactly the
    benchmark's ``gt_true_score_hist`` / ``gt_false_score_hist`` on the same grid.
    ``backend``: ``"jax"`` (binary search + scatter, on device) or ``"host"`` (numpy's
    sort-based ``np.histogram`` through ``jax.pure_callback``: faster on CPU); both give
    the same counts for finite values. Jittable either way.
    """
    maps = jnp.asarray(maps, jnp.float32)
    masks = jnp.asarray(masks)
    edges = jnp.asarray(edges, jnp.float32)
    keep = jnp.ones(maps.shape[:1], bool) if sample_valid is None else sample_valid
    keep = jnp.asarray(keep, bool)
    if backend == "jax":
        return _histograms_jax(maps, masks, edges, keep)
    if backend != "host":
        raise ValueError(f"backend must be 'jax' or 'host', got {backend!r}")
    shape = jax.ShapeDtypeStruct((2, edges.shape[0] + 1), jnp.int32)
    return jax.pure_callback(pixel_histograms_np, shape, maps, masks, edges, keep)


def precision_recall_from_histograms(
    fg_hist: np.ndarray, bg_hist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall from the highest edge down: ``(P [E + 1], R [E + 1], defined)``.

    Takes :func:`pixel_histograms` rows (summed over batches). With edges ``tau``:
    ``TP_j = #fg with v >= tau_j``, ``FP_j = #bg with v >= tau_j``,
    ``P_j = TP_j / (TP_j + FP_j)`` (``defined`` False and ``P_j = 0`` where nothing is
    predicted), ``R_j = TP_j / #fg`` where ``#fg`` counts every foreground pixel, also
    those below the lowest edge. Index 0 is the point above every value (``TP = FP = 0``,
    ``R_0 = 0``), then ``tau`` descending: the order of the benchmark's ``compute``,
    whose first point ``>= 2.0`` plays the same role.
    """
    fg = np.asarray(fg_hist, np.float64)
    bg = np.asarray(bg_hist, np.float64)
    # Bin 0 holds values below the lowest edge: counted in #fg, never predicted positive.
    tp = np.concatenate([[0.0], np.cumsum(fg[1:][::-1])])
    fp = np.concatenate([[0.0], np.cumsum(bg[1:][::-1])])
    num_fg = fg.sum()
    if num_fg <= 0:
        raise ValueError("PxAP: no foreground pixel (mask value 1) in the evaluated set")
    predicted = tp + fp
    if predicted[-1] <= 0:
        raise ValueError("PxAP: no pixel reaches the lowest CAM threshold")
    defined = predicted > 0
    precision = np.where(defined, tp / np.maximum(predicted, 1.0), 0.0)
    return precision, tp / num_fg, defined


def pxap_from_histograms(fg_hist: np.ndarray, bg_hist: np.ndarray) -> float:
    """PxAP in percent (Choe et al. 2020, Sec. 4.2), the benchmark's exact summation.

    ``PxAP = 100 * sum_{j >= 1} P_j (R_j - R_{j-1})`` over the thresholds in descending
    order with ``R_0 = 0`` (clovaai/wsolevaluation ``MaskEvaluator.compute``:
    ``(precision[1:] * np.diff(recall))[non_zero_indices[1:]].sum() * 100``); terms where
    no pixel is predicted positive are dropped (their recall step is 0 anyway).
    """
    precision, recall, defined = precision_recall_from_histograms(fg_hist, bg_hist)
    terms = precision[1:] * np.diff(recall)
    return float(100.0 * terms[defined[1:]].sum())


def histogram_edges(cam_thresholds: np.ndarray) -> np.ndarray:
    """The grid plus 1.0 (the benchmark's ``[t..., 1.0]`` edges; its 2.0 and 3.0 edges
    only hold values above 1, which validated maps never have)."""
    if cam_thresholds[-1] < 1.0:
        return np.append(cam_thresholds, 1.0)
    return np.asarray(cam_thresholds)


def init_state(num_edges: int) -> State:
    """Zero counts: ``hist [2, E + 1]`` (fg, bg), ``count``, ``ignored`` pixels."""
    return {
        "hist": counter.zeros((2, num_edges + 1)),
        "count": counter.zeros(()),
        "ignored": counter.zeros(()),
    }


@functools.partial(jax.jit, static_argnames=("backend",))
def update_state(
    state: State,
    maps: jnp.ndarray,
    masks: jnp.ndarray,
    sample_valid: jnp.ndarray,
    edges: jnp.ndarray,
    *,
    backend: str = "jax",
) -> State:
    """Jitted pure update: add one batch's fg/bg histograms; padded examples skipped."""
    keep = jnp.asarray(sample_valid, bool)
    maps = jnp.where(keep[:, None, None], maps, 0.0)
    hist = pixel_histograms(maps, masks, edges, keep, backend=backend)
    ignored = jnp.sum(keep[:, None, None] & (masks == MASK_IGNORE))
    return add_counts(state, hist, jnp.sum(keep), ignored)


@jax.jit
def add_counts(
    state: State, hist: jnp.ndarray, num_examples: jnp.ndarray, num_ignored: jnp.ndarray
) -> State:
    """Add one batch's histograms ``[2, E + 1]`` and example / ignored-pixel counts."""
    return {
        "hist": counter.add(state["hist"], hist),
        "count": counter.add(state["count"], num_examples),
        "ignored": counter.add(state["ignored"], num_ignored),
    }


class MaskEvaluator:
    """PxAP over a stream of batches.

    ``update(maps [B, H, W] in [0, 1], masks uint8 [B, H, W], sample_valid [B])``, then
    ``result()`` with keys:

    - ``pxap``: percent; ``num_examples``; ``num_fg_pixels``, ``num_bg_pixels``,
      ``num_ignored_pixels``
    - ``curve_thresholds``: ``tau`` descending (the grid plus 1.0), and at each:
      ``precision`` (NaN where no pixel reaches ``tau``) and ``recall``

    ``backend``: ``"auto"`` (host histograms on CPU, on-device ones on GPU/TPU, as
    ``camjax.labeling.resolve_backend`` decides), ``"jax"`` or ``"host"``; same counts.

    Errors: maps with NaN/inf or outside [0, 1], masks not uint8 or holding values other
    than 0/1/255, a shape mismatch; ``result()`` with no foreground pixel at all.
    """

    def __init__(
        self,
        cam_thresholds: Sequence[float] | np.ndarray | None = None,
        *,
        backend: str = "auto",
        validate: bool = True,
    ):
        labeling.resolve_backend(backend)  # rejects unknown names now
        if cam_thresholds is None:
            cam_thresholds = inputs.default_cam_thresholds()
        self.cam_thresholds = inputs.check_thresholds(cam_thresholds, "cam_thresholds")
        self.edges = histogram_edges(self.cam_thresholds)
        self.backend = backend
        self.validate = validate
        self.reset()

    def reset(self) -> None:
        """Forget every example seen."""
        self.state = init_state(len(self.edges))

    def update(self, maps, masks, sample_valid=None) -> None:
        """Count one batch; ``sample_valid`` False marks eval padding (never counted)."""
        if np.ndim(maps) != 3:
            raise ValueError(f"maps must be [B, H, W], got shape {np.shape(maps)}")
        batch = np.shape(maps)[0]
        edges = np.asarray(self.edges, np.float32)
        if labeling.resolve_backend(self.backend, maps) == "host":
            # On CPU the host is the device: numpy reads the arrays in place, checks and
            # counts them directly, with no pure_callback round trip.
            maps, masks = np.asarray(maps), np.asarray(masks)
            keep = np.asarray(inputs.sample_valid(sample_valid, batch))
        else:
            maps, masks = jnp.asarray(maps), jnp.asarray(masks)
            keep = inputs.sample_valid(sample_valid, batch)
        if self.validate:
            inputs.check_masks(masks, maps.shape, keep)
            inputs.check_maps(maps, keep)
        if isinstance(maps, np.ndarray):
            hist = pixel_histograms_np(np.asarray(maps, np.float32), masks, edges, keep)
            ignored = np.sum(keep[:, None, None] & (masks == MASK_IGNORE))
            self.state = add_counts(self.state, hist, np.sum(keep), ignored)
            return
        self.state = update_state(
            self.state, maps.astype(jnp.float32), masks, keep, jnp.asarray(edges), backend="jax"
        )

    def merge(self, other: MaskEvaluator) -> None:
        """Add another evaluator's counts (same thresholds), e.g. from another host."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge evaluators with different thresholds")
        self.state = counter.merge_states(self.state, other.state)

    def result(self) -> dict[str, Any]:
        """The metrics as plain Python numbers (see the class docstring for the keys)."""
        n = int(counter.total(self.state["count"]))
        if n == 0:
            raise ValueError("MaskEvaluator.result(): no example has been counted")
        fg, bg = counter.total(self.state["hist"])
        precision, recall, defined = precision_recall_from_histograms(fg, bg)
        return {
            "pxap": pxap_from_histograms(fg, bg),
            "num_examples": n,
            "num_fg_pixels": int(fg.sum()),
            "num_bg_pixels": int(bg.sum()),
            "num_ignored_pixels": int(counter.total(self.state["ignored"])),
            "curve_thresholds": [float(t) for t in self.edges[::-1]],
            "precision": [
                float(p) if d else float("nan")
                for p, d in zip(precision[1:], defined[1:], strict=True)
            ],
            "recall": [float(r) for r in recall[1:]],
        }


class PxAPMetric:
    """The registered ``pxap``: a :class:`MaskEvaluator` fed the ground-truth class's maps."""

    def __init__(self, ctx: MetricContext):
        self.evaluator = MaskEvaluator(ctx.cam_thresholds)

    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        self.evaluator.update(inputs.gt_maps(out), np.asarray(batch["mask"]), inputs.valid(batch))

    def merge(self, other: PxAPMetric) -> None:
        self.evaluator.merge(other.evaluator)

    def result(self) -> dict[str, Any]:
        return {"pxap": self.evaluator.result()["pxap"]}


register(
    MetricSpec(
        name="pxap",
        factory=PxAPMetric,
        table=inputs.TABLE_WSOL,
        columns=(("pxap", "PxAP"),),
        needs=frozenset({"masks"}),
        description="PxAP: area under the pixel precision-recall curve (Choe et al. 2020).",
    )
)
