"""The one combine step every CAM method shares: channel weights x features, ReLU or not.

``M[b, n](i, j) = sum_k w[b, n, k] A[b](i, j, k)`` for channel weights ``[B, N, K]``
(CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, Score-CAM), or with per-pixel weights
``w[b, n](i, j, k)`` ``[B, N, h, w, K]`` (HiResCAM, LayerCAM). ``eigen=True`` replaces
the sum over ``k`` by the first principal component of the weighted activations
(eigen smoothing, below). The method's ReLU, where its paper has one, comes last.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def weighted_sum(features: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_k w A_k``: ``features [B, h, w, K]``, weights ``[B, N, K]`` or
    ``[B, N, h, w, K]`` -> ``[B, N, h, w]``."""
    if weights.ndim == 3:
        return jnp.einsum("bhwk,bnk->bnhw", features, weights, precision=_HIGHEST)
    return jnp.einsum("bhwk,bnhwk->bnhw", features, weights, precision=_HIGHEST)


def eigen_projection(features: jax.Array, weights: jax.Array) -> jax.Array:
    """Eigen smoothing: each map is the projection of the weighted activations
    ``X(i, j, :) = w_k A_k(i, j)`` (centred over pixels) on their first principal
    component (Muhammad & Yeasin, "Eigen-CAM", IJCNN 2020; pytorch-grad-cam's
    ``eigen_smooth``). The component's sign is free; camjax picks the one whose
    projection correlates positively with the plain sum ``sum_k X_k`` (pytorch-grad-cam
    keeps the SVD's sign), so smoothing does not flip a map.
    """
    b, h, w, k = features.shape
    if weights.ndim == 3:
        x = features[:, None] * weights[:, :, None, None, :]
    else:
        x = features[:, None] * weights
    x = x.reshape(b, -1, h * w, k)
    xc = x - x.mean(axis=2, keepdims=True)
    _, _, vt = jnp.linalg.svd(xc, full_matrices=False)
    proj = jnp.einsum("bnpk,bnk->bnp", xc, vt[..., 0, :], precision=_HIGHEST)
    agree = jnp.sum(proj * x.sum(-1), axis=-1, keepdims=True)
    proj = jnp.where(agree < 0, -proj, proj)
    return proj.reshape(b, -1, h, w)


def combine(features: jax.Array, weights: jax.Array, relu: bool, eigen: bool = False) -> jax.Array:
    """The map from channel (or per-pixel) weights: weighted sum (or its first principal
    component, ``eigen=True``), then ``max(., 0)`` when ``relu``."""
    features = features.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    maps = eigen_projection(features, weights) if eigen else weighted_sum(features, weights)
    return jax.nn.relu(maps) if relu else maps


__all__ = ["combine", "eigen_projection", "weighted_sum"]
