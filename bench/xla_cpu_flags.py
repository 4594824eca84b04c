"""Does an XLA:CPU flag earn its place? camjax 0.1.0 set one for the whole process at import
(``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: convolutions off
YNNPACK). This script measures, in child processes started alternately with and without
the flag (XLA reads its flags once per process), a ``tiny_gap`` training step (64 x 64,
batch 64) and the jitted EfficientNet-Lite0 forward (224, batch 8, depthwise convolutions),
and prints the median of the per-round ratios.

    python bench/xla_cpu_flags.py [--rounds 3] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {here!r})
import jax, jax.numpy as jnp
import train_throughput as t
from camjax import models

def median(fn, steps):
    fn(); fn()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return float(np.median(ts))

step = t.camjax_step_time("tiny_gap", {steps})
model = models.create("efficientnet_lite0_gap", 1000)
x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 224, 224, 3)), jnp.float32)
v = jax.jit(model.init)(jax.random.key(0), x[:1])
fwd = jax.jit(lambda v, x: model.apply(v, x)[0])
lite = median(lambda: fwd(v, x).block_until_ready(), {steps}) / 8
print("RESULT", json.dumps({{"tiny_gap_step_ms": 1e3 * step, "lite0_ms_per_image": 1e3 * lite}}))
"""


def run(flag: bool, steps: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(x for x in (env.get("XLA_FLAGS", ""), FLAG if flag else "") if x)
    here = os.path.dirname(os.path.abspath(__file__))
    code = CHILD.format(here=here, steps=steps)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.split("RESULT", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    check = fair.LoadCheck().start()
    rows = []
    for _ in range(args.rounds):
        rows.append((run(False, args.steps), run(True, args.steps)))
    print("| measure | XLA default | with the flag | flag / default (median of rounds) |")
    print("|---|---|---|---|")
    for key in ("tiny_gap_step_ms", "lite0_ms_per_image"):
        base = np.median([a[key] for a, _ in rows])
        flagged = np.median([b[key] for _, b in rows])
        ratio = np.median([b[key] / a[key] for a, b in rows])
        print(f"| {key} | {base:.1f} | {flagged:.1f} | {ratio:.2f}x |")

    print(fair.verdict_line(check.finish()))


if __name__ == "__main__":
    main()
