"""Per-call overhead of a plain ``camjax.extract`` / ``compute_maps`` call vs the jitted forward.

    python bench/extract_overhead.py                       # resnet50_gap, 224, batch 4
    python bench/extract_overhead.py --model tiny_gap --size 64 --rounds 9

Every variant is compiled and run once first; then ``--rounds`` interleaved rounds each
time every variant once (so machine load drifts hit them alike), and the table gives the
median wall time per call (``block_until_ready`` included) and its ratio to the jitted
forward ``jax.jit(model.apply)``, and the median time until the call *returns* (JAX
dispatches asynchronously: this is the call's fixed host cost, tracing and checks, which
machine load on the compute does not blur). A plain call that re-traced the model each
time (as ``camjax.extract`` did before its compile cache) shows up there.

Variants: the jitted forward; ``extract`` (Grad-CAM, top-1, boxes) called plainly;
``extract`` inside the caller's own ``jax.jit``; ``compute_maps`` (Grad-CAM, top-1 ids)
called plainly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    """``(seconds until the call returns, seconds until its result is ready)``. JAX
    dispatches asynchronously, so the first is the call's fixed host cost (tracing,
    argument checks), free of the compute time that a loaded machine makes noisy."""
    t0 = time.perf_counter()
    out = fn()
    t1 = time.perf_counter()
    jax.block_until_ready(out)
    return t1 - t0, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet50_gap")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--method", default="gradcam")
    args = p.parse_args()
    check = fair.LoadCheck().start()

    import camjax
    from camjax import models
    from camjax.methods import compute_maps

    model = models.create(args.model, num_classes=args.classes)
    images = jax.random.normal(jax.random.key(0), (args.batch, args.size, args.size, 3))
    variables = jax.jit(lambda x: model.init(jax.random.key(1), x))(images[:1])
    ids = jnp.zeros((args.batch, 1), jnp.int32)

    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    outer = jax.jit(lambda v, x: camjax.extract(model, v, x, 1, method=args.method))
    variants: dict[str, Callable[[], object]] = {
        "jitted forward": lambda: forward(variables, images),
        f"extract ({args.method}, top-1, boxes), plain call": lambda: camjax.extract(
            model, variables, images, 1, method=args.method
        ),
        "extract inside the caller's jax.jit": lambda: outer(variables, images),
        f"compute_maps ({args.method}), plain call": lambda: compute_maps(
            args.method, model, variables, images, ids
        ),
    }
    for fn in variants.values():  # compile
        _time(fn)
        _time(fn)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(_time(fn))
    base = statistics.median(t for _, t in times["jitted forward"])
    print(
        f"{args.model} at {args.size}, batch {args.batch}, median of {args.rounds} "
        f"interleaved rounds, {jax.devices()[0].platform}, jax {jax.__version__}"
    )
    print(f"| {'variant':<48} | {'call returns, ms':>16} | {'ready, ms':>9} | {'x forward':>9} |")
    print(f"|{'-' * 50}|{'-' * 18}|{'-' * 11}|{'-' * 11}|")
    for name, ts in times.items():
        ret = statistics.median(r for r, _ in ts)
        med = statistics.median(t for _, t in ts)
        print(f"| {name:<48} | {ret * 1e3:16.1f} | {med * 1e3:9.1f} | {med / base:9.2f} |")

    print(fair.verdict_line(check.finish()))


if __name__ == "__main__":
    main()
