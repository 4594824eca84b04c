"""``vgg16_gap``: VGG16 (Simonyan & Zisserman 2015) up to conv5_3, then the CAM head.

Zhou et al. (CVPR 2016), Sec. 3.1: the layers after conv5_3 (pool5 to prob) are removed,
so the map is 14x14 at 224x224 input (four 2x2 max-pools: 224 / 16 = 14). Submodules are
named after torchvision's ``vgg16`` state-dict keys (``features.0.weight`` ->
``features_0/kernel``) so that ImageNet weights map on mechanically.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from camjax.models.head import CAMHead, CAMNet, ModuleDef

# torchvision's VGG16 ``features`` indices: 3x3/1/1 conv (with ReLU at index + 1) or "M"
# for a 2x2/2 max-pool, up to conv5_3 at index 28 (pool5 at index 30 is dropped).
VGG16_LAYERS: tuple[tuple[int, int | str], ...] = (
    (0, 64), (2, 64), (4, "M"),
    (5, 128), (7, 128), (9, "M"),
    (10, 256), (12, 256), (14, 256), (16, "M"),
    (17, 512), (19, 512), (21, 512), (23, "M"),
    (24, 512), (26, 512), (28, 512),
)  # fmt: skip

# Four 2x2 pools with floor: the smallest side that leaves a 1x1 map is 2**4.
VGG16_MIN_INPUT = 16


class VGG16Backbone(nn.Module):
    """VGG16 conv1_1 .. conv5_3 (+ReLU): ``[B, H, W, 3] -> [B, H/16, W/16, 512]``."""

    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no batch statistics in VGG16
        x = x.astype(self.dtype)
        for index, layer in VGG16_LAYERS:
            if layer == "M":
                x = nn.max_pool(x, (2, 2), (2, 2))
            else:
                x = self.conv(layer, (3, 3), padding=1, dtype=self.dtype, name=f"features_{index}")(
                    x
                )
                x = nn.relu(x)
        return x


def vgg16_gap(num_classes: int, *, dtype: Any = jnp.float32) -> CAMNet:
    """VGG16-GAP: conv5_3 map (14x14 at 224) -> 3x3/1/1 conv 1024 + ReLU -> GAP -> dense."""
    return CAMNet(
        backbone=VGG16Backbone(dtype=dtype),
        head=CAMHead(num_classes, conv_features=(1024,), pool="avg", dtype=dtype),
        min_input_size=VGG16_MIN_INPUT,
    )
