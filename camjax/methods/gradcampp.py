"""Grad-CAM++: ``M_c = ReLU(sum_k w_kc A_k)``, ``w_kc = sum_ij alpha_kij ReLU(g_kij)``,
``alpha_kij = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)`` with ``g = dS_c / dA_k(i, j)``.

Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for
Deep Convolutional Networks", WACV 2018, Eq. 19 (the exponential-score closed form,
higher derivatives as powers of the first); the paper's ``exp(S_c)`` factor is a
positive constant per map and is dropped. camjax adds no epsilon: ``alpha = 0`` where
the denominator is 0. pytorch-grad-cam adds 1e-6 to the denominator (and zeroes
``alpha`` where ``g = 0``); torchcam adds 1e-8 and uses ``sum_ab A_k(a, b) g_k(a, b)^3``
in the denominator instead of the paper's ``sum_ab A_k(a, b) * g_kij^3``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from camjax.methods.gradients import feature_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den``, 0 where ``den == 0`` (and no NaN in the gradient of that)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def gradcampp_weights(cut: Cut, target) -> jax.Array:
    g = feature_gradients(cut, target)  # [B, N, h, w, K]
    a = cut.features[:, None]
    g2 = g * g
    alpha = safe_div(g2, 2.0 * g2 + a.sum(axis=(2, 3), keepdims=True) * g2 * g)
    return (alpha * jax.nn.relu(g)).sum(axis=(2, 3))


GRADCAMPP = register(
    Method(
        "gradcampp",
        "Grad-CAM++",
        "Chattopadhyay et al., WACV 2018",
        weights=gradcampp_weights,
        relu=True,
        gradient=True,
    )
)
