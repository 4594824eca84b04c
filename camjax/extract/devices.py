"""``camjax.extract`` on every local device, and processes through ``jax.distributed``.

Pure data parallelism: the batch is split over a one-axis mesh of this process's devices
and each device runs :func:`camjax.localize.localize` on its slice (``jax.shard_map``). The program
holds no collective and no host callback (boxes are found on the host after it, see
:func:`make_step`): both were seen to hang programs on many CPU devices. Processes
share nothing at run time either: each one extracts its own shards of the input list
(:mod:`camjax.extract.run`); only the coordinator handshake of ``jax.distributed.initialize``
connects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from camjax.boxes import largest_box_np
from camjax.localize import LocalizeSpec, box_masks, input_maps, localize


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
    spec: LocalizeSpec,
    *,
    maps: str = "feature",
    devices: Sequence | None = None,
) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], int]:
    """``(step, num_devices)``: ``step(images [B, S, S, 3])`` -> ``class_ids``, ``probs``,
    ``maps`` (feature or input resolution, as ``maps`` says: ``"feature"``, ``"input"``,
    ``"none"``) and ``boxes [B, k, 4]`` (input pixels) of ``spec``'s top-k (or
    ``class_ids``), the batch split over ``devices`` (default: this process's devices).
    ``B`` must be a multiple of ``num_devices``.

    The device program ends at the kept-pixel masks (:func:`camjax.localize.box_masks`)
    of the input-size maps, which are the feature maps resized and normalised again as
    ``spec`` says (:func:`camjax.localize.input_maps`: what :func:`~camjax.localize.localize`
    boxes, up to float rounding); the largest component's box is found on the host
    (:func:`camjax.boxes.largest_box_np`), so the program holds no host callback: a
    callback inside a program running on 8 CPU devices was seen to hang at random.
    ``step`` is split in two so that the next batch can be dispatched before this one is
    boxed: ``step(images)`` returns a handle, ``step.finish(handle, n)`` the numpy results
    of its first ``n`` rows."""
    devices = tuple(devices or jax.local_devices())
    key = (model, id(variables), devices, spec, maps)
    hit = _STEPS.get(key)
    if hit is not None and hit[0] is variables:
        return hit[1], len(devices)
    step = _build(model, variables, devices, spec, maps)
    _STEPS.clear()  # one compiled program kept: a second run in the process reuses it
    _STEPS[key] = (variables, step)
    return step, len(devices)


_STEPS: dict = {}


def _build(model, variables, devices, spec, maps):
    mesh = Mesh(np.asarray(devices), ("data",))
    on_device = spec.replace(map_resolution="feature", num_boxes=0)

    def body(v, x):
        out = localize(model, v, x, on_device)
        full = input_maps(out["maps"], x.shape[1:3], spec)
        res = {"class_ids": out["class_ids"], "probs": out["probs"], "kept": box_masks(full, spec)}
        if maps != "none":
            res["maps"] = full if maps == "input" else out["maps"]
        return res

    sharded = jax.shard_map(
        body, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"), check_vma=False
    )
    fn = jax.jit(sharded)
    replicated = jax.device_put(variables, NamedSharding(mesh, P()))
    batch_sharding = NamedSharding(mesh, P("data"))

    class Step:
        def __call__(self, images: np.ndarray) -> dict[str, jax.Array]:
            return fn(replicated, jax.device_put(images, batch_sharding))

        def finish(self, handle: dict[str, jax.Array], n: int) -> dict[str, np.ndarray]:
            out = {key: np.asarray(v)[:n] for key, v in handle.items()}
            out["boxes"] = largest_box_np(out.pop("kept"))
            return out

    return Step()


__all__ = ["init_distributed", "make_step"]
