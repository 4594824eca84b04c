"""Gradient saliency: ``M_c(i, j) = max_ch |dS_c / dX(i, j, ch)|``, input resolution.

Simonyan et al., "Deep Inside Convolutional Networks: Visualising Image Classification
Models and Saliency Maps", ICLR Workshop 2014, Sec. 3.1; the "Backprop" baseline of
Zhou et al. (CVPR 2016). Reads no layer; returns ``[B, N, H, W]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from camjax.methods.gradients import input_gradients
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register


def backprop_maps(cut: Cut, target) -> jax.Array:
    return jnp.abs(input_gradients(cut, target)).max(axis=-1)


BACKPROP = register(
    Method(
        "backprop",
        "Backprop",
        "Simonyan et al., ICLR Workshop 2014",
        maps=backprop_maps,
        gradient=True,
        uses_layer=False,
    )
)
