"""Peak memory of extraction: does it grow with the number of images? (a measurement, not
a test; the numbers go into the README)

    python bench/extract_memory.py                  # 500 and 10,000 JPEGs, tiny_gap at 224
    python bench/extract_memory.py --counts 200,2000 --stall   # the read-ahead case
    python bench/extract_memory.py --large          # a 12000 x 12000 PNG
    python bench/extract_memory.py --model efficientnet_lite0_gap --devices 8

Each case runs in a fresh process and reports its peak resident set size
(``ru_maxrss``). ``--model tiny_gap`` (random weights) keeps the 10,000-image case to a
few minutes on 2 cores; the pipeline around the model (listing, decoding, read-ahead,
shard writing) is the same for any model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = [(640, 480), (1024, 768), (480, 640), (1600, 1200), (320, 240)]


def make_jpegs(folder: str, n: int) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 255, (h, w, 3), np.uint8) for w, h in SIZES]
    for i in range(n):
        path = os.path.join(folder, f"img{i:06d}.jpg")
        if not os.path.exists(path):
            Image.fromarray(tiles[i % len(tiles)]).save(path, quality=85)


def _loaded(model: str):
    import jax

    from camjax import models
    from camjax.checkpoints import Loaded, load_named

    if model != "tiny_gap":
        import dataclasses

        from camjax import cpu

        loaded = load_named(model)  # with the CPU depthwise, as camjax extract runs it
        return dataclasses.replace(loaded, model=cpu.shifted_depthwise(loaded.model))
    net = models.create("tiny_gap", 10)
    shapes = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, 224, 224, 3)))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.05).astype(s.dtype),
                             shapes)  # fmt: skip
    return Loaded(net, variables, [str(i) for i in range(10)], 224, "imagenet", "tiny random")


def child(mode: str, folder: str, model: str, extra: str) -> dict:
    import resource

    t0 = time.perf_counter()
    if mode == "extract":
        from camjax.extract import RunOptions, extract_to

        out = tempfile.mkdtemp()
        options = RunOptions(batch_size=32, progress=False, overlays=int(extra == "overlays"))
        s = extract_to(_loaded(model), [folder], out, options=options)
        n = s["num_images"]
    elif mode == "stall":  # a model that never keeps up: 1 s per batch, 3 batches read
        from camjax.data.folder import folder_iterator

        it = iter(folder_iterator(folder, image_size=224, normalization="unit", batch_size=16))
        n = 0
        for _ in range(3):
            n += int(next(it)["valid"].sum())
            time.sleep(1.0)
    else:  # large: one 12000 x 12000 PNG, refused at the default limit or decoded above it
        from camjax.extract import RunOptions, extract_to

        out = tempfile.mkdtemp()
        options = RunOptions(progress=False, max_pixels=int(float(extra.split(",")[0]) * 1e6),
                             overlays=int("overlays" in extra))  # fmt: skip
        s = extract_to(_loaded(model), [folder], out, options=options)
        n = s["num_images"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images": n, "peak_rss_mb": round(rss), "seconds": round(time.perf_counter() - t0)}


def _run(*args: str, devices: int = 1) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    res = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, check=False, env=env)  # fmt: skip
    if res.returncode:
        raise SystemExit(res.stdout[-2000:] + res.stderr[-4000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", default="500,10000")
    p.add_argument("--model", default="tiny_gap")
    p.add_argument("--devices", type=int, default=1, help="simulated CPU devices")
    p.add_argument("--stall", action="store_true")
    p.add_argument("--large", action="store_true")
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "camjax-mem"))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    print("| case | images | peak RSS (MB) | seconds |")
    print("|---|---:|---:|---:|")
    if a.large:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests"))
        from test_extract_inputs import _huge_png

        folder = os.path.join(a.data_dir, "large")
        os.makedirs(folder, exist_ok=True)
        if not os.path.exists(os.path.join(folder, "huge.png")):
            _huge_png(os.path.join(folder, "huge.png"), 12000)
        for extra, name in (("64", "12000x12000 PNG, default 64 MP limit (refused)"),
                            ("200", "12000x12000 PNG, --max-megapixels 200"),
                            ("200,overlays", "12000x12000 PNG, 200 MP, --overlays")):  # fmt: skip
            r = _run("large", folder, a.model, extra)
            print(f"| {name} | {r['images']} | {r['peak_rss_mb']} | {r['seconds']} |")
        return
    for n in (int(c) for c in a.counts.split(",")):
        folder = os.path.join(a.data_dir, str(n))
        make_jpegs(folder, n)
        mode = "stall" if a.stall else "extract"
        r = _run(mode, folder, a.model, "", devices=a.devices)
        label = f"{n} files, stalled model (3 batches read)" if a.stall else f"{n} JPEGs"
        print(f"| {label} | {r['images']} | {r['peak_rss_mb']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
