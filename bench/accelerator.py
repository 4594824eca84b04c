"""The accelerator table in one command: training, extraction, boxes, and a correctness line.

    python bench/accelerator.py [--out bench-results] [--steps 10]   # on a GPU or TPU host
    python bench/accelerator.py --smoke                                 # every row, tiny, on CPU

Rows (``--rows`` picks a subset):

- ``train``: training-step throughput of ``vgg16_gap`` and ``resnet50_gap`` at 224, in
  float32 and bfloat16 compute, under ``pmap`` and ``shard_map``, global batch
  ``--per-device-batch`` x devices. Model FLOPs per step come from XLA's cost analysis
  of the compiled step (``jit(...).lower(...).compile().cost_analysis()``; per device,
  times the device count); MFU divides the achieved FLOP/s by the devices' peak from
  ``mfu.PEAKS`` (source named per row; on a CPU host, which has no entry, by a measured
  matmul) and, beside it, by a measured large matmul per device.
- ``extract``: end to end (decode -> forward -> CAM -> boxes -> write) in images/s with
  ``efficientnet_lite0_gap`` (real weights) and ``resnet50_gap`` (random weights: speed
  does not depend on their values), against the PyTorch pipeline of
  bench/extract_throughput.py on the same device where torch has it (Lite0 only).
- ``boxes``: the pure-JAX component boxes (``backend="jax"``, what GPU/TPU use) in
  maps/s on 224x224 maps at 1 and 100 thresholds, against the host kernel.
- ``check``: maps and boxes of a fixed batch on the default device equal the CPU's
  within float tolerance, and both box backends give identical boxes.

Writes ``accelerator.md`` and ``accelerator.json`` under ``--out``. ``--smoke`` runs
every row on CPU with ``tiny_gap`` standing in for the networks, at 32 px, in seconds
(tests/test_bench_accelerator.py runs it). Timings are interleaved where two sides are
compared, and a load check (bench/fair.py) marks a run on a busy host.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fair  # noqa: E402
from mfu import compiled_flops, matmul_flops_per_s, peak_of  # noqa: E402

ROWS = ("train", "extract", "boxes", "check")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures; :func:`plan` builds the full and the smoke one."""

    train_models: tuple[tuple[str, str], ...]  # (row name, registry name)
    train_size: int
    per_device_batch: int
    steps: int
    extract_models: tuple[tuple[str, str], ...]
    extract_images: int
    extract_size: int  # only for random-weight stand-ins; real weights use their own
    extract_batch: int
    box_maps: int
    box_size: int
    rounds: int
    matmul_n: int
    smoke: bool


def plan(smoke: bool, steps: int, per_device_batch: int, images: int) -> Plan:
    if smoke:
        tiny = (("vgg16_gap", "tiny_gap"), ("resnet50_gap", "tiny_gap"))
        ext = (("efficientnet_lite0_gap", "tiny_gap"), ("resnet50_gap", "tiny_gap"))
        return Plan(tiny, 32, 1, 2, ext, 8, 32, 4, 4, 32, 1, 256, True)
    nets = (("vgg16_gap", "vgg16_gap"), ("resnet50_gap", "resnet50_gap"))
    ext = (("efficientnet_lite0_gap", "efficientnet_lite0_gap"), ("resnet50_gap", "resnet50_gap"))
    return Plan(nets, 224, per_device_batch, steps, ext, images, 224, 64, 256, 224, 3, 8192,
                False)  # fmt: skip


def train_rows(p: Plan) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import ml_collections

    from camjax import models
    from camjax.train import optimizer, state, step

    devices = jax.local_device_count()
    kind = jax.devices()[0].device_kind
    cfg = ml_collections.ConfigDict(dict(
        learning_rate=0.01, momentum=0.9, weight_decay=5e-4, head_lr_multiplier=1.0,
        schedule="constant", lr_decay_every=0, lr_decay_factor=0.1, warmup_steps=0))  # fmt: skip
    tx = optimizer.create_optimizer(cfg, 100)
    matmul = {d: matmul_flops_per_s(p.matmul_n, d) for d in ("float32", "bfloat16")}
    rows = []
    batch = p.per_device_batch * devices
    rs = np.random.RandomState(0)
    host_batch = {
        "image": rs.randn(batch, p.train_size, p.train_size, 3).astype(np.float32),
        "label": rs.randint(0, 1000, batch).astype(np.int32),
    }
    for row_name, name in p.train_models:
        for dtype in ("float32", "bfloat16"):
            model = models.create(name, 1000, dtype=getattr(jnp, dtype))
            variables = state.init_variables(model, jax.random.key(0), p.train_size)
            s0 = state.create_train_state(variables, tx)
            for parallel in ("pmap", "shard_map"):
                runner = step.create_runner(parallel, step.make_train_step(model, tx))
                b = runner.put_batch(host_batch)
                holder = [runner.put_state(s0)]
                key = jax.random.key(0)

                def run(runner=runner, b=b, holder=holder, key=key):
                    holder[0], m = runner.train_step(holder[0], b, key)
                    jax.block_until_ready(m["loss"])

                times = fair.interleave({"step": run}, p.steps, warmup=1 if p.smoke else 2)
                times = times["step"]
                # The runner's own program, lowered again (the persistent cache serves it).
                per_device = compiled_flops(runner._train, holder[0], b, key)
                flops = per_device * devices if per_device else None
                t = times.median_wall
                peak, source = peak_of(kind, dtype)
                if peak:
                    peak_total = peak * devices
                elif jax.default_backend() == "cpu":  # simulated devices share the cores
                    peak_total = matmul[dtype]
                    source = f"measured {p.matmul_n}x{p.matmul_n} {dtype} matmul (host)"
                else:
                    peak_total = None
                achieved = flops / t if flops else None
                rows.append({
                    "model": row_name, "network": name, "dtype": dtype, "parallel": parallel,
                    "devices": devices, "global_batch": batch, "size": p.train_size,
                    "step_ms": 1e3 * t, "cpu_ms": 1e3 * times.median_cpu,
                    "images_per_s": batch / t, "flops_per_step": flops,
                    "achieved_tflops": achieved / 1e12 if achieved else None,
                    "peak_tflops": peak / 1e12 if peak else None, "peak_source": source,
                    "mfu": achieved / peak_total if achieved and peak_total else None,
                    "matmul_tflops": matmul[dtype] / 1e12,
                    "of_matmul": achieved / (matmul[dtype] * devices) if achieved else None,
                })  # fmt: skip
    return rows


def _random_loaded(name: str, size: int):
    import jax

    from camjax import models
    from camjax.checkpoints import Loaded
    from camjax.train import state

    model = models.create(name, 1000)
    variables = state.init_variables(model, jax.random.key(0), size)
    return Loaded(model=model, variables=variables, class_names=[str(i) for i in range(1000)],
                  image_size=size, normalization="imagenet",
                  checkpoint_name=f"random {name}")  # fmt: skip


def _loaded(name: str, size: int):
    from camjax.pretrained import WEIGHTS

    if name in WEIGHTS:
        import extract_throughput

        return extract_throughput.load_camjax("native", name)
    return _random_loaded(name, size)


def _torch_device() -> tuple[str | None, str]:
    """The torch device on this JAX platform, or ``(None, why not)``."""
    import jax

    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    platform = jax.default_backend()
    if platform == "cpu":
        return "cpu", ""
    if platform == "gpu" and torch.cuda.is_available():
        return "cuda", ""
    return None, f"torch has no {platform} device here"


def extract_rows(p: Plan) -> list[dict]:
    import extract_throughput as et

    folder = tempfile.mkdtemp(prefix="bench-accel-jpegs-")
    sizes = [(96, 80), (64, 64), (80, 120)] if p.smoke else et.SIZES
    et.make_jpegs(folder, p.extract_images, sizes)
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    workers = min(8, fair.usable_cores())
    rows = []
    for row_name, name in p.extract_models:
        sides = {"camjax": et.camjax_pass(_loaded(name, p.extract_size), p.extract_batch, workers)}
        device, why = _torch_device()
        if name != "efficientnet_lite0_gap":
            why = "bench/extract_throughput.py has a PyTorch pipeline for Lite0 only"
        elif device:
            sides["PyTorch"] = et.torch_pass(p.extract_batch, True, workers, device)
        for run in sides.values():  # warm-up: compile, load, start workers
            run(files[: 2 * p.extract_batch], tempfile.mkdtemp(prefix="bench-warm-"))
        calls = {k: (lambda run=run: run(files, tempfile.mkdtemp(prefix="bench-x-")))
                 for k, run in sides.items()}  # fmt: skip
        times = fair.interleave(calls, p.rounds, warmup=0)
        for side, t in times.items():
            rows.append({"model": row_name, "network": name, "pipeline": side,
                         "images": len(files), "images_per_s": len(files) / t.median_wall,
                         "cpu_s_per_1000": 1e3 * t.median_cpu / len(files),
                         "vs_pytorch": fair.ratio(times, side, "PyTorch") if "PyTorch" in times
                         else None, "note": "" if "PyTorch" in times else why})  # fmt: skip
    return rows


def box_rows(p: Plan) -> tuple[list[dict], bool]:
    import boxes_throughput
    import jax

    from camjax import boxes

    maps = jax.device_put(boxes_throughput.blob_maps(p.box_maps, p.box_size))
    rows, equal = [], True
    for num_t in (1, 100):
        thresholds = np.arange(0, 1, 1.0 / num_t) if num_t > 1 else np.array([0.2])
        fns, outs = {}, {}
        for backend in ("jax", "host"):
            fn = jax.jit(lambda m, b=backend, th=thresholds: boxes.component_boxes(
                m, th, max_components=16, backend=b))  # fmt: skip
            outs[backend] = [np.asarray(x) for x in fn(maps)]
            fns[backend] = lambda fn=fn: jax.block_until_ready(fn(maps))
        equal &= all(np.array_equal(a, b) for a, b in zip(outs["jax"], outs["host"], strict=True))
        times = fair.interleave(fns, p.rounds, warmup=1)
        for backend, t in times.items():
            rows.append({"thresholds": num_t, "backend": backend, "maps": p.box_maps,
                         "size": p.box_size, "maps_per_s": p.box_maps / t.median_wall,
                         "cpu_ms": 1e3 * t.median_cpu,
                         "vs_host": fair.ratio(times, backend, "host")})  # fmt: skip
    return rows, equal


def check_row(p: Plan, boxes_equal: bool | None) -> dict:
    """Maps and boxes of one fixed batch: default device vs CPU."""
    import jax

    import camjax

    name = "tiny_gap" if p.smoke else "efficientnet_lite0_gap"
    loaded = _loaded(name, p.extract_size)
    rs = np.random.RandomState(1)
    size = loaded.image_size
    x = rs.randn(8, size, size, 3).astype(np.float32)
    cpu = jax.devices("cpu")[0]
    on_cpu = jax.device_put((loaded.variables, x), cpu)
    ref = camjax.extract(loaded.model, *on_cpu, top_k=3)
    ids = np.asarray(ref["class_ids"])
    here = jax.device_put((loaded.variables, x), jax.devices()[0])
    out = camjax.extract(loaded.model, *here, class_ids=ids)
    got = camjax.extract(loaded.model, *on_cpu, class_ids=ids)
    map_diff = float(np.max(np.abs(np.asarray(out["maps"]) - np.asarray(got["maps"]))))
    box_diff = int(np.max(np.abs(np.asarray(out["boxes"]) - np.asarray(got["boxes"]))))
    ok = map_diff <= 2e-2 and box_diff <= 2 and boxes_equal is not False
    return {"network": name, "device": str(jax.devices()[0].device_kind), "images": 8,
            "max_map_diff": map_diff, "max_box_diff_px": box_diff,
            "box_backends_equal": boxes_equal, "equal_within_tolerance": bool(ok),
            "tolerance": "maps 2e-2 (maps in [0, 1]), boxes 2 px"}  # fmt: skip


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def markdown(result: Mapping) -> str:
    env = result["environment"]
    out = [f"# camjax accelerator table{' (smoke)' if result['smoke'] else ''}", "",
           f"{env['device_count']} x {env['device_kind']} ({env['platform']}), jax "
           f"{env['jax']}, host {env['host_cores']} cores", ""]  # fmt: skip
    if result.get("train"):
        out += ["| model | dtype | runner | batch | step ms | img/s | TFLOP/step | TFLOP/s |"
                " MFU | of matmul | peak source |", "|---|---|---|---:|---:|---:|---:|---:|---:|"
                "---:|---|"]  # fmt: skip
        for r in result["train"]:
            out.append(
                f"| {r['model']} | {r['dtype']} | {r['parallel']} | {r['global_batch']} | "
                f"{r['step_ms']:.1f} | {r['images_per_s']:.1f} | "
                f"{_fmt(r['flops_per_step'] and r['flops_per_step'] / 1e12, '.3f')} | "
                f"{_fmt(r['achieved_tflops'], '.2f')} | {_fmt(r['mfu'], '.1%')} | "
                f"{_fmt(r['of_matmul'], '.1%')} | {r['peak_source']} |"
            )
        out.append("")
    if result.get("extract"):
        out += ["| model | pipeline | images | img/s | CPU s / 1,000 img | vs PyTorch | note |",
                "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in result["extract"]:
            out.append(f"| {r['model']} | {r['pipeline']} | {r['images']} | "
                       f"{r['images_per_s']:.1f} | {r['cpu_s_per_1000']:.1f} | "
                       f"{_fmt(r['vs_pytorch'], '.2f')} | {r['note']} |")  # fmt: skip
        out.append("")
    if result.get("boxes"):
        out += [
            "| thresholds | backend | maps | maps/s | CPU ms | vs host |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for r in result["boxes"]:
            out.append(
                f"| {r['thresholds']} | {r['backend']} | {r['maps']} | "
                f"{r['maps_per_s']:.1f} | {r['cpu_ms']:.1f} | {r['vs_host']:.2f}x |"
            )
        out.append("")
    if result.get("check"):
        c = result["check"]
        word = "EQUAL" if c["equal_within_tolerance"] else "DIFFERENT"
        out += [
            f"correctness: {word} ({c['network']}, {c['images']} images, {c['device']} vs "
            f"CPU): max map difference {c['max_map_diff']:.2e}, max box difference "
            f"{c['max_box_diff_px']} px, box backends equal: {c['box_backends_equal']}",
            "",
        ]
    out.append(fair.verdict_line(result["load_check"]))
    return "\n".join(out) + "\n"


def run(p: Plan, rows: Sequence[str]) -> dict:
    import jax

    check = fair.LoadCheck(save=not p.smoke).start()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"smoke": p.smoke, "environment": {
        "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.local_device_count(), "jax": jax.__version__,
        "host_cores": fair.usable_cores()}}  # fmt: skip
    if "train" in rows:
        result["train"] = train_rows(p)
    if "extract" in rows:
        result["extract"] = extract_rows(p)
    equal = None
    if "boxes" in rows:
        result["boxes"], equal = box_rows(p)
    if "check" in rows:
        result["check"] = check_row(p, equal)
    result["seconds"] = time.perf_counter() - t0
    result["load_check"] = check.finish()
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every row tiny, on CPU, in seconds")
    ap.add_argument("--out", default="bench-results", help="folder for the .md and .json")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per row")
    ap.add_argument("--per-device-batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=512, help="JPEGs for the extraction rows")
    a = ap.parse_args(argv)
    rows = [r for r in a.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    import jax

    # The FLOP count lowers each step's program again; the persistent cache serves that
    # compile (and, in the smoke run, the stand-in networks' identical programs).
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(a.out, "jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    result = run(plan(a.smoke, a.steps, a.per_device_batch, a.images), rows)
    os.makedirs(a.out, exist_ok=True)
    text = markdown(result)
    with open(os.path.join(a.out, "accelerator.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "accelerator.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(text)
    return result


if __name__ == "__main__":
    main()
