"""``lax.conv_general_dilated`` with faster stride-1 convolutions on CPU.

Values and gradients are those of ``lax.conv_general_dilated``. What changes is how a
stride-1, ungrouped NHWC/HWIO float32 convolution runs on the CPU:

* With the native kernels (:mod:`camjax.native`: AVX-512, built on first use), the
  forward pass, the input gradient (the forward kernel on the output gradient with the
  kernel flipped and transposed) and the weight gradient are direct convolutions
  called through the XLA FFI. XLA:CPU builds the weight gradient as a convolution whose
  "kernel" is the whole image, which ran up to 4x slower than PyTorch's oneDNN and needed
  transposed copies of both operands.
* Without them (other CPUs, no compiler, ``CAMJAX_NATIVE=0``) the weight gradient is
  XLA's, but its two transposes sit inside a ``lax.cond`` (both branches the same
  transpose, the predicate only known at run time) that XLA cannot fuse across.
  Otherwise XLA fuses the producers of those tensors (bias + ReLU, batch norm) into the
  transposes and recomputes them with a cache-hostile access pattern: for VGG16's first
  layer at batch 8 that took 180 ms of a 2.8 s training step on 2 cores, against ~31 ms
  for a plain transpose of the same 103 MB.

On other platforms (GPU, TPU) ``lax.platform_dependent`` picks XLA's convolutions.
Other convolutions (strided, grouped, dilated, other layouts or dtypes) take the
ordinary path. Pass it to Flax as ``nn.Conv(..., conv_general_dilated=...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from camjax import native

_NHWC = ("NHWC", "HWIO", "NHWC")


def _plain(x, w, padding):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _native_forward(x, w, pad_top: int, pad_left: int, out_hw: tuple[int, int]):
    shape = (x.shape[0], *out_hw, w.shape[3])
    return native.call("camjax_conv_fwd", shape, x, w, pad_top=pad_top, pad_left=pad_left)


def _native_weight_grad(x, g, w_shape, pad_top: int, pad_left: int):
    return native.call("camjax_conv_dw", w_shape, x, g, pad_top=pad_top, pad_left=pad_left)


class Plan(NamedTuple):
    """Which of the three convolutions run on the native kernels (on CPU)."""

    forward: bool
    input_grad: bool
    weight_grad: bool


# Measured on a 2-core AVX-512 Xeon (bench/conv_kernels.py): the native kernels win
# while the kernel tensor (C x O per tap) stays small enough to live in the core's cache;
# for wide layers XLA's GEMM-based convolutions are as fast or faster.
_FORWARD_MAX_CO = 64 * 64
_INPUT_GRAD_MAX_CO = 64 * 128
_WEIGHT_GRAD_MAX_CO = 256 * 256


def plan(c: int, o: int, dtype: Any, taps: int = 9) -> Plan:
    """The native/XLA choice for a stride-1 convolution with ``c`` input and ``o``
    output channels and ``taps`` kernel positions (all XLA for 1x1 convolutions, which
    XLA runs as plain matrix products, when the kernels are unavailable, or when
    ``dtype`` isn't float32)."""
    if taps == 1 or not native.available(dtype):
        return Plan(False, False, False)
    co = c * o
    return Plan(co <= _FORWARD_MAX_CO or c < 8, co <= _INPUT_GRAD_MAX_CO, co <= _WEIGHT_GRAD_MAX_CO)


def _forward(x, w, padding, use_native: bool):
    (pt, _), (pl, _) = padding
    out_hw = jax.eval_shape(functools.partial(_plain, padding=padding), x, w).shape[1:3]
    return native.on_cpu(
        use_native,
        lambda a, b: _native_forward(a, b, pt, pl, out_hw),
        lambda a, b: _plain(a, b, padding),
        x,
        w,
    )


def _input_grad(x, w, g, padding, use_native: bool):
    """``dx``; natively the forward kernel on ``g`` with the kernel flipped and
    transposed (``g`` padded by ``k - 1 - p`` on the leading sides)."""
    (pt, _), (pl, _) = padding
    kh, kw = w.shape[:2]

    def by_native(b, c):
        b_t = jnp.flip(b, (0, 1)).transpose(0, 1, 3, 2)
        return _native_forward(c, b_t, kh - 1 - pt, kw - 1 - pl, x.shape[1:3])

    def by_xla(b, c):
        return jax.vjp(lambda a: _plain(a, b, padding), x)[1](c)[0]

    return native.on_cpu(use_native, by_native, by_xla, w, g)


def _weight_grad(x, w, g, padding, use_native: bool):
    (pt, _), (pl, _) = padding

    def by_xla(a, c):
        # Any run-time scalar works as the predicate; both branches are identical.
        pred = c.reshape(-1)[0] == c.reshape(-1)[0]
        a_t = _fenced_transpose(a, (3, 1, 2, 0), pred)  # (C, H, W, N): batch C, features N
        c_k = _fenced_transpose(c, (1, 2, 0, 3), pred)  # (Ho, Wo, N, O): the "kernel"
        # dw[i, j, c, o] = sum_{n,h,w} x_pad[n, h + i, w + j, c] * g[n, h, w, o]
        dw = lax.conv_general_dilated(a_t, c_k, (1, 1), padding, dimension_numbers=_NHWC)
        return jnp.transpose(dw, (1, 2, 0, 3))

    def by_native(a, c):
        return _native_weight_grad(a, c, w.shape, pt, pl)

    return native.on_cpu(use_native, by_native, by_xla, x, g).astype(w.dtype)


def _fenced_transpose(v: jax.Array, perm: tuple[int, ...], pred: jax.Array) -> jax.Array:
    """``jnp.transpose(v, perm)`` that XLA cannot fuse with ``v``'s producer."""
    move = functools.partial(jnp.transpose, axes=perm)
    return lax.cond(pred, move, move, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_s1(x, w, padding, how: Plan):
    return _forward(x, w, padding, how.forward)


def _fwd(x, w, padding, how):
    return _forward(x, w, padding, how.forward), (x, w)


def _bwd(padding, how, res, g):
    x, w = res
    return (
        _input_grad(x, w, g, padding, how.input_grad),
        _weight_grad(x, w, g, padding, how.weight_grad),
    )


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
    how = plan(rhs.shape[2], rhs.shape[3], lhs.dtype, rhs.shape[0] * rhs.shape[1])
    lhs, rhs = native.vary_together(lhs, rhs)
    return _conv_s1(lhs, rhs, _explicit_padding(padding, lhs.shape, rhs.shape), how)
