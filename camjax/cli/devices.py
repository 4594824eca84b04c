"""The host CPU as several JAX devices, as a config asks (``config.cpu.devices``)."""

from __future__ import annotations

from typing import Any


def split_cpu(config: Any) -> int:
    """``config.cpu.devices``: the host CPU as that many JAX devices (see camjax.cpu).

    Entry points call it before any JAX work; returns the count set (0: none)."""
    from camjax import cpu

    tuning = config.get("cpu")
    if not tuning or not tuning.get("devices"):
        return 0
    return cpu.split_cores(cpu.devices_for(int(tuning.devices), int(config.train.batch_size)))
