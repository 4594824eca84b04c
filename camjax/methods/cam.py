"""CAM: ``M_c = sum_k w_kc A_k``, ``w`` the dense classifier's kernel (no ReLU).

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, Eq. 2.
Needs the ``nn.Dense`` that scores the globally pooled layer (the layer's ``K``
channels in, classes out) and a class target (class ids, :class:`ClassLogit` or
:class:`ClassProbability`). For a GAP network ``mean_ij M_c + b_c = S_c``.
torchcam's CAM has no ReLU either; pytorch-grad-cam clips every map at 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register
from camjax.methods.targets import class_ids_of


def cam_weights(cut: Cut, target) -> jax.Array:
    """``w[b, n, k] = W[k, class_ids[b, n]]``."""
    ids = class_ids_of(target)
    if ids is None:
        raise ValueError(
            f"plain CAM weights channels by a class's dense column: its target must be "
            f"class ids, got {type(target).__name__}; use gradcam for other targets"
        )
    kernel = cut.classifier()
    # "fill" makes a bad id visible (NaN) under jit instead of clamping it to a class.
    return jnp.take(kernel.T, ids, axis=0, mode="fill", fill_value=jnp.nan)


CAM = register(
    Method(
        "cam",
        "CAM",
        "Zhou et al., CVPR 2016",
        weights=cam_weights,
        relu=False,
    )
)
