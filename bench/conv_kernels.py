"""Per-layer 3x3 convolution times: XLA:CPU, camjax's native kernels and PyTorch.

    python bench/conv_kernels.py [--model tiny_gap|vgg16_gap|both] [--steps 5]

For each stride-1 layer of the network (batch 64 at 64 px for ``tiny_gap``, batch 8 at
224 px for ``vgg16_gap``): forward, input gradient and weight gradient in milliseconds
(median after warm-up), through ``camjax.models.convolution`` with the native kernels
off (XLA) and on, and through PyTorch 2.13 (``conv2d``, ``grad.conv2d_input``,
``grad.conv2d_weight``, NCHW). The ``used`` column marks which path
``convolution.plan`` picks for each of the three (N = native, X = XLA).
"""

from __future__ import annotations

import argparse

import numpy as np
from train_throughput import _median_time  # bench/ is on sys.path when its scripts run

LAYERS = {  # model: (batch, [(size, in channels, out channels)])
    "tiny_gap": (64, [(64, 3, 16), (64, 16, 16), (32, 16, 32), (32, 32, 32), (16, 32, 64),
                      (16, 64, 64), (16, 64, 128)]),
    "vgg16_gap": (8, [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
                      (56, 128, 256), (56, 256, 256), (28, 256, 512), (28, 512, 512),
                      (14, 512, 512), (14, 512, 1024)]),
}  # fmt: skip
PAD = ((1, 1), (1, 1))


def _median_ms(fn, steps: int) -> float:
    return 1e3 * _median_time(fn, steps)


def camjax_times(x, k, g, native: bool, steps: int) -> list[float]:
    import jax

    from camjax.models import convolution as cv

    fwd = jax.jit(lambda a, b: cv._forward(a, b, PAD, native))
    dx = jax.jit(lambda a, b, c: cv._input_grad(a, b, c, PAD, native))
    dw = jax.jit(lambda a, b, c: cv._weight_grad(a, b, c, PAD, native))
    return [
        _median_ms(lambda: fwd(x, k).block_until_ready(), steps),
        _median_ms(lambda: dx(x, k, g).block_until_ready(), steps),
        _median_ms(lambda: dw(x, k, g).block_until_ready(), steps),
    ]


def torch_times(x, k, g, steps: int) -> list[float]:
    import torch

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    kt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    nn = torch.nn
    return [
        _median_ms(lambda: nn.functional.conv2d(xt, kt, padding=1), steps),
        _median_ms(lambda: nn.grad.conv2d_input(xt.shape, kt, gt, padding=1), steps),
        _median_ms(lambda: nn.grad.conv2d_weight(xt, kt.shape, gt, padding=1), steps),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["tiny_gap", "vgg16_gap", "both"], default="both")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    import jax.numpy as jnp
    import torch

    import camjax  # noqa: F401  (sets the XLA:CPU flag before JAX starts)
    from camjax import native
    from camjax.models import convolution

    torch.set_num_threads(2)
    assert native.kernels() is not None, "native kernels unavailable on this machine"
    models = ["tiny_gap", "vgg16_gap"] if args.model == "both" else [args.model]
    for model in models:
        batch, layers = LAYERS[model]
        print(f"\n{model}, batch {batch}: ms per call (fwd / input grad / weight grad)")
        print("| layer | used | XLA | native | PyTorch |")
        print("|---|---|---|---|---|")
        totals = np.zeros((3, 3))
        for size, c, o in layers:
            rs = np.random.RandomState(0)
            x = rs.randn(batch, size, size, c).astype(np.float32)
            k = (rs.randn(3, 3, c, o) * 0.1).astype(np.float32)
            g = rs.randn(batch, size, size, o).astype(np.float32)
            xj, kj, gj = map(jnp.asarray, (x, k, g))
            rows = np.array([
                camjax_times(xj, kj, gj, False, args.steps),
                camjax_times(xj, kj, gj, True, args.steps),
                torch_times(x, k, g, args.steps),
            ])  # fmt: skip
            totals += rows
            used = "".join("N" if u else "X" for u in convolution.plan(c, o, jnp.float32))
            cells = [" / ".join(f"{v:.1f}" for v in row) for row in rows]
            print(f"| {size}x{size}, {c}->{o} | {used} | " + " | ".join(cells) + " |")
        cells = [" / ".join(f"{v:.1f}" for v in row) for row in totals]
        print("| total | | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
