"""``resnet50_gap``: torchvision's ResNet-50 with layer4 at stride 1, then the CAM head.

The third backbone of the WSOL benchmark (Choe et al., CVPR 2020, "Evaluating Weakly
Supervised Object Localization Methods Right"): ResNet-50 (He et al. 2016, torchvision's
v1.5 with the stride on the 3x3 conv) whose last stage keeps stride 1, so the map is
14x14x2048 at 224x224 input, then the CAM head (Zhou et al., CVPR 2016). Submodules are
named after torchvision's state-dict keys (``layer1.0.downsample.1.running_mean`` ->
``batch_stats/.../layer1_0/downsample_1/mean``); layer4's stride does not change any
tensor shape, so torchvision's ImageNet weights map on unchanged.

Batch norm: statistics are per device by default (``bn_axis_name=None``); pass the
pmap/shard_map axis name to synchronise them. ``bn_momentum`` follows Flax's convention
(torchvision's 0.1 is Flax's 0.9). BN epsilon 1e-5 as torchvision.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from camjax.models.head import CAMHead, CAMNet, ModuleDef, batch_norm

BN_EPSILON = 1e-5  # torchvision

# (stage name, bottleneck width, blocks, stride of the first block); output = 4 * width.
RESNET50_STAGES: tuple[tuple[str, int, int, int], ...] = (
    ("layer1", 64, 3, 1),
    ("layer2", 128, 4, 2),
    ("layer3", 256, 6, 2),
    ("layer4", 512, 3, 1),  # stride 1 (torchvision: 2), as in Choe et al. 2020
)

# Every strided layer is k x k / 2 with pad (k - 1) / 2, so out = floor((n - 1) / 2) + 1
# >= 1 for any n >= 1: every input side gives a map, of side ceil(s / 16).
RESNET50_MIN_INPUT = 1


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4), each with BN; ReLU(residual + shortcut).

    ``conv`` and ``norm`` come ready-configured from the backbone (dtype, bias, train mode).
    """

    width: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        s = (self.stride, self.stride)
        out_features = 4 * self.width
        y = self.conv(self.width, (1, 1), name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.conv(self.width, (3, 3), s, padding=1, name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(out_features, (1, 1), name="conv3")(y)
        y = self.norm(name="bn3")(y)
        if self.stride != 1 or x.shape[-1] != out_features:
            x = self.conv(out_features, (1, 1), s, name="downsample_0")(x)
            x = self.norm(name="downsample_1")(x)
        return nn.relu(y + x)


class ResNet50Backbone(nn.Module):
    """conv1 .. layer4 (layer4 at stride 1): ``[B, 224, 224, 3] -> [B, 14, 14, 2048]``."""

    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
        norm = batch_norm(self, train, BN_EPSILON)
        x = x.astype(self.dtype)
        x = conv(64, (7, 7), (2, 2), padding=3, name="conv1")(x)
        x = nn.relu(norm(name="bn1")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, width, blocks, stride in RESNET50_STAGES:
            for i in range(blocks):
                x = Bottleneck(width, conv, norm, stride if i == 0 else 1, name=f"{stage}_{i}")(x)
        return x


def resnet50_gap(
    num_classes: int,
    *,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    head_convs: tuple[int, ...] = (1024,),
) -> CAMNet:
    """ResNet50-GAP: layer4 map (14x14x2048) -> 3x3/1/1 conv 1024 + ReLU -> GAP -> dense.

    ``head_convs=()`` drops the extra conv: GAP straight on layer4, as the WSOL
    benchmark's ResNet50-CAM (clovaai/wsolevaluation ``wsol/resnet.py``) has it.
    """
    return CAMNet(
        backbone=ResNet50Backbone(bn_axis_name=bn_axis_name, bn_momentum=bn_momentum, dtype=dtype),
        head=CAMHead(num_classes, conv_features=tuple(head_convs), pool="avg", dtype=dtype),
        min_input_size=RESNET50_MIN_INPUT,
    )
