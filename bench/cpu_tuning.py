"""What camjax.cpu's shifted depthwise convolution buys on this CPU, layer by layer.

    python bench/cpu_tuning.py              # batch 32, every depthwise shape of Lite0
    python bench/cpu_tuning.py --batch 8

For each depthwise convolution shape of EfficientNet-Lite0 at 224 (input side, channels,
kernel, stride), the forward and the forward+backward (gradient with respect to input and
kernel) time of XLA's grouped convolution (``nn.Conv``'s, "native") against
``camjax.cpu.depthwise_by_shifts`` ("shifted"), each jitted, best of 5; then the whole
network's jitted forward and training-style gradient both ways. The switch is only worth
having if every row's ratio is above 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from camjax import cpu, models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402

# (input side, channels, kernel, stride) of Lite0's depthwise convolutions at 224.
SHAPES = [
    (112, 32, 3, 1),
    (112, 96, 3, 2),
    (56, 144, 3, 1),
    (56, 144, 5, 2),
    (28, 240, 5, 1),
    (28, 240, 3, 2),
    (14, 480, 3, 1),
    (14, 480, 5, 1),
    (14, 672, 5, 1),
    (14, 672, 5, 2),
    (7, 1152, 5, 1),
    (7, 1152, 3, 1),
]


def _best(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _layer(batch: int, side: int, c: int, k: int, s: int) -> tuple[float, ...]:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, side, side, c), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 1, c), np.float32))
    pads = cpu._pairs("SAME", (k, k), (s, s), (side, side))

    def native(x, w):
        return lax.conv_general_dilated(
            x, w, (s, s), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
        )

    def shifted(x, w):
        return cpu.depthwise_by_shifts(x, w, (s, s), pads)

    out = []
    for f in (native, shifted):
        out.append(_best(jax.jit(f), x, w))
    for f in (native, shifted):
        grad = jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
        out.append(_best(grad, x, w))
    return tuple(out)


def _network(batch: int) -> tuple[float, ...]:
    model = models.create("efficientnet_lite0_gap", num_classes=1000)
    shifted = cpu.shifted_depthwise(model)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((batch, 224, 224, 3), np.float32))
    v = jax.jit(model.init)(jax.random.key(0), x[:1])
    out = []
    for m in (model, shifted):
        out.append(_best(jax.jit(lambda v, x, m=m: m.apply(v, x)[0]), v, x, repeats=3))
    for m in (model, shifted):

        def loss(p, m=m):
            logits, _ = m.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[0]
            return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

        out.append(_best(jax.jit(jax.grad(loss)), v["params"], repeats=3))
    return tuple(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--network-batch", type=int, default=16)
    a = p.parse_args()
    check = fair.LoadCheck().start()
    print(f"batch {a.batch}; times in ms, best of 5; ratio = native / shifted (> 1: faster)")
    head = "| side x channels, k/s | forward native | shifted | ratio | fwd+bwd native"
    print(head + " | shifted | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    tot = np.zeros(4)
    for side, c, k, s in SHAPES:
        t = np.array(_layer(a.batch, side, c, k, s)) * 1e3
        tot += t
        print(f"| {side}x{side}x{c}, {k}x{k}/{s} | {t[0]:.1f} | {t[1]:.1f} | {t[0] / t[1]:.1f}x "
              f"| {t[2]:.1f} | {t[3]:.1f} | {t[2] / t[3]:.1f}x |")  # fmt: skip
    print(f"| all twelve | {tot[0]:.1f} | {tot[1]:.1f} | {tot[0] / tot[1]:.1f}x "
          f"| {tot[2]:.1f} | {tot[3]:.1f} | {tot[2] / tot[3]:.1f}x |")  # fmt: skip
    n = np.array(_network(a.network_batch)) * 1e3 / a.network_batch
    print(f"\nEfficientNet-Lite0, batch {a.network_batch} at 224, ms per image:")
    print("| program | native | shifted | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| forward (eval) | {n[0]:.1f} | {n[1]:.1f} | {n[0] / n[1]:.1f}x |")
    print(f"| gradient (train mode) | {n[2]:.1f} | {n[3]:.1f} | {n[2] / n[3]:.1f}x |")

    print(fair.verdict_line(check.finish()))


if __name__ == "__main__":
    main()
