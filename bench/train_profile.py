"""Where a CPU training step's time goes, camjax (XLA:CPU) against PyTorch, op by op.

    python bench/train_profile.py [--cases tiny_gap,vgg16_gap] [--rounds 5]

For each case of bench/train_throughput.py (same networks, batch and size), on one
process with one JAX CPU device and PyTorch with one thread per core, timed in
interleaved rounds (bench/fair.py), median ms per call:

- the whole step, the forward pass (train mode, no gradient), forward + backward
  (gradients, no update) and the optimizer update alone (SGD momentum + weight decay);
- every convolution of the network on its own shape: forward, and forward + backward
  (the input and weight gradients of a fixed cotangent);
- every BatchNorm (train mode) on its shape: forward + backward.

The ``PyTorch / camjax`` column is a speed ratio (> 1: camjax is faster). Run it where
torch is installed (Python 3.11 here).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fair  # noqa: E402
import train_throughput as tt  # noqa: E402


def _jax_parts(name: str):
    """camjax's forward, gradient and update programs of ``name`` (1 device, jitted)."""
    import jax
    import jax.numpy as jnp
    import ml_collections
    import optax

    from camjax import models
    from camjax.train import optimizer, state, step

    model_name, kw, size, batch = tt.CASES[name]
    model = models.create(model_name, tt.NUM_CLASSES, **kw)
    cfg = ml_collections.ConfigDict(dict(
        learning_rate=0.01, momentum=0.9, weight_decay=5e-4, head_lr_multiplier=1.0,
        schedule="constant", lr_decay_every=0, lr_decay_factor=0.1, warmup_steps=0))  # fmt: skip
    tx = optimizer.create_optimizer(cfg, 100)
    s0 = state.create_train_state(state.init_variables(model, jax.random.key(0), size), tx)
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(batch, size, size, 3).astype(np.float32))
    y = jnp.asarray(rs.randint(0, tt.NUM_CLASSES, batch).astype(np.int32))
    bs = s0.batch_stats

    def forward(params, x):
        v = {"params": params, **({"batch_stats": bs} if bs else {})}
        out, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
        return out[0]

    def loss(params, x, y):
        return step.cross_entropy(forward(params, x), y)

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss))
    g = grad(s0.params, x, y)

    @jax.jit
    def update(g, opt_state, params):
        u, o = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), o

    return {
        "forward": lambda: jax.block_until_ready(fwd(s0.params, x)),
        "forward + backward": lambda: jax.block_until_ready(grad(s0.params, x, y)),
        "optimizer update": lambda: jax.block_until_ready(update(g, s0.opt_state, s0.params)),
        "whole step": tt.camjax_step(name),
    }


def _torch_parts(name: str):
    import torch

    torch.manual_seed(0)
    _, _, size, batch = tt.CASES[name]
    net = tt.torch_model(name)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, tt.NUM_CLASSES, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def forward():
        with torch.no_grad():
            net(x)

    def backward():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()

    backward()
    return (
        net,
        x,
        {
            "forward": forward,
            "forward + backward": backward,
            "optimizer update": opt.step,
            "whole step": tt.torch_step(name),
        },
    )


def _layer_shapes(net, x):
    """``(kind, input NCHW shape, module)`` of every Conv2d and BatchNorm2d, in order."""
    import torch

    found = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: found.append((type(m).__name__, i[0].shape, m)))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return found


def _conv_pair(shape, conv):
    """Forward and forward + backward of one convolution, camjax and PyTorch."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    b, c, h, w = shape
    rs = np.random.RandomState(1)
    xt = torch.from_numpy(rs.randn(b, c, h, w).astype(np.float32)).requires_grad_()
    wt = conv.weight.detach().clone().requires_grad_()
    pad = conv.padding
    yt = F.conv2d(xt, wt, padding=pad)
    gt = torch.from_numpy(rs.randn(*yt.shape).astype(np.float32))
    xj = jnp.asarray(xt.detach().numpy().transpose(0, 2, 3, 1))
    wj = jnp.asarray(wt.detach().numpy().transpose(2, 3, 1, 0))
    gj = jnp.asarray(gt.numpy().transpose(0, 2, 3, 1))

    def conv_j(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), [(pad[0], pad[0]), (pad[1], pad[1])],
            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip

    fj = jax.jit(conv_j)
    bj = jax.jit(lambda x, k, g: jax.vjp(conv_j, x, k)[1](g))

    def fwd_t():
        with torch.no_grad():
            F.conv2d(xt, wt, padding=pad)

    def bwd_t():
        xt.grad = wt.grad = None
        F.conv2d(xt, wt, padding=pad).backward(gt)

    return (
        (lambda: jax.block_until_ready(fj(xj, wj)), fwd_t),
        (lambda: jax.block_until_ready(bj(xj, wj, gj)), bwd_t),
    )


def _bn_pair(shape):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import torch

    b, c, h, w = shape
    rs = np.random.RandomState(2)
    xt = torch.from_numpy(rs.randn(b, c, h, w).astype(np.float32)).requires_grad_()
    bn_t = torch.nn.BatchNorm2d(c).train()
    gt = torch.from_numpy(rs.randn(b, c, h, w).astype(np.float32))
    xj = jnp.asarray(xt.detach().numpy().transpose(0, 2, 3, 1))
    gj = jnp.asarray(gt.numpy().transpose(0, 2, 3, 1))
    bn = nn.BatchNorm(use_running_average=False, momentum=0.9)
    v = bn.init(jax.random.key(0), xj)

    def f(params, x):
        y, _ = bn.apply({"params": params, "batch_stats": v["batch_stats"]}, x,
                        mutable=["batch_stats"])  # fmt: skip
        return y

    bj = jax.jit(lambda p, x, g: jax.vjp(f, p, x)[1](g))

    def bwd_t():
        xt.grad = None
        bn_t(xt).backward(gt)

    return lambda: jax.block_until_ready(bj(v["params"], xj, gj)), bwd_t


def profile(name: str, rounds: int) -> list[tuple[str, str, float, float]]:
    rows = []
    jax_parts = _jax_parts(name)
    net, x, torch_parts = _torch_parts(name)
    for op in jax_parts:
        t = fair.interleave({"camjax": jax_parts[op], "torch": torch_parts[op]}, rounds,
                            warmup=2, pause=0.1)  # fmt: skip
        rows.append((op, "", t["camjax"].median_wall, t["torch"].median_wall))
    for kind, shape, module in _layer_shapes(net, x):
        desc = f"{tuple(shape)}"
        if kind == "Conv2d":
            desc += f" -> {module.out_channels}"
            for label, (fj, ft) in zip(("conv forward", "conv fwd + bwd"),
                                       _conv_pair(shape, module), strict=True):  # fmt: skip
                t = fair.interleave({"camjax": fj, "torch": ft}, rounds, warmup=2, pause=0.1)
                rows.append((label, desc, t["camjax"].median_wall, t["torch"].median_wall))
        else:
            fj, ft = _bn_pair(shape)
            t = fair.interleave({"camjax": fj, "torch": ft}, rounds, warmup=2, pause=0.1)
            rows.append(("BatchNorm fwd + bwd", desc, t["camjax"].median_wall,
                         t["torch"].median_wall))  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="tiny_gap,vgg16_gap")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(fair.usable_cores())
    check = fair.LoadCheck().start()
    for name in args.cases.split(","):
        _, _, size, batch = tt.CASES[name]
        print(f"\n{name}, batch {batch} x {size}, {args.rounds} interleaved rounds (median ms)")
        print("| op | input (NCHW) | camjax ms | PyTorch ms | PyTorch / camjax |")
        print("|---|---|---:|---:|---:|")
        totals: dict[str, list[float]] = {}
        for op, desc, tj, tt_ in profile(name, args.rounds):
            print(f"| {op} | {desc} | {1e3 * tj:.1f} | {1e3 * tt_:.1f} | {tt_ / tj:.2f}x |",
                  flush=True)  # fmt: skip
            if desc:
                acc = totals.setdefault(op, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + tj, acc[1] + tt_
        for op, (tj, tt_) in totals.items():
            print(f"| all {op} | | {1e3 * tj:.1f} | {1e3 * tt_:.1f} | {tt_ / tj:.2f}x |")
    print(fair.verdict_line(check.finish()))


if __name__ == "__main__":
    main()
