"""Layers the backbones share."""

from __future__ import annotations

from typing import Any

from camjax.models.batch_norm import BatchNorm


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
