"""``camjax.extract`` on every local device, and processes through ``jax.distributed``.

Pure data parallelism: the batch is split over a one-axis mesh of this process's devices
and each device runs ``camjax.extract`` on its slice (``jax.shard_map``). The program
holds no collective: the box kernel is a host callback on CPU, and host callbacks next to
collectives on many CPU devices can deadlock. Processes share nothing at run time either:
each one extracts its own shards of the input list (``camjax.bulk.run``); only the
coordinator handshake of ``jax.distributed.initialize`` connects them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

OUTPUT_KEYS = ("class_ids", "probs", "maps", "boxes")


def init_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (CPU processes talk through gloo)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=int(num_processes),
        process_id=int(process_id),
    )


def make_step(
    model: Any,
    variables: Any,
    *,
    devices: list | None = None,
    keep_maps: bool = True,
    **extract_kw: Any,
) -> tuple[Callable[[np.ndarray], dict[str, jax.Array]], int]:
    """``(step, num_devices)``: ``step(images [B, S, S, 3])`` -> extract's outputs
    (``OUTPUT_KEYS``), batch split over ``devices`` (default: this process's devices).
    ``B`` must be a multiple of ``num_devices``. The call is asynchronous (JAX dispatch)."""
    from camjax.extraction import extract

    devices = list(devices or jax.local_devices())
    mesh = Mesh(np.asarray(devices), ("data",))
    keys = OUTPUT_KEYS if keep_maps else tuple(k for k in OUTPUT_KEYS if k != "maps")

    def body(v, x):
        out = extract(model, v, x, **extract_kw)
        return {k: out[k] for k in keys}

    # check_vma=False: the box kernels trace a while_loop whose carry starts unvarying.
    sharded = jax.shard_map(
        body, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"), check_vma=False
    )
    fn = jax.jit(sharded)
    replicated = jax.device_put(variables, NamedSharding(mesh, P()))
    batch_sharding = NamedSharding(mesh, P("data"))

    def step(images: np.ndarray) -> dict[str, jax.Array]:
        return fn(replicated, jax.device_put(images, batch_sharding))

    return step, len(devices)


__all__ = ["OUTPUT_KEYS", "init_distributed", "make_step"]
