"""Multi-host start-up: ``jax.distributed.initialize`` from the config or the environment.

Must run before the first JAX computation of the process. Each process then feeds its
own share of the global batch (``camjax.data.train_iterator(process_index=...)``) and the
data-parallel runners reduce over every device of every process.
"""

from __future__ import annotations

import os

import jax
import ml_collections

MODES = ("auto", "on", "off")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return None if value in (None, "") else int(value)


def initialize(cfg: ml_collections.ConfigDict) -> bool:
    """Start the JAX distributed runtime when ``cfg`` (``config.distributed``) asks for it.

    ``mode="auto"``: only if ``coordinator_address`` is set in the config or in
    ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``);
    ``"on"``: always (JAX detects SLURM, MPI, TPU and Kubernetes clusters itself);
    ``"off"``: never. On CPU-only hosts the CPU collectives implementation is set to
    ``cfg.cpu_collectives`` (gloo) first. Returns whether the runtime is (now) running.
    """
    if cfg.mode not in MODES:
        raise ValueError(f"distributed.mode must be one of {MODES}, got {cfg.mode!r}")
    if jax.distributed.is_initialized():
        return True
    address = cfg.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if cfg.mode == "off" or (cfg.mode == "auto" and not address):
        return False
    num = cfg.num_processes if cfg.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = cfg.process_id if cfg.process_id is not None else _env_int("JAX_PROCESS_ID")
    if cfg.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    return True
