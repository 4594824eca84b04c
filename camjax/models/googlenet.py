"""``googlenet_gap`` / ``googlenet_gmp``: torchvision's GoogLeNet (with BN) to inception4e.

Zhou et al. (CVPR 2016), Sec. 3.1: GoogLeNet is cut after inception4e, giving a 14x14
map at 224x224 input; GoogLeNet-GMP is the same network pooled with global max pooling.
The trunk follows torchvision's ``googlenet`` (Szegedy et al. 2015 with BatchNorm, eps
1e-3, bias-free convs, its "5x5" branch implemented as 3x3, and ceil-mode 3x3/2
max-pools); submodules are named after its state-dict keys
(``inception3a.branch2.1.conv.weight`` -> ``inception3a/branch2_1/conv/kernel``).

Batch norm: statistics are per device by default (``bn_axis_name=None``), which is what
data-parallel training with per-device batches of >= 32 images does well; pass the
pmap/shard_map axis name to synchronise them. ``bn_momentum`` follows Flax's convention
(running = momentum * running + (1 - momentum) * batch); torchvision's 0.1 is Flax's 0.9.

torchvision's ImageNet weights expect ``transform_input=True``: images normalised with the
ImageNet mean/std are mapped to ``(x - 0.5) / 0.5`` in [0, 1] pixel units. Set
``transform_input=True`` when feeding ImageNet-normalised images to those weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from camjax.files.images import IMAGENET_MEAN, IMAGENET_STD
from camjax.models.head import CAMHead, CAMNet, ModuleDef, batch_norm

# Inception blocks up to 4e: (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj),
# from Szegedy et al. (2015), Table 1; "M" marks the ceil-mode 3x3/2 max-pool (maxpool3).
INCEPTION_BLOCKS: tuple[tuple[str, int, int, int, int, int, int] | str, ...] = (
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    "M",
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
)

# conv1 (7x7/2 pad 3) gives floor((s - 1) / 2) + 1; then three ceil-mode 3x3/2 pools with
# out(n) = ceil((n - 3) / 2) + 1, which is >= 1 iff n >= 2 and >= 2 iff n >= 4. Backwards:
# pool3 needs 2 <- pool2 needs 4 <- pool1 needs 8 <- conv1 gives 8 iff s >= 15.
GOOGLENET_MIN_INPUT = 15


def max_pool_ceil(x: jnp.ndarray, window: int, stride: int) -> jnp.ndarray:
    """Max-pool with PyTorch's ``ceil_mode=True`` and no padding.

    ``out = ceil((n - window) / stride) + 1``, dropping the last window if it would start
    at or past the input's end; the overhang on the right is padded with -inf.
    """
    pads = []
    for n in x.shape[1:3]:
        out = math.ceil((n - window) / stride) + 1
        if (out - 1) * stride >= n:
            out -= 1
        if out < 1:
            raise ValueError(f"ceil-mode max-pool {window}x{window}/{stride} got side {n} < 2")
        pads.append((0, max(0, (out - 1) * stride + window - n)))
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


class BasicConv2d(nn.Module):
    """torchvision ``BasicConv2d``: conv (no bias) -> BN (eps 1e-3) -> ReLU.

    ``conv`` and ``norm`` come ready-configured from the backbone (dtype, train mode).
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef
    kernel: int = 1
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        k, s = self.kernel, self.stride
        x = self.conv(self.features, (k, k), (s, s), self.padding, name="conv")(x)
        return nn.relu(self.norm(name="bn")(x))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | pool->1x1."""

    channels: Sequence[int]  # ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c1, c3r, c3, c5r, c5, cp = self.channels
        block = functools.partial(BasicConv2d, conv=self.conv, norm=self.norm)
        b1 = block(c1, name="branch1")(x)
        b2 = block(c3r, name="branch2_0")(x)
        b2 = block(c3, kernel=3, padding=1, name="branch2_1")(b2)
        b3 = block(c5r, name="branch3_0")(x)
        # torchvision uses a 3x3 kernel in the "5x5" branch; its weights need that.
        b3 = block(c5, kernel=3, padding=1, name="branch3_1")(b3)
        # 3x3/1 pad 1 ceil-mode pool keeps the size; pads count as -inf.
        b4 = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        b4 = block(cp, name="branch4_1")(b4)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNetBackbone(nn.Module):
    """conv1 .. inception4e: ``[B, 224, 224, 3] -> [B, 14, 14, 832]``."""

    bn_axis_name: str | None = None
    bn_momentum: float = 0.9
    transform_input: bool = False
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.transform_input:
            # x_raw = x * std + mean in [0, 1]; torchvision's weights want (x_raw - 0.5) / 0.5.
            mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
            x = (x * std + mean - 0.5) / 0.5
        x = x.astype(self.dtype)
        block = functools.partial(
            BasicConv2d,
            conv=functools.partial(self.conv, use_bias=False, dtype=self.dtype),
            norm=batch_norm(self, train, 1e-3),
        )
        x = block(64, kernel=7, stride=2, padding=3, name="conv1")(x)
        x = max_pool_ceil(x, 3, 2)
        x = block(64, name="conv2")(x)
        x = block(192, kernel=3, padding=1, name="conv3")(x)
        x = max_pool_ceil(x, 3, 2)
        for spec in INCEPTION_BLOCKS:
            if spec == "M":
                x = max_pool_ceil(x, 3, 2)
            else:
                name, *channels = spec
                x = Inception(
                    tuple(channels), block.keywords["conv"], block.keywords["norm"], name=name
                )(x)
        return x


def _googlenet(
    num_classes: int,
    pool: str,
    dtype: Any,
    bn_axis_name: str | None,
    bn_momentum: float,
    transform_input: bool,
) -> CAMNet:
    backbone = GoogLeNetBackbone(
        bn_axis_name=bn_axis_name,
        bn_momentum=bn_momentum,
        transform_input=transform_input,
        dtype=dtype,
    )
    return CAMNet(
        backbone=backbone,
        head=CAMHead(num_classes, conv_features=(1024,), pool=pool, dtype=dtype),
        min_input_size=GOOGLENET_MIN_INPUT,
    )


def googlenet_gap(
    num_classes: int,
    *,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    transform_input: bool = False,
) -> CAMNet:
    """GoogLeNet-GAP: inception4e map (14x14) -> 3x3/1/1 conv 1024 + ReLU -> GAP -> dense."""
    return _googlenet(num_classes, "avg", dtype, bn_axis_name, bn_momentum, transform_input)


def googlenet_gmp(
    num_classes: int,
    *,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    transform_input: bool = False,
) -> CAMNet:
    """GoogLeNet-GMP: as GoogLeNet-GAP, but the head pools with ``max_xy`` (global max)."""
    return _googlenet(num_classes, "max", dtype, bn_axis_name, bn_momentum, transform_input)
