"""Streaming PxAP: area under the pixel precision-recall curve (Choe et al., CVPR 2020).

A pixel is predicted foreground at threshold ``tau`` when its (normalised) CAM value is
``>= tau``; against a mask (1 fg, 0 bg, 255 ignored) that gives ``P(tau)``, ``R(tau)`` and
``PxAP = 100 * sum_j P(tau_j) (R(tau_j) - R(tau_{j-1}))`` over ``tau`` descending
(:func:`camjax.metrics.pxap_from_histograms`). The state is two value histograms over
the threshold grid (fg and bg pixels), exact int counts on device, so streaming equals
all-at-once exactly for the grid, as in the benchmark's ``MaskEvaluator``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax import labeling, metrics
from camjax.evaluators import counter, validation

State = dict[str, counter.Counter]


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
    hist = metrics.pixel_histograms(maps, masks, edges, keep, backend=backend)
    ignored = jnp.sum(keep[:, None, None] & (masks == metrics.MASK_IGNORE))
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
            cam_thresholds = metrics.default_cam_thresholds()
        self.cam_thresholds = validation.thresholds(cam_thresholds, "cam_thresholds")
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
            # counts them; called directly, as pure_callback ran it ~2x slower here.
            maps, masks = np.asarray(maps), np.asarray(masks)
            keep = np.asarray(validation.sample_valid(sample_valid, batch))
        else:
            maps, masks = jnp.asarray(maps), jnp.asarray(masks)
            keep = validation.sample_valid(sample_valid, batch)
        if self.validate:
            validation.masks(masks, maps.shape, keep)
            validation.maps(maps, keep)
        if isinstance(maps, np.ndarray):
            hist = metrics.pixel_histograms_np(np.asarray(maps, np.float32), masks, edges, keep)
            ignored = np.sum(keep[:, None, None] & (masks == metrics.MASK_IGNORE))
            self.state = add_counts(self.state, hist, np.sum(keep), ignored)
            return
        self.state = update_state(
            self.state, maps.astype(jnp.float32), masks, keep, jnp.asarray(edges), backend="jax"
        )

    def merge(self, other: MaskEvaluator) -> None:
        """Add another evaluator's counts (same thresholds), e.g. from another host."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge evaluators with different thresholds")
        self.state = {k: counter.merge(v, other.state[k]) for k, v in self.state.items()}

    def result(self) -> dict[str, Any]:
        """The metrics as plain Python numbers (see the class docstring for the keys)."""
        n = int(counter.total(self.state["count"]))
        if n == 0:
            raise ValueError("MaskEvaluator.result(): no example has been counted")
        fg, bg = counter.total(self.state["hist"])
        precision, recall, defined = metrics.precision_recall_from_histograms(fg, bg)
        return {
            "pxap": metrics.pxap_from_histograms(fg, bg),
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
