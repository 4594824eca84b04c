"""Training-step throughput: camjax (JAX/Flax) vs the same network in PyTorch, and the
data-parallel path's overhead on 1 vs 8 simulated CPU devices.

    python bench/train_throughput.py [--steps 5] [--skip-vgg]

One step = forward, softmax cross-entropy, backward, SGD momentum 0.9 + weight decay 5e-4,
on a fixed random batch (no input pipeline). Both frameworks run in this process on
the same CPU, one step of each in turn, so that load from other jobs falls on both
alike; images/s = batch / median step time after warm-up. The ratio column is the
median of the per-round ratios.
The device-count table runs child processes (XLA_FLAGS must be set before JAX starts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CASES = {  # case: (registry name, model kwargs, image size, batch)
    "tiny_gap": ("tiny_gap", {}, 64, 64),  # the default: 2 convs per stage with BatchNorm
    "tiny_gap_plain": ("tiny_gap", {"convs_per_stage": 1, "batch_norm": False}, 64, 64),
    "vgg16_gap": ("vgg16_gap", {}, 224, 8),
}
NUM_CLASSES = 10


def _median_time(fn, steps: int) -> float:
    fn()  # warm-up / compile
    fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def camjax_step(name: str, parallel: str = "pmap"):
    """A function running one camjax training step of ``name`` (blocking)."""
    import jax
    import ml_collections

    from camjax import models
    from camjax.train import optimizer, state, step

    model_name, kw, size, batch = CASES[name]
    cfg = ml_collections.ConfigDict(dict(
        learning_rate=0.01, momentum=0.9, weight_decay=5e-4, head_lr_multiplier=1.0,
        schedule="constant", lr_decay_every=0, lr_decay_factor=0.1, warmup_steps=0))  # fmt: skip
    model = models.create(model_name, NUM_CLASSES, **kw)
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
    return _median_time(camjax_step(name, parallel), steps)


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


def interleaved(fns, steps: int, pause: float = 0.3) -> np.ndarray:
    """Seconds per call, ``steps`` rounds x len(fns), calling each function once a round.

    Each call starts after a ``pause``: both runtimes keep their worker threads spinning
    for a while after a step, which would otherwise take cores from the next call."""
    for fn in fns:  # warm-up / compile
        fn()
        fn()
    times = np.zeros((steps, len(fns)))
    for i in range(steps):
        for j, fn in enumerate(fns):
            time.sleep(pause)
            t = time.perf_counter()
            fn()
            times[i, j] = time.perf_counter() - t
    return times


def child(devices: int, parallel: str, name: str, steps: int) -> float:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys, json; sys.path.insert(0, {here!r}); import train_throughput as t; "
        f"print('RESULT', json.dumps(t.camjax_step_time({name!r}, {steps}, {parallel!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return json.loads(out.split("RESULT", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--skip-vgg", action="store_true")
    args = ap.parse_args()
    import torch

    names = ["tiny_gap", "tiny_gap_plain"] + ([] if args.skip_vgg else ["vgg16_gap"])
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print("\n| model | batch x size | camjax img/s | PyTorch img/s | camjax / PyTorch |")
    print("|---|---|---|---|---|")
    for name in names:
        _, _, size, batch = CASES[name]
        times = interleaved([camjax_step(name), torch_step(name)], args.steps)
        tj, tt = np.median(times, axis=0)
        ratio = np.median(times[:, 1] / times[:, 0])
        print(f"| {name} | {batch} x {size} | {batch / tj:.2f} | {batch / tt:.2f} | "
              f"{ratio:.2f}x |", flush=True)  # fmt: skip
    name = "tiny_gap"
    _, _, size, batch = CASES[name]
    print(f"\n{name}, global batch {batch} x {size}: step time by simulated device count")
    print("| devices | runner | step ms | img/s |")
    print("|---|---|---|---|")
    for devices, parallel in [(1, "pmap"), (8, "pmap"), (8, "shard_map")]:
        t = child(devices, parallel, name, args.steps)
        print(f"| {devices} | {parallel} | {1e3 * t:.1f} | {batch / t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
