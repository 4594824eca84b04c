"""XGrad-CAM: ``M_c = sum_k w_kc A_k``, ``w_kc = sum_ij (A_k(i, j) / sum_ab A_k(a, b))
dS_c / dA_k(i, j)`` (no ReLU; ``w_kc = 0`` for a channel summing to 0).

Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
CNNs", BMVC 2020. pytorch-grad-cam adds 1e-7 to the channel sum and clips the map at 0;
torchcam adds 1e-8 and applies a ReLU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from camjax.methods.gradcampp import safe_div
from camjax.methods.gradients import feature_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def xgradcam_weights(cut: Cut, target) -> jax.Array:
    g = feature_gradients(cut, target)
    a = cut.features
    share = safe_div(a, a.sum(axis=(1, 2), keepdims=True))
    return jnp.einsum("bhwk,bnhwk->bnk", share, g, precision=jax.lax.Precision.HIGHEST)


XGRADCAM = register(
    Method(
        "xgradcam",
        "XGrad-CAM",
        "Fu et al., BMVC 2020",
        weights=xgradcam_weights,
        relu=False,
        gradient=True,
    )
)
