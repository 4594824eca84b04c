"""The CAM head and the wrapper that turns any backbone into a CAM network.

Zhou et al. (CVPR 2016), Sec. 2: the last conv map ``f_k(x, y)`` is pooled by global
average pooling into ``F_k`` and one dense layer gives ``S_c = sum_k w_ck F_k``. The
paper adds a 3x3, stride 1, pad 1 conv with 1024 units (ReLU) on the truncated
backbone before GAP; AlexNet*-GAP adds two such layers; GoogLeNet-GMP pools with max.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# A layer constructor passed as a module field (``conv: ModuleDef = nn.Conv``), so that a
# user can swap in their own convolution or normalisation without touching the network.
ModuleDef = Any


def batch_norm(module: nn.Module, train: bool, epsilon: float) -> ModuleDef:
    """``module.norm`` set up from the backbone's BatchNorm fields (``bn_momentum``,
    ``bn_axis_name``, ``dtype``): running statistics in eval mode, batch ones in training."""
    return functools.partial(
        module.norm,
        use_running_average=not train,
        momentum=module.bn_momentum,
        epsilon=epsilon,
        axis_name=module.bn_axis_name,
        dtype=module.dtype,
    )


POOLS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "avg": lambda f: jnp.mean(f, axis=(1, 2)),
    "max": lambda f: jnp.max(f, axis=(1, 2)),
}


class CAMHead(nn.Module):
    """Extra convs -> global pooling -> dense classifier.

    Attributes:
      num_classes: classifier outputs.
      conv_features: widths of the added 3x3/1/1 ReLU convs (the paper: ``(1024,)``;
        ``()`` for a backbone that already ends in the map, e.g. EfficientNet-Lite0).
      pool: ``"avg"`` (GAP) or ``"max"`` (GMP).
      conv: the convolution constructor (``flax.linen.Conv`` by default).
    """

    num_classes: int
    conv_features: Sequence[int] = (1024,)
    pool: str = "avg"
    dtype: Any = jnp.float32
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        for i, width in enumerate(self.conv_features):
            x = self.conv(width, (3, 3), padding=1, dtype=self.dtype, name=f"cam_conv{i}")(x)
            x = nn.relu(x)
        pooled = POOLS[self.pool](x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(pooled)
        return logits, x


class CAMNet(nn.Module):
    """A backbone followed by a :class:`CAMHead`.

    ``apply(variables, images, train=False) -> (logits, features)`` with images NHWC
    float32 and ``features`` the ``[B, h, w, K]`` map that the head pools. Params live
    under ``backbone`` and ``head``; :func:`camjax.models.classifier` reads the head.
    """

    backbone: nn.Module
    head: CAMHead
    min_input_size: int = 1

    def __call__(self, images: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be NHWC with 3 channels, got shape {tuple(images.shape)}"
            )
        h, w = images.shape[1:3]
        if min(h, w) < self.min_input_size:
            raise ValueError(
                f"input {h}x{w} is smaller than this network's minimum input size "
                f"{self.min_input_size}x{self.min_input_size} (its receptive field)"
            )
        features = self.backbone(images, train=train)
        logits, cam_features = self.head(features)
        # Logits in float32 whatever the compute dtype: losses and CAM identities need it.
        return logits.astype(jnp.float32), cam_features
