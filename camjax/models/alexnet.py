"""``alexnet_gap`` and ``alexnet_star_gap``: torchvision's AlexNet up to conv5 + CAM head.

Zhou et al. (CVPR 2016), Sec. 3.1: AlexNet is cut after conv5 (pool5 to prob removed),
giving a 13x13 map at 224x224 input (and at 227x227). The trunk is torchvision's
single-tower AlexNet (64-192-384-256-256 channels, no LRN), named after its state-dict
keys (``features.3.weight`` -> ``features_3/kernel``) so ImageNet weights map on.

AlexNet*-GAP: the paper adds two conv layers before GAP to win back the accuracy AlexNet
loses without its fc layers, and gives no sizes. The authors' released model
(``deploy_alexnetplusCAM_imagenet.prototxt`` in github.com/zhoubolei/CAM) has them as
``conv6`` and ``conv7``: 3x3, stride 1, pad 1, 512 outputs each, ReLU. We use those two
widths in the head (``conv_features=(512, 512)``), instead of the single 1024-unit conv.
Unlike that Caffe model we keep no stride-1 pool5 and no channel groups, so the map
stays at conv5's 13x13 and the trunk stays torchvision's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from camjax.models.head import CAMHead, CAMNet, ModuleDef

# (torchvision ``features`` index, out channels, kernel, stride, padding); a 3x3/2 max-pool
# (floor mode) follows conv1 and conv2.
ALEXNET_CONVS: tuple[tuple[int, int, int, int, int], ...] = (
    (0, 64, 11, 4, 2),
    (3, 192, 5, 1, 2),
    (6, 384, 3, 1, 1),
    (8, 256, 3, 1, 1),
    (10, 256, 3, 1, 1),
)
_POOL_AFTER = (0, 3)

# conv1 output floor((s - 7) / 4) + 1 must be >= 7 so that both 3x3/2 pools leave >= 1
# pixel: 7 -> 3 -> 1. Hence s - 7 >= 24, s >= 31.
ALEXNET_MIN_INPUT = 31


class AlexNetBackbone(nn.Module):
    """torchvision AlexNet conv1 .. conv5 (+ReLU): ``[B, 224, 224, 3] -> [B, 13, 13, 256]``."""

    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no batch statistics in AlexNet
        x = x.astype(self.dtype)
        for index, width, k, stride, pad in ALEXNET_CONVS:
            x = self.conv(
                width, (k, k), (stride, stride), pad, dtype=self.dtype, name=f"features_{index}"
            )(x)
            x = nn.relu(x)
            if index in _POOL_AFTER:
                x = nn.max_pool(x, (3, 3), (2, 2))
        return x


def alexnet_gap(num_classes: int, *, dtype: Any = jnp.float32) -> CAMNet:
    """AlexNet-GAP: conv5 map (13x13) -> 3x3/1/1 conv 1024 + ReLU -> GAP -> dense."""
    return CAMNet(
        backbone=AlexNetBackbone(dtype=dtype),
        head=CAMHead(num_classes, conv_features=(1024,), pool="avg", dtype=dtype),
        min_input_size=ALEXNET_MIN_INPUT,
    )


def alexnet_star_gap(num_classes: int, *, dtype: Any = jnp.float32) -> CAMNet:
    """AlexNet*-GAP: conv5 map -> two 3x3/1/1 convs, 512 + ReLU each -> GAP -> dense."""
    return CAMNet(
        backbone=AlexNetBackbone(dtype=dtype),
        head=CAMHead(num_classes, conv_features=(512, 512), pool="avg", dtype=dtype),
        min_input_size=ALEXNET_MIN_INPUT,
    )
