"""Gradients of a target's scores, one backward pass per target slot (vmapped)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from camjax.methods import checks
from camjax.methods.layer import Cut


def per_target_vjp(fn: Callable[[jax.Array], Any], target: Any, x: jax.Array) -> jax.Array:
    """``d score[b, n] / d x[b]`` for every slot ``n``: ``[B, N, *x.shape[1:]]``.

    One forward, then one backward per slot ``n`` with cotangent 1 on column ``n`` of
    every row: the gradient of ``sum_b score[b, n]``, which for images processed
    independently is each image's own gradient.
    """
    scores, vjp_fn = jax.vjp(lambda v: target(fn(v)).astype(jnp.float32), x)
    if scores.ndim != 2 or scores.shape[0] != x.shape[0]:
        raise ValueError(
            f"a target must give scores [B, N] with B = {x.shape[0]}, got {list(scores.shape)}"
        )
    eye = jnp.eye(scores.shape[1], dtype=scores.dtype)
    cot = jnp.broadcast_to(eye[:, None, :], (scores.shape[1],) + scores.shape)
    (grads,) = jax.vmap(vjp_fn, in_axes=0, out_axes=1)(cot)
    return grads


def feature_gradients(cut: Cut, target: Any) -> jax.Array:
    """``G = d target / d A`` at the cut: ``[B, N, h, w, K]``. Reports
    (:mod:`camjax.methods.checks`) a gradient that is zero for every image and target."""
    grads = per_target_vjp(cut.head, target, cut.features)
    checks.report(
        f"the target's gradient at layer {cut.layer!r} is identically zero for every "
        "image (so gradient maps there are all zero): the output does not depend on this "
        "layer's map. A ViT's head that reads only the class token ignores the patch "
        "tokens of the last block; name an earlier layer (e.g. the block before the last) "
        "or a layer the output reads",
        grads.size > 0 and jnp.all(grads == 0),
    )
    return grads


def input_gradients(cut: Cut, target: Any) -> jax.Array:
    """``d target / d X`` at the input: ``[B, N, H, W, C]``."""
    return per_target_vjp(cut.forward, target, cut.images)


__all__ = ["feature_gradients", "input_gradients", "per_target_vjp"]
