"""HiResCAM: ``M_c(i, j) = sum_k dS_c / dA_k(i, j) * A_k(i, j)`` (no ReLU).

Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", arXiv:2011.08891, 2020. pytorch-grad-cam clips the map
at 0 (as it does every method's).
"""

from __future__ import annotations

import jax

from camjax.methods.gradients import feature_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def hirescam_weights(cut: Cut, target) -> jax.Array:
    return feature_gradients(cut, target)  # per-pixel weights [B, N, h, w, K]


HIRESCAM = register(
    Method(
        "hirescam",
        "HiResCAM",
        "Draelos & Carin, arXiv:2011.08891",
        weights=hirescam_weights,
        relu=False,
        gradient=True,
    )
)
