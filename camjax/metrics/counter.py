"""Exact event counts that outgrow int32, kept on device as two int32 words.

A pixel count over a large evaluation set passes 2**31 (50,000 images of 224 x 224 are
2.5e9 pixels) and float32 stops counting exactly at 2**24, while 64-bit integers need
``jax_enable_x64``. So a count is ``high * 2**20 + low`` with ``0 <= low < 2**20``: each
addition of a batch count below ``2**31 - 2**20`` carries into ``high`` exactly. An
on-device evaluator's state is a dict of such counts (:data:`State`); two evaluators'
states add with :func:`merge_states`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

LOW_BITS = 20
_LOW_MASK = (1 << LOW_BITS) - 1

Counter = dict[str, jnp.ndarray]
State = dict[str, Counter]  # an evaluator's named counts


def zeros(shape: tuple[int, ...]) -> Counter:
    """A zero count of the given shape."""
    return {"high": jnp.zeros(shape, jnp.int32), "low": jnp.zeros(shape, jnp.int32)}


def add(count: Counter, batch: jnp.ndarray) -> Counter:
    """``count + batch`` for a non-negative int32 ``batch`` below ``2**31 - 2**20``; jittable."""
    low = count["low"] + jnp.asarray(batch, jnp.int32)
    return {"high": count["high"] + (low >> LOW_BITS), "low": low & _LOW_MASK}


def merge(a: Counter, b: Counter) -> Counter:
    """``a + b`` of two counts (e.g. from two hosts' evaluators)."""
    return add({"high": a["high"] + b["high"], "low": a["low"]}, b["low"])


def total(count: Counter) -> np.ndarray:
    """The exact count as host int64: ``high * 2**20 + low``."""
    high = np.asarray(count["high"], np.int64)
    return (high << LOW_BITS) + np.asarray(count["low"], np.int64)


def merge_states(a: State, b: State) -> State:
    """Every count of ``a`` plus the same count of ``b``: two evaluators' states merged."""
    return {k: merge(v, b[k]) for k, v in a.items()}
