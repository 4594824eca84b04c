"""Model FLOPs and MFU for the benchmarks: XLA's cost analysis of a compiled program, the
accelerators' peak FLOP/s (a table, each figure with its source) and a measured matmul."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# Dense peak TFLOP/s per device (no sparsity), by a lower-case substring of
# ``device_kind``, first match wins: (float32 row's peak, bfloat16 peak, source).
# XLA's default precision lets cuDNN/cuBLAS run float32 convolutions and matmuls as
# TF32 on Ampere and later, so the float32 row is set against the TF32 tensor-core peak.
PEAKS: tuple[tuple[str, float, float, str], ...] = (
    ("h200", 494.5, 989.5, "NVIDIA H200 datasheet (TF32 / BF16 tensor core, dense)"),
    ("h100 pcie", 378.0, 756.0, "NVIDIA H100 datasheet, PCIe (TF32 / BF16, dense)"),
    ("h100 nvl", 417.5, 835.5, "NVIDIA H100 datasheet, NVL (TF32 / BF16, dense)"),
    ("h100", 494.5, 989.5, "NVIDIA H100 datasheet, SXM (TF32 / BF16 tensor core, dense)"),
    ("a100", 156.0, 312.0, "NVIDIA A100 datasheet (TF32 / BF16 tensor core, dense)"),
    ("l4", 60.0, 121.0, "NVIDIA L4 datasheet (TF32 / BF16, dense)"),
    ("tpu v6", 918.0, 918.0, "Google Cloud TPU v6e docs (bf16 per chip)"),
    ("tpu v5 lite", 197.0, 197.0, "Google Cloud TPU v5e docs (bf16 per chip)"),
    ("tpu v5", 459.0, 459.0, "Google Cloud TPU v5p docs (bf16 per chip)"),
    ("tpu v4", 275.0, 275.0, "Google Cloud TPU v4 docs (bf16 per chip)"),
)


def total_flops(cost: Any) -> float | None:
    """The ``flops`` of a cost analysis: a dict (current JAX), a list of per-program dicts
    (older JAX), or ``None`` where the backend gives none."""
    if cost is None:
        return None
    if isinstance(cost, Mapping):
        cost = [cost]
    values = [float(c["flops"]) for c in cost if c and "flops" in c]
    return sum(values) if values else None


def compiled_flops(fn: Callable, *args: Any) -> float | None:
    """FLOPs of ``jax.jit(fn)`` at ``args`` (of an already jitted or pmapped ``fn``: its own
    ``lower``), from the compiled program's cost analysis."""
    import jax

    lower = fn.lower if hasattr(fn, "lower") else jax.jit(fn).lower
    return total_flops(lower(*args).compile().cost_analysis())


def peak_of(device_kind: str, dtype: str) -> tuple[float | None, str]:
    """``(peak FLOP/s per device, source)`` from :data:`PEAKS`, ``(None, why)`` if absent."""
    kind = device_kind.lower()
    for key, f32, bf16, source in PEAKS:
        if key in kind:
            return 1e12 * (bf16 if dtype == "bfloat16" else f32), source
    return None, f"no table entry for {device_kind!r}"


def matmul_flops_per_s(n: int, dtype: str, repeats: int = 5) -> float:
    """Best FLOP/s of an ``n x n`` matmul in ``dtype`` on the default device."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
