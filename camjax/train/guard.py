"""The divergence guard: only usable training states become checkpoints.

A state is *usable* when every array in it is finite and the global L2 norm of its
parameters is at most ``MAX_NORM_GROWTH`` times that of the run's starting state (step 0,
recorded in every checkpoint's metadata so restarts keep the same reference). A finite
loss alone is not enough: with ``optimizer.learning_rate=1e30`` the first update leaves
finite parameters around 1e27, from which every later step diverges again. Legitimate
training changes the parameter norm by a small factor (weight decay shrinks it, scale-
invariant layers grow it slowly); divergence multiplies it by orders of magnitude, so a
bound of 1000x separates the two without stopping healthy runs.

When a loss or a state is not usable, training stops without saving it and says why:
the step, the loss, the learning rate at that step and the configured one, which
checkpoint is the latest (every saved one passed this check) and that resuming with the
same learning rate will diverge again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

MAX_NORM_GROWTH = 1000.0


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite, or the state diverged (not usable)."""


def param_norm(state: Any) -> float:
    """Global L2 norm of ``state.params`` (host arrays), in float64; inf if non-finite."""
    leaves = jax.tree.leaves(state.params)
    total = sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in leaves)
    return float(np.sqrt(total)) if np.isfinite(total) else float("inf")


def non_finite_arrays(state: Any) -> list[str]:
    """Paths of the floating-point arrays of ``state`` that hold NaN or inf."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return [
        jax.tree_util.keystr(p)
        for p, x in leaves
        if np.issubdtype(np.asarray(x).dtype, np.inexact) and not np.isfinite(x).all()
    ]


class Guard:
    """Checks losses and states against the usable rule (module docstring)."""

    def __init__(self, base_lr: float, schedule: Callable[[int], Any], reference_norm: float):
        self.base_lr = float(base_lr)
        self.schedule = schedule
        self.reference_norm = float(reference_norm)
        self.latest: tuple[int, float] | None = None  # (step, parameter norm) last saved

    def meta(self, norm: float) -> dict:
        """What a checkpoint records for the guard of a later restart."""
        return {"param_norm": norm, "reference_norm": self.reference_norm}

    def _lr(self, step: int) -> str:
        at = float(np.asarray(self.schedule(max(step - 1, 0))))  # step s applies count s-1
        return f"learning rate {at:.3g} at step {step} (optimizer.learning_rate={self.base_lr:g})"

    def _advice(self, latest_step: int | None) -> str:
        if latest_step is None:
            kept = "no checkpoint was saved, so a restart begins at step 0"
        else:
            norm = f", parameter norm {self.latest[1]:.3g}" if self.latest else ""
            kept = f"latest checkpoint: step {latest_step} (usable: finite{norm})"
        return (
            f"; {kept}. Resuming with the same learning rate will diverge again: lower "
            "optimizer.learning_rate (or check the input data)"
        )

    def check_losses(self, losses: list[tuple[int, Any]], latest_step: int | None) -> None:
        """Raise on the first non-finite loss among ``(step, loss)`` pairs."""
        if not losses:
            return
        values = np.asarray(jax.device_get([loss for _, loss in losses]), np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            s, v = losses[bad[0]][0], values[bad[0]]
            raise NonFiniteLossError(
                f"training diverged: loss {v} at step {s} with {self._lr(s)}; stopped "
                f"without saving{self._advice(latest_step)}"
            )

    def check_state(self, host: Any, step: int, loss: float, latest_step: int | None) -> float:
        """The parameter norm of ``host`` if it is usable; raise otherwise."""
        bad = non_finite_arrays(host)
        why = f"{len(bad)} array(s) hold NaN or inf (first: {bad[0]})" if bad else ""
        norm = param_norm(host)
        limit = MAX_NORM_GROWTH * max(self.reference_norm, 1e-12)
        if not why and norm > limit:
            why = (
                f"the parameter norm {norm:.3g} is {norm / self.reference_norm:.3g}x the "
                f"{self.reference_norm:.3g} of step 0 (usable: at most "
                f"{MAX_NORM_GROWTH:g}x)"
            )
        if why:
            raise NonFiniteLossError(
                f"training diverged: after step {step} {why}; the loss was {loss:.4g} with "
                f"{self._lr(step)}; stopped without saving it{self._advice(latest_step)}"
            )
        return norm

    def check_restored(self, host: Any, step: int, meta: dict, fresh_norm: float) -> None:
        """Set the reference from a restored checkpoint; refuse a diverged one (those of
        camjax versions without this guard may be)."""
        saved = meta.get("guard")
        norm = param_norm(host)
        if saved:  # checked when it was saved
            self.reference_norm = float(saved["reference_norm"])
            self.latest = (step, norm)
            return
        self.reference_norm = fresh_norm  # older checkpoint: the fresh state's norm
        bad = non_finite_arrays(host)
        if bad or norm > MAX_NORM_GROWTH * max(fresh_norm, 1e-12):
            what = f"NaN or inf in {bad[0]}" if bad else f"parameter norm {norm:.3g}"
            raise NonFiniteLossError(
                f"checkpoint step {step} holds a diverged state ({what}; a fresh start has "
                f"{fresh_norm:.3g}): resuming from it would diverge again. Remove that step "
                "(or use another --workdir) and lower optimizer.learning_rate"
            )
        self.latest = (step, norm)
