"""Opt-in CPU tuning: the one place where camjax does something for the CPU platform only.

Nothing here runs unless an entry point or a config asks for it (``config.cpu`` in
training configs, ``--cpu-devices`` / ``--cpu-depthwise`` of ``camjax extract``); the
library's models and functions never call it. Three switches:

* :func:`split_cores` makes JAX present the host CPU as ``n`` devices
  (``jax_num_cpu_devices``), so that camjax's data-parallel training and sharded
  extraction keep every core busy. XLA:CPU runs one small program on one device with
  little intra-op parallelism; ``n`` programs on ``n`` devices run side by side. It must
  be called before JAX starts a backend, and it yields to an explicit
  ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``. It changes nothing on a
  GPU or TPU host: there the default devices are the accelerators.
* :func:`shifted_depthwise` swaps the convolution constructor of a model for
  :class:`ShiftedDepthwiseConv`, which computes depthwise convolutions (one filter per
  channel, ``feature_group_count == in_features == features``) as a sum of ``k * k``
  shifted, per-channel-scaled slices of the input: one fused elementwise loop, where
  XLA:CPU's grouped convolution is a slow generic path. It is chosen per platform at
  lowering (``lax.platform_dependent``): GPU and TPU programs keep the native grouped
  convolution, and parameters (names, shapes, initial values) are those of ``nn.Conv``.
  Every other convolution is left to ``nn.Conv``. The README's benchmark section gives
  the measured speed-ups, layer by layer.
* :func:`shifted_weight_grad` swaps it for :class:`ShiftedWeightGradConv`, whose kernel
  gradient in a CPU program is one matmul per kernel tap (XLA:CPU's kernel-gradient
  convolution is where a training step loses to PyTorch on wide layers); the forward
  pass, the input gradient and every GPU/TPU program are XLA's own.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_FORCE_FLAG = "--xla_force_host_platform_device_count"


def split_cores(n: int) -> int:
    """Present the host CPU as ``n`` JAX devices; returns the CPU device count to expect.

    ``n <= 0`` changes nothing (JAX's default: one CPU device). An explicit
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS`` wins over ``n`` (the
    caller asked for that count already). Raises ``RuntimeError`` (JAX's) when a backend
    has already started: call it first thing in an entry point.
    """
    if n <= 0 or _FORCE_FLAG in os.environ.get("XLA_FLAGS", ""):
        return 0
    jax.config.update("jax_num_cpu_devices", int(n))
    return int(n)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def devices_for(requested: int, batch_size: int) -> int:
    """The largest device count ``<= requested`` that divides ``batch_size`` (data
    parallelism splits every batch evenly); 0 when ``requested <= 0``."""
    if requested <= 0:
        return 0
    return max(d for d in range(1, min(requested, batch_size) + 1) if batch_size % d == 0)


def _pairs(padding: Any, kernel: Sequence[int], strides: Sequence[int], shape: Sequence[int]):
    """Explicit ``(low, high)`` pads per spatial axis for flax's padding spellings."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * len(kernel)
        if mode == "SAME":
            out = []
            for n, k, s in zip(shape, kernel, strides, strict=True):
                total = max((-(-n // s) - 1) * s + k - n, 0)
                out.append((total // 2, total - total // 2))
            return out
        raise ValueError(f"padding must be SAME, VALID or explicit pads, got {padding!r}")
    if isinstance(padding, int):
        return [(padding, padding)] * len(kernel)
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def depthwise_by_shifts(x: jax.Array, kernel: jax.Array, strides, pads) -> jax.Array:
    """``y[b, i, j, c] = sum_{a, d} xp[b, i*s0 + a, j*s1 + d, c] * kernel[a, d, 0, c]``.

    ``x`` is NHWC, ``kernel`` HWIO with I = 1 (the grouped layout of ``nn.Conv``),
    ``xp`` is ``x`` zero-padded by ``pads``.
    """
    kh, kw = kernel.shape[:2]
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    ho = (xp.shape[1] - kh) // strides[0] + 1
    wo = (xp.shape[2] - kw) // strides[1] + 1
    b, c = xp.shape[0], xp.shape[3]
    out = None
    for a in range(kh):
        for d in range(kw):
            end = (b, a + (ho - 1) * strides[0] + 1, d + (wo - 1) * strides[1] + 1, c)
            window = lax.slice(xp, (0, a, d, 0), end, (1, strides[0], strides[1], 1))
            term = window * kernel[a, d, 0]
            out = term if out is None else out + term
    return out


class ShiftedDepthwiseConv(nn.Module):
    """A grouped 2-D NHWC convolution (``nn.Conv`` with ``feature_group_count > 1``)
    whose depthwise case runs as shifted slices on CPU (see the module docstring).

    Parameter names, shapes and initializers are ``nn.Conv``'s: ``kernel`` is
    ``(*kernel_size, in_features // feature_group_count, features)``. A grouped
    convolution that is not depthwise (a channel multiplier, groups of several channels)
    runs as the native grouped convolution on every platform.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Any = 1
    padding: Any = "SAME"
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = nn.linear.default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = tuple(self.kernel_size)
        if x.ndim != 4 or len(k) != 2:
            raise ValueError(f"ShiftedDepthwiseConv is 2-D NHWC only, got input {x.shape}")
        groups, c_in, c = self.feature_group_count, x.shape[-1], self.features
        if c_in % groups or c % groups:
            raise ValueError(f"{c_in} inputs and {c} outputs do not split into {groups} groups")
        strides = tuple(self.strides) if isinstance(self.strides, Sequence) else (self.strides,) * 2
        kernel = self.param("kernel", self.kernel_init, (*k, c_in // groups, c), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pads = _pairs(self.padding, k, strides, x.shape[1:3])

        def native(x, kernel):
            return lax.conv_general_dilated(
                x,
                kernel,
                strides,
                pads,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=groups,
                precision=self.precision,
            )

        if groups == c_in == c:
            shifted = functools.partial(depthwise_by_shifts, strides=strides, pads=pads)
            y = lax.platform_dependent(x, kernel, cpu=shifted, default=native)
        else:
            y = native(x, kernel)
        if bias is not None:
            y = y + bias
        return y


def weight_grad_by_shifts(x: jax.Array, g: jax.Array, kernel_hw, strides, pads) -> jax.Array:
    """The kernel gradient of a 2-D NHWC/HWIO convolution (one group, no dilation) with
    output cotangent ``g``, one matmul per kernel tap:
    ``dk[a, d] = sum_{b, i, j} xp[b, i*s0 + a, j*s1 + d, :]^T g[b, i, j, :]``
    (``xp``: ``x`` zero-padded by ``pads``), accumulated in float32."""
    kh, kw = kernel_hw
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    (b, ho, wo), c = g.shape[:3], xp.shape[3]
    taps = []
    for a in range(kh):
        for d in range(kw):
            end = (b, a + (ho - 1) * strides[0] + 1, d + (wo - 1) * strides[1] + 1, c)
            window = lax.slice(xp, (0, a, d, 0), end, (1, strides[0], strides[1], 1))
            taps.append(jnp.einsum("bhwc,bhwo->co", window, g, preferred_element_type=jnp.float32))
    return jnp.stack(taps).reshape(kh, kw, c, g.shape[-1])


def _native_conv(x, kernel, strides, pads, precision):
    return lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_shifted_weight_grad(x, kernel, strides, pads, precision=None):
    """A plain 2-D NHWC/HWIO convolution whose kernel gradient, in a CPU program, is
    :func:`weight_grad_by_shifts`; its forward pass and input gradient are XLA's own, and
    GPU/TPU programs are XLA's throughout (``lax.platform_dependent``). Reverse mode only
    (a ``custom_vjp``): ``jax.jvp`` through it raises."""
    return _native_conv(x, kernel, strides, pads, precision)


def _wg_fwd(x, kernel, strides, pads, precision):
    return _native_conv(x, kernel, strides, pads, precision), (x, kernel)


def _wg_bwd(strides, pads, precision, res, g):
    x, kernel = res
    dx = jax.vjp(lambda x: _native_conv(x, kernel, strides, pads, precision), x)[1](g)[0]

    def native(x, g):
        return jax.vjp(lambda k: _native_conv(x, k, strides, pads, precision), kernel)[1](g)[0]

    def shifted(x, g):
        return weight_grad_by_shifts(x, g, kernel.shape[:2], strides, pads).astype(kernel.dtype)

    return dx, lax.platform_dependent(x, g, cpu=shifted, default=native)


conv_shifted_weight_grad.defvjp(_wg_fwd, _wg_bwd)


# Where the per-tap kernel gradient is used: layers at least this wide (input and output
# channels) on maps at least this large (output pixels per image). Narrower layers or
# smaller maps keep XLA's kernel gradient, which is as fast or faster there (the per-tap
# matmuls get too thin); the README's per-op profile has the measurements.
WIDE_CHANNELS = 64
LARGE_MAP = 56 * 56


class ShiftedWeightGradConv(nn.Module):
    """``nn.Conv`` for 2-D NHWC with one group and no dilation (the parameters, names and
    initializers are ``nn.Conv``'s), computed by :func:`conv_shifted_weight_grad` for wide
    layers on large maps (:data:`WIDE_CHANNELS`, :data:`LARGE_MAP`), else as ``nn.Conv``
    computes it."""

    features: int
    kernel_size: Sequence[int]
    strides: Any = 1
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = nn.linear.default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = tuple(self.kernel_size)
        if x.ndim != 4 or len(k) != 2:
            raise ValueError(f"ShiftedWeightGradConv is 2-D NHWC only, got input {x.shape}")
        strides = tuple(self.strides) if isinstance(self.strides, Sequence) else (self.strides,) * 2
        kernel = self.param("kernel", self.kernel_init, (*k, x.shape[-1], self.features),
                            self.param_dtype)  # fmt: skip
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pads = tuple(tuple(p) for p in _pairs(self.padding, k, strides, x.shape[1:3]))
        pixels = (x.shape[1] // strides[0]) * (x.shape[2] // strides[1])
        if min(x.shape[-1], self.features) >= WIDE_CHANNELS and pixels >= LARGE_MAP:
            y = conv_shifted_weight_grad(x, kernel, strides, pads, self.precision)
        else:
            y = _native_conv(x, kernel, strides, pads, self.precision)
        return y + bias if bias is not None else y


_CONV_FIELDS = tuple(f.name for f in dataclasses.fields(nn.Conv) if f.init)


def _routed(cls: type, args: tuple, kwargs: dict, grouped: bool) -> nn.Module:
    """``cls`` for a 2-D call (grouped or not, as asked) that sets no ``nn.Conv`` option
    ``cls`` lacks (beyond the defaults None/1); ``nn.Conv`` otherwise."""
    named = {**dict(zip(_CONV_FIELDS, args, strict=False)), **kwargs}
    kernel_size = named.get("kernel_size", ())
    two_d = len(tuple(kernel_size)) == 2 if isinstance(kernel_size, Sequence) else False
    own = {f.name for f in dataclasses.fields(cls)}
    other = {k: v for k, v in named.items() if k not in own}
    wanted = named.get("feature_group_count", 1) > 1 if grouped else True
    if two_d and wanted and all(v in (None, 1) for v in other.values()):
        return cls(**{k: v for k, v in named.items() if k in own})
    return nn.Conv(*args, **kwargs)


def _conv_weight_grad(*args: Any, **kwargs: Any) -> nn.Module:
    """A ``ModuleDef`` taking ``nn.Conv``'s arguments: plain 2-D calls (one group, no
    dilation, no other option) get :class:`ShiftedWeightGradConv`, others ``nn.Conv``."""
    return _routed(ShiftedWeightGradConv, args, kwargs, grouped=False)


def _conv(*args: Any, **kwargs: Any) -> nn.Module:
    """A ``ModuleDef`` taking ``nn.Conv``'s arguments (positional ones in its field order):
    grouped 2-D calls get :class:`ShiftedDepthwiseConv`, every other one ``nn.Conv``."""
    return _routed(ShiftedDepthwiseConv, args, kwargs, grouped=True)


def _swap_conv(model: nn.Module, constructor: Any) -> nn.Module:
    changes = {}
    for f in dataclasses.fields(model):
        if f.name in ("parent", "name"):
            continue
        value = getattr(model, f.name)
        if value is nn.Conv:
            changes[f.name] = constructor
        elif isinstance(value, nn.Module):
            changed = _swap_conv(value, constructor)
            if changed is not value:
                changes[f.name] = changed
    return model.clone(**changes) if changes else model


def shifted_depthwise(model: nn.Module) -> nn.Module:
    """``model`` (unbound) with every ``nn.Conv`` constructor field, at any depth of
    submodule fields, replaced by one that routes depthwise convolutions to
    :class:`ShiftedDepthwiseConv`. The variables of ``model`` apply unchanged."""
    return _swap_conv(model, _conv)


def shifted_weight_grad(model: nn.Module) -> nn.Module:
    """``model`` (unbound) with every ``nn.Conv`` constructor field replaced by one that
    routes plain 2-D convolutions to :class:`ShiftedWeightGradConv`: on CPU the kernel
    gradients of wide layers on large maps are per-tap matmuls, where XLA:CPU's own
    kernel-gradient convolution is slow (the README's per-op profile). Same variables,
    same forward program; for training (reverse mode): ``jax.jvp`` through wide layers
    raises. Not combined
    with :func:`shifted_depthwise` (each swaps the plain ``nn.Conv`` fields)."""
    return _swap_conv(model, _conv_weight_grad)


__all__ = [
    "ShiftedDepthwiseConv",
    "ShiftedWeightGradConv",
    "conv_shifted_weight_grad",
    "depthwise_by_shifts",
    "devices_for",
    "shifted_depthwise",
    "shifted_weight_grad",
    "split_cores",
    "usable_cores",
    "weight_grad_by_shifts",
]
