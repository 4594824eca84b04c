"""Max pooling whose gradient is cheap on CPU.

XLA differentiates ``reduce_window(max)`` through ``select_and_scatter``, which the CPU
backend runs as a scalar loop: on 2 cores the backward of a 2x2 pool over a 64x64x16
batch of 64 took 45 ms, five times the forward of the 3x3 conv before it. Here the
backward is one fused elementwise pass per window offset: an offset receives the output
gradient where it holds the window's maximum and no earlier offset (row-major) did. That
is the same first-maximum rule as ``select_and_scatter`` with ``>=`` and as PyTorch's
``MaxPool2d``, so gradients are identical, ties included.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = str | Sequence[tuple[int, int]]


def _pads(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, str):
        if padding.upper() != "VALID":
            raise ValueError(f"max_pool padding must be 'VALID' or explicit pairs, got {padding!r}")
        return (0, 0), (0, 0)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"max_pool padding must be two non-negative (lo, hi) pairs, got {padding}")
    return pads  # type: ignore[return-value]


def _geometry(shape, window, strides, pads):
    _, h, w, _ = shape
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    oh = (hp - window[0]) // strides[0] + 1
    ow = (wp - window[1]) // strides[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"max_pool window {window} larger than padded input {(hp, wp)}")
    return hp, wp, oh, ow


def _padded(x, pads):
    neg = jnp.array(-jnp.inf, x.dtype)
    return lax.pad(x, neg, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))


def _offset_slices(xp, window, strides, oh, ow):
    """Yields ``(i, j, xp[:, i::sh, j::sw])`` cut to the ``oh x ow`` output grid."""
    n, _, _, c = xp.shape
    for i in range(window[0]):
        for j in range(window[1]):
            end = (n, i + (oh - 1) * strides[0] + 1, j + (ow - 1) * strides[1] + 1, c)
            yield i, j, lax.slice(xp, (0, i, j, 0), end, (1, *strides, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
    neg = jnp.array(-jnp.inf, x.dtype)
    return lax.reduce_window(
        _padded(x, pads), neg, lax.max, (1, *window, 1), (1, *strides, 1), "VALID"
    )


def _max_pool_fwd(x, window, strides, pads):
    y = _max_pool(x, window, strides, pads)
    return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
    x, y = res
    hp, wp, oh, ow = _geometry(x.shape, window, strides, pads)
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    dxp = jnp.zeros((x.shape[0], hp, wp, x.shape[3]), g.dtype)
    for i, j, xs in _offset_slices(_padded(x, pads), window, strides, oh, ow):
        hit = (xs == y) & ~taken
        taken = taken | hit
        # Interior padding spreads the (oh, ow) gradient back onto the stride grid.
        cfg = (
            (0, 0, 0),
            (i, hp - i - (oh - 1) * strides[0] - 1, strides[0] - 1),
            (j, wp - j - (ow - 1) * strides[1] - 1, strides[1] - 1),
            (0, 0, 0),
        )
        dxp = dxp + lax.pad(jnp.where(hit, g, zero), zero, cfg)
    (t, b), (le, r) = pads
    return (dxp[:, t : hp - b, le : wp - r, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(
    x: jnp.ndarray,
    window: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jnp.ndarray:
    """Max pooling over the two spatial axes of an NHWC batch.

    ``y[n, p, q, c] = max_{0<=a<kh, 0<=b<kw} x_pad[n, p*sh + a, q*sw + b, c]`` with
    ``x_pad`` padded by ``-inf`` (``padding`` is ``"VALID"`` or ``((top, bottom),
    (left, right))``), as ``flax.linen.max_pool``. Reverse-mode only (``jax.vjp``,
    ``jax.grad``); forward-mode differentiation is not defined for it.
    """
    if x.ndim != 4:
        raise ValueError(f"max_pool expects an NHWC batch (rank 4), got shape {x.shape}")
    window = tuple(int(k) for k in window)
    strides = window if strides is None else tuple(int(s) for s in strides)
    if len(window) != 2 or len(strides) != 2 or min(window + strides) < 1:
        raise ValueError(f"max_pool window {window} / strides {strides} must be 2 positive ints")
    pads = _pads(padding)
    _geometry(x.shape, window, strides, pads)
    return _max_pool(x, window, strides, pads)
