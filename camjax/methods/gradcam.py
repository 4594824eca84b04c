"""Grad-CAM: ``M_c = ReLU(sum_k a_kc A_k)``, ``a_kc = mean_ij dS_c / dA_k(i, j)``.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, Eq. 1-2. Same formula in pytorch-grad-cam and torchcam.
"""

from __future__ import annotations

import jax

from camjax.methods.gradients import feature_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def gradcam_weights(cut: Cut, target) -> jax.Array:
    return feature_gradients(cut, target).mean(axis=(2, 3))


GRADCAM = register(
    Method(
        "gradcam",
        "Grad-CAM",
        "Selvaraju et al., ICCV 2017",
        weights=gradcam_weights,
        relu=True,
        gradient=True,
    )
)
