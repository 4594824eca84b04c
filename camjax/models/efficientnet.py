"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variant of TF's EfficientNet repo).

The Lite variant removes squeeze-and-excitation, uses ReLU6 instead of swish and keeps
the stem (32) and head (1280) widths fixed. The trunk is a 3x3/2 stem conv, sixteen
MBConv blocks (1x1 expand -> kxk depthwise -> 1x1 project, identity skip when stride is
1 and widths match) and a 1x1 conv to 1280 channels. Every conv is followed by BatchNorm
(epsilon 1e-3) and all but the projections by ReLU6; padding is TensorFlow's "SAME"
(extra pixel at the bottom/right for even totals), which ``padding="SAME"`` in Flax is.

It already ends in a CAM network: the 7x7x1280 map at 224 input is global-average
pooled into one dense 1000-way layer, so the head adds no conv (``conv_features=()``).

Module names follow the ``efficientnet_pytorch`` state dict (``_conv_stem``, ``_bn0``,
``_blocks_N/{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}``, ``_conv_head``,
``_bn1``; ``_fc`` is ``head/classifier``) so that :mod:`camjax.pretrained.efficientnet`
maps it key by key. BatchNorm momentum follows Flax (``running = m * running + (1 - m) *
batch``): TF's 0.99 is PyTorch's 0.01.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from camjax.models.head import CAMHead, CAMNet, ModuleDef, batch_norm

BN_EPSILON = 1e-3  # the TF EfficientNet-Lite reference


class Stage(NamedTuple):
    """One run of MBConv blocks: the first has ``stride``, the rest stride 1."""

    expand_ratio: int
    kernel_size: int
    stride: int
    out_features: int
    repeats: int


# EfficientNet-B0/Lite0 stages (Tan & Le 2019, Table 1), width and depth multipliers 1.0.
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Sandler et al. 2018).

    ``y = BN(W_p * relu6(BN(DW_k,s * relu6(BN(W_e * x)))))``, plus ``x`` when the stride is
    1 and the widths match; in training the residual branch is dropped per example with
    probability ``drop_rate`` (stochastic depth, "drop connect") and rescaled by
    ``1 / (1 - drop_rate)``, using the ``"dropout"`` rng. ``conv`` and ``norm`` come
    ready-configured from the backbone (dtype, no bias, train mode).
    """

    in_features: int
    stage: Stage
    stride: int
    conv: ModuleDef
    norm: ModuleDef
    drop_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        inputs = x
        hidden = self.in_features * self.stage.expand_ratio
        k = self.stage.kernel_size
        if self.stage.expand_ratio != 1:
            x = self.conv(hidden, (1, 1), name="_expand_conv")(x)
            x = nn.relu6(self.norm(name="_bn0")(x))
        x = self.conv(
            hidden,
            (k, k),
            strides=self.stride,
            padding="SAME",
            feature_group_count=hidden,
            name="_depthwise_conv",
        )(x)
        x = nn.relu6(self.norm(name="_bn1")(x))
        x = self.conv(self.stage.out_features, (1, 1), name="_project_conv")(x)
        x = self.norm(name="_bn2")(x)
        if self.stride == 1 and self.in_features == self.stage.out_features:
            if train and self.drop_rate > 0.0:
                keep = 1.0 - self.drop_rate
                mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0], 1, 1, 1))
                x = jnp.where(mask, x / keep, jnp.zeros_like(x))
            x = x + inputs
        return x


class EfficientNetLiteBackbone(nn.Module):
    """Stem -> MBConv stages -> 1x1 head conv; returns the ``[B, H/32, W/32, 1280]`` map.

    ``drop_connect_rate`` is the stochastic-depth rate of the last block; block ``i`` of
    ``n`` uses ``rate * i / n`` (the TF reference's schedule; it trains with 0.2). The
    default 0 needs no rng.
    """

    stages: Sequence[Stage] = LITE0_STAGES
    stem_features: int = 32
    head_features: int = 1280
    drop_connect_rate: float = 0.0
    bn_axis_name: str | None = None
    bn_momentum: float = 0.99
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
        norm = batch_norm(self, train, BN_EPSILON)
        x = x.astype(self.dtype)
        x = conv(self.stem_features, (3, 3), strides=2, padding="SAME", name="_conv_stem")(x)
        x = nn.relu6(norm(name="_bn0")(x))
        num_blocks = sum(s.repeats for s in self.stages)
        in_features, i = self.stem_features, 0
        for stage in self.stages:
            for r in range(stage.repeats):
                x = MBConv(
                    in_features,
                    stage,
                    stage.stride if r == 0 else 1,
                    conv,
                    norm,
                    drop_rate=self.drop_connect_rate * i / num_blocks,
                    name=f"_blocks_{i}",
                )(x, train=train)
                in_features, i = stage.out_features, i + 1
        x = conv(self.head_features, (1, 1), name="_conv_head")(x)
        return nn.relu6(norm(name="_bn1")(x))


def efficientnet_lite0_gap(
    num_classes: int,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.99,
    drop_connect_rate: float = 0.0,
) -> CAMNet:
    """EfficientNet-Lite0 as it stands: 7x7x1280 map at 224, GAP, one dense layer."""
    return CAMNet(
        backbone=EfficientNetLiteBackbone(
            drop_connect_rate=drop_connect_rate,
            bn_axis_name=bn_axis_name,
            bn_momentum=bn_momentum,
            dtype=dtype,
        ),
        head=CAMHead(num_classes, conv_features=(), pool="avg", dtype=dtype),
        min_input_size=32,
    )


__all__ = ["LITE0_STAGES", "EfficientNetLiteBackbone", "MBConv", "Stage", "efficientnet_lite0_gap"]
