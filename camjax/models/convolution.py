"""``lax.conv_general_dilated`` with a weight gradient that XLA:CPU runs faster.

Values and gradients are those of ``lax.conv_general_dilated``. What changes is how the
weight gradient of a stride-1, ungrouped NHWC/HWIO convolution is built. XLA computes
it as a convolution over transposed copies of the input ``(C, H, W, N)`` and of the
output gradient ``(H, W, N, O)``. Left alone, XLA fuses the producers of those tensors
(bias + ReLU, batch norm) into the transposes and recomputes them there with a
cache-hostile access pattern: for VGG16's first layer at batch 8 that fused transpose
took 180 ms of a 2.8 s training step on 2 cores, against ~31 ms for a plain transpose of
the same 103 MB. Here the two transposes sit inside a ``lax.cond`` (both branches are the
same transpose, the predicate is only known at run time), which XLA cannot fuse across,
so they stay plain copies of the already materialised tensors.

Pass it to Flax as ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``; other
convolutions (strided, grouped, dilated, other layouts) take the ordinary path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _plain(x, w, padding):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _fenced_transpose(v: jax.Array, perm: tuple[int, ...], pred: jax.Array) -> jax.Array:
    """``jnp.transpose(v, perm)`` that XLA cannot fuse with ``v``'s producer."""
    move = functools.partial(jnp.transpose, axes=perm)
    return lax.cond(pred, move, move, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_s1(x, w, padding):
    return _plain(x, w, padding)


def _fwd(x, w, padding):
    return _plain(x, w, padding), (x, w)


def _bwd(padding, res, g):
    x, w = res
    (dx,) = jax.vjp(lambda a: _plain(a, w, padding), x)[1](g)
    # Any run-time scalar works as the predicate; both branches are identical.
    pred = g.reshape(-1)[0] == g.reshape(-1)[0]
    x_t = _fenced_transpose(x, (3, 1, 2, 0), pred)  # (C, H, W, N): batch C, features N
    g_k = _fenced_transpose(g, (1, 2, 0, 3), pred)  # (Ho, Wo, N, O): the "kernel"
    # dw[i, j, c, o] = sum_{n,h,w} x_pad[n, h + i, w + j, c] * g[n, h, w, o]
    dw = lax.conv_general_dilated(x_t, g_k, (1, 1), padding, dimension_numbers=_NHWC)
    return dx, jnp.transpose(dw, (1, 2, 0, 3)).astype(w.dtype)


_conv_s1.defvjp(_fwd, _bwd)


def _explicit_padding(padding, x_shape, w_shape) -> tuple[tuple[int, int], ...]:
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    return tuple(lax.padtype_to_pads(x_shape[1:3], w_shape[:2], (1, 1), padding))


def _is_nhwc(dimension_numbers: Any) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers) == _NHWC


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """Drop-in for ``lax.conv_general_dilated``; see the module docstring."""
    fast = (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and tuple(window_strides) == (1, 1)
        and lhs_dilation in (None, (1, 1), [1, 1])
        and rhs_dilation in (None, (1, 1), [1, 1])
        and feature_group_count == 1
        and batch_group_count == 1
        and precision is None
        and preferred_element_type is None
        and lhs.dtype == rhs.dtype
    )
    if not fast:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    return _conv_s1(lhs, rhs, _explicit_padding(padding, lhs.shape, rhs.shape))
