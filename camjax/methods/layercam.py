"""LayerCAM: ``M_c(i, j) = ReLU(sum_k ReLU(dS_c / dA_k(i, j)) A_k(i, j))``.

Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
IEEE TIP 30, 2021, Eq. 4-5. Same formula in pytorch-grad-cam and torchcam.
"""

from __future__ import annotations

import jax

from camjax.methods.gradients import feature_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def layercam_weights(cut: Cut, target) -> jax.Array:
    return jax.nn.relu(feature_gradients(cut, target))


LAYERCAM = register(
    Method(
        "layercam",
        "LayerCAM",
        "Jiang et al., IEEE TIP 2021",
        weights=layercam_weights,
        relu=True,
        gradient=True,
    )
)
