"""``tiny_gap``: a small VGG-style CAM network for CPU demos and tests.

Three conv stages (widths 16/32/64 by default, ``convs_per_stage`` 3x3 convs each, each
followed by BatchNorm and ReLU) with two 2x2 max-pools between them, so the map is a
quarter of the input side (8x8 at 32x32 input, 16x16 at 64x64), then the paper's CAM
head with a narrower conv (128 units by default).

Why two convs per stage and BatchNorm: with one plain conv per stage the receptive field
of a map cell (26 px) is too small to see a whole silhouette of the embedded data set
and SGD sat on the loss plateau ``log C`` for hundreds of steps; the deeper, normalised
variant trains to >90% validation accuracy there within the demo's step budget (the
README gives the measured accuracy and time).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from camjax.models.head import CAMHead, CAMNet, ModuleDef, batch_norm


class TinyBackbone(nn.Module):
    """``len(widths)`` stages of ``convs_per_stage`` x (3x3 conv [-> BN] -> ReLU)."""

    widths: Sequence[int] = (16, 32, 64)
    convs_per_stage: int = 2
    batch_norm: bool = True
    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = functools.partial(
            self.conv, padding=1, use_bias=not self.batch_norm, dtype=self.dtype
        )
        norm = batch_norm(self, train, 1e-5)
        x = x.astype(self.dtype)
        for i, width in enumerate(self.widths):
            if i > 0:
                x = nn.max_pool(x, (2, 2), (2, 2))
            for j in range(self.convs_per_stage):
                name = f"conv{i}" if j == 0 else f"conv{i}_{j}"
                x = conv(width, (3, 3), name=name)(x)
                if self.batch_norm:
                    x = norm(name=f"bn{name[4:]}")(x)
                x = nn.relu(x)
        return x


def tiny_gap(
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),
    head_features: int = 128,
    convs_per_stage: int = 2,
    batch_norm: bool = True,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    dtype: Any = jnp.float32,
) -> CAMNet:
    """The ``tiny_gap`` CAM network; ``batch_norm=False, convs_per_stage=1`` is the
    plain three-conv variant."""
    if convs_per_stage < 1:
        raise ValueError(f"convs_per_stage must be >= 1, got {convs_per_stage}")
    return CAMNet(
        backbone=TinyBackbone(
            widths=tuple(widths),
            convs_per_stage=convs_per_stage,
            batch_norm=batch_norm,
            bn_axis_name=bn_axis_name,
            bn_momentum=bn_momentum,
            dtype=dtype,
        ),
        head=CAMHead(num_classes, conv_features=(head_features,), dtype=dtype),
        min_input_size=4,
    )
