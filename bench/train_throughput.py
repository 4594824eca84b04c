"""Training-step throughput: camjax (JAX/Flax) vs the same network in PyTorch, with camjax
on 1, 2 and 4 simulated CPU devices and with its opt-in CPU kernel gradients.

    python bench/train_throughput.py [--rounds 4] [--steps 3] [--cases tiny_gap,vgg16_gap]

One step = forward, softmax cross-entropy, backward, SGD momentum 0.9 + weight decay 5e-4,
on a fixed random batch (no input pipeline). Every side is a process of its own: PyTorch
with one thread per core, camjax with 1, 2 and 4 simulated CPU devices (``config.cpu.
devices``, the default config's CPU tuning, splits each batch over devices; XLA_FLAGS
must be set before JAX starts), and with ``camjax.cpu.shifted_weight_grad`` (``--devices``
entries ending in ``w``). After warm-up the sides run in interleaved rounds (bench/
fair.py), a few steps each per round while the others wait idle, so that load from other
jobs falls on all alike; images/s = batch / median step time; the ratio column is the
median of the per-round ratios; CPU time per step beside; a load check marks a run on a
busy machine as contaminated.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402

CASES = {  # case: (registry name, model kwargs, image size, batch)
    "tiny_gap": ("tiny_gap", {}, 64, 64),  # the default: 2 convs per stage with BatchNorm
    "tiny_gap_plain": ("tiny_gap", {"convs_per_stage": 1, "batch_norm": False}, 64, 64),
    "vgg16_gap": ("vgg16_gap", {}, 224, 8),
}
NUM_CLASSES = 10


def camjax_step(name: str, parallel: str = "pmap", weight_grad: bool = False):
    """A function running one camjax training step of ``name`` (blocking); with
    ``weight_grad``, the model through ``camjax.cpu.shifted_weight_grad``."""
    import jax
    import ml_collections

    from camjax import models
    from camjax.train import optimizer, state, step

    model_name, kw, size, batch = CASES[name]
    cfg = ml_collections.ConfigDict(dict(
        learning_rate=0.01, momentum=0.9, weight_decay=5e-4, head_lr_multiplier=1.0,
        schedule="constant", lr_decay_every=0, lr_decay_factor=0.1, warmup_steps=0))  # fmt: skip
    model = models.create(model_name, NUM_CLASSES, **kw)
    if weight_grad:
        from camjax import cpu

        model = cpu.shifted_weight_grad(model)
    tx = optimizer.create_optimizer(cfg, 100)
    s0 = state.create_train_state(state.init_variables(model, jax.random.key(0), size), tx)
    runner = step.create_runner(parallel, step.make_train_step(model, tx))
    rs = np.random.RandomState(0)
    b = runner.put_batch({
        "image": rs.randn(batch, size, size, 3).astype(np.float32),
        "label": rs.randint(0, NUM_CLASSES, batch).astype(np.int32),
    })  # fmt: skip
    holder = [runner.put_state(s0)]
    key = jax.random.key(0)

    def run():
        holder[0], m = runner.train_step(holder[0], b, key)
        jax.block_until_ready(m["loss"])

    return run


def camjax_step_time(name: str, steps: int, parallel: str = "pmap") -> float:
    """Median wall seconds of ``steps`` camjax steps after two warm-up steps."""
    run = camjax_step(name, parallel)
    run()
    run()
    return fair.interleave({"step": run}, steps, warmup=0)["step"].median_wall


def torch_model(name: str):
    import torch.nn as tnn

    def convs(cfg, in_ch=3, bn=False):
        layers = []
        for v in cfg:
            if v == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers.append(tnn.Conv2d(in_ch, v, 3, padding=1, bias=not bn))
                layers += [tnn.BatchNorm2d(v)] if bn else []
                layers.append(tnn.ReLU(inplace=True))
                in_ch = v
        return layers, in_ch

    if name == "tiny_gap":
        body, ch = convs([16, 16, "M", 32, 32, "M", 64, 64], bn=True)
        head_w = 128
    elif name == "tiny_gap_plain":
        body, ch = convs([16, "M", 32, "M", 64])
        head_w = 128
    else:  # VGG16 to conv5_3, no pool5, as camjax's vgg16_gap
        body, ch = convs([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                          512, 512, 512])  # fmt: skip
        head_w = 1024
    return tnn.Sequential(
        *body, tnn.Conv2d(ch, head_w, 3, padding=1), tnn.ReLU(inplace=True),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(head_w, NUM_CLASSES),
    )  # fmt: skip


def torch_step(name: str):
    """A function running one PyTorch training step of ``name``."""
    import torch

    torch.manual_seed(0)
    _, _, size, batch = CASES[name]
    net = torch_model(name)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, NUM_CLASSES, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    return run


def _worker(kind: str, name: str, steps: int) -> None:
    """A worker process (bench/fair.py): warm up, then serve ``steps`` timed steps a call."""
    wg = kind == "camjax_wgrad"
    run = torch_step(name) if kind == "torch" else camjax_step(name, weight_grad=wg)
    run()
    run()

    def several():
        walls, cpus = zip(*(fair.measure(run) for _ in range(steps)), strict=True)
        return {"step_wall": float(np.median(walls)), "step_cpu": float(np.median(cpus))}

    fair.serve(several)


def _start(kind: str, name: str, devices: int, steps: int, threads: int) -> fair.Worker:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    if kind == "torch":
        env["CAMJAX_BENCH_TORCH_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--child", kind, "--case", name, "--steps", str(steps)]
    label = f"PyTorch, {threads} threads" if kind == "torch" else f"camjax, {devices} device(s)"
    label += ", cpu.shifted_weight_grad" if kind == "camjax_wgrad" else ""
    return fair.Worker(label, cmd, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    ap.add_argument("--cases", default="tiny_gap,tiny_gap_plain,vgg16_gap")
    ap.add_argument("--devices", default="1,2,4,1w,2w",
                    help="camjax sides: CPU devices (w: cpu.shifted_weight_grad)")  # fmt: skip
    ap.add_argument("--child", choices=("camjax", "camjax_wgrad", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "torch":
            import torch

            torch.set_num_threads(int(os.environ["CAMJAX_BENCH_TORCH_THREADS"]))
        _worker(args.child, args.case, args.steps)
        return
    cores = fair.usable_cores()
    print(f"{cores} cores; every side a process of its own, {args.rounds} interleaved rounds "
          f"of {args.steps} steps each (median step)")  # fmt: skip
    print("\n| model | batch x size | side | img/s | CPU s per step | vs PyTorch (wall) |")
    print("|---|---|---|---:|---:|---:|")
    verdicts = []
    for name in args.cases.split(","):
        _, _, size, batch = CASES[name]
        workers = {}
        try:
            workers["torch"] = _start("torch", name, 1, args.steps, cores)
            for d in args.devices.split(","):
                kind = "camjax_wgrad" if d.endswith("w") else "camjax"
                workers[d] = _start(kind, name, int(d.rstrip("w")), args.steps, cores)
            check = fair.LoadCheck().start()
            fair.interleave(workers, args.rounds, warmup=0, pause=0.3)
            verdicts.append((name, check.finish()))
        finally:
            for w in workers.values():
                w.close()
        steps = {
            k: fair.Times([r["step_wall"] for r in w.results], [r["step_cpu"] for r in w.results])
            for k, w in workers.items()
        }
        for k, w in workers.items():
            t = steps[k]
            vs = fair.ratio(steps, k, "torch")
            print(f"| {name} | {batch} x {size} | {w.name} | {batch / t.median_wall:.2f} | "
                  f"{t.median_cpu:.2f} | {vs:.2f}x |", flush=True)  # fmt: skip
    for name, v in verdicts:
        print(f"{name}: {fair.verdict_line(v)}")


if __name__ == "__main__":
    main()
