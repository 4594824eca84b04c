"""Batch normalisation with a hand-written backward pass.

Same variables, statistics and outputs as ``flax.linen.BatchNorm`` (params ``scale`` and
``bias``, batch_stats ``mean`` and ``var``, variance ``E[x^2] - E[x]^2`` in float32 and
clipped at 0, running averages ``m * old + (1 - m) * batch``), so checkpoints and the
pretrained mappings are unchanged. Training mode differs only in how the gradient is
built. Autodiff of the normaliser leaves XLA:CPU several full passes over the
activation (``x - mean``, the re-normalised input, two broadcast products); here the
backward is the closed form of Ioffe & Szegedy (2015), with ``xhat = (x - mean) * r``,
``r = 1 / sqrt(var + eps)`` and ``M`` the number of reduced elements (over every device
of ``axis_name`` when statistics are synchronised)::

    dbias  = sum(dy)                dscale = sum(dy * xhat)
    dx     = scale * r * (dy - sum_all(dy) / M - xhat * sum_all(dy * xhat) / M)

that is one reduction pass and one elementwise pass. ``sum_all`` adds the device sums
with ``lax.psum`` when ``axis_name`` is set, which is the gradient autodiff gives for
the ``pmean``-synchronised statistics. On CPUs with :mod:`camjax.native`, both
reduction passes (the forward's ``sum(x)``, ``sum(x^2)`` and the backward's two sums,
ReLU's mask included) are one-pass FFI kernels: XLA otherwise materialises ``xhat`` or
``x - mean`` for its reductions, a full extra write and read of the activation.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from camjax import native


def _stats(x32: jnp.ndarray, axis_name: str | None, use_native: bool):
    """Batch ``(mean, var)`` over all axes but the last (``pmean`` over ``axis_name``)."""
    axes = tuple(range(x32.ndim - 1))
    count = x32.size // x32.shape[-1]
    sums = native.on_cpu(
        use_native,
        lambda a: native.call("camjax_batch_stats", (2, a.shape[-1]), a),  # one pass
        lambda a: jnp.stack([a.sum(axes), (a * a).sum(axes)]),
        x32,
    )
    moments = sums / count
    if axis_name is not None:
        moments = lax.pmean(moments, axis_name)
    mean, mean2 = moments
    return mean, jnp.maximum(0.0, mean2 - mean * mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def batch_norm_train(x, scale, bias, epsilon: float, axis_name: str | None, dtype: Any, relu: bool):
    """``(y, mean, var)`` of training-mode batch norm over all axes but the last;
    ``relu=True`` returns ``y = max(bn(x), 0)`` (ReLU's gradient, 0 at 0, folded into
    the same two backward passes)."""
    return _forward(x, scale, bias, epsilon, axis_name, dtype, relu)[0]


def _normalize(x, mean, var, scale, bias, epsilon, relu):
    """``(y, r)``: ``y = (x - mean) * scale * r + bias`` (then ReLU if asked), with
    ``r = 1 / sqrt(var + epsilon)``; shared by training and eval mode."""
    r = lax.rsqrt(var + epsilon)
    y = (x - mean) * (scale * r) + bias
    return (jnp.maximum(y, 0.0) if relu else y), r


def _forward(x, scale, bias, epsilon, axis_name, dtype, relu):
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean, var = _stats(x32, axis_name, native.available(x.dtype))
    y, r = _normalize(x32, mean, var, scale, bias, epsilon, relu)
    return (y.astype(dtype), mean, var), (x, scale, bias, mean, r)


def _bwd(epsilon, axis_name, dtype, relu, res, cts):
    del epsilon, dtype
    x, scale, bias, mean, r = res
    dy, dmean, dvar = cts
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(mean.dtype)
    g = dy.astype(mean.dtype)
    coef = scale * r

    def masked(c, a):  # ReLU's gradient (0 at 0), from the recomputed pre-activation
        return jnp.where((a - mean) * coef + bias > 0, c, 0.0) if relu else c

    def by_xla(c, a):
        c = masked(c, a)
        return jnp.stack([c.sum(axes), (c * ((a - mean) * r)).sum(axes)])

    def by_native(c, a):  # one pass over dy and x; nothing the size of x is written
        sums = native.call(
            "camjax_batch_grad_stats", (2, x.shape[-1]), c, a, mean, coef, bias, relu=relu
        )
        return sums * jnp.stack([jnp.ones_like(r), r])

    use_native = native.available(x.dtype) and native.available(dy.dtype)
    local = native.on_cpu(use_native, by_native, by_xla, g, x32)
    g = masked(g, x32)
    centred = x32 - mean
    xhat = centred * r
    # dmean / dvar are the cotangents of the returned statistics (zero when only the
    # running averages read them); they reach x through E[x] and E[x^2] - E[x]^2.
    shared = jnp.concatenate([local, jnp.stack([dmean, dvar])])
    count = x.size // x.shape[-1]
    if axis_name is not None:
        shared = lax.psum(shared, axis_name)
        count = count * lax.psum(1, axis_name)
    sum_g, sum_gx, all_dmean, all_dvar = shared / count
    dx = coef * (g - sum_g - xhat * sum_gx) + all_dmean + 2.0 * all_dvar * centred
    return (
        dx.astype(x.dtype),
        local[1].astype(scale.dtype),
        local[0].astype(scale.dtype),
    )


batch_norm_train.defvjp(_forward, _bwd)


class BatchNorm(nn.Module):
    """Drop-in for the ``flax.linen.BatchNorm`` features camjax uses (last axis,
    affine, float32 statistics), with the closed-form training gradient above."""

    use_running_average: bool | None = None
    axis_name: str | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    relu: bool = False  # apply ReLU after the affine step, in the same fused op

    @nn.compact
    def __call__(self, x: jnp.ndarray, use_running_average: bool | None = None) -> jnp.ndarray:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, features, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
        dtype = self.dtype or jnp.result_type(x, self.param_dtype)
        if use_running_average:
            y, _ = _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon, self.relu)
            return y.astype(dtype)
        initializing = self.is_initializing()
        axis_name = None if initializing else self.axis_name
        y, mean, var = batch_norm_train(
            *native.vary_together(x, scale, bias), self.epsilon, axis_name, dtype, self.relu
        )
        if not initializing:
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y
