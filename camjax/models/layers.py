"""Layers the backbones share."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from camjax.models.batch_norm import BatchNorm
from camjax.models.convolution import conv_general_dilated


def batch_norm(
    name: str,
    train: bool,
    axis_name: str | None,
    momentum: float,
    epsilon: float,
    dtype: Any,
    relu: bool = False,
) -> BatchNorm:
    """BatchNorm (:class:`camjax.models.batch_norm.BatchNorm`) with running statistics in
    eval mode; ``axis_name`` (the pmap/shard_map axis) synchronises training statistics
    across devices, ``None`` keeps them per device; ``relu`` fuses the ReLU that follows."""
    return BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        axis_name=axis_name,
        dtype=dtype,
        relu=relu,
        name=name,
    )


def conv(features: int, kernel: int, name: str, dtype: Any, **kwargs: Any) -> nn.Conv:
    """``nn.Conv`` with a square ``kernel`` on :func:`camjax.models.convolution.
    conv_general_dilated` (same values, a faster weight gradient on CPU); ``kwargs`` are
    ``nn.Conv``'s (strides, padding, use_bias, ...)."""
    return nn.Conv(
        features,
        (kernel, kernel),
        dtype=dtype,
        conv_general_dilated=conv_general_dilated,
        name=name,
        **kwargs,
    )
