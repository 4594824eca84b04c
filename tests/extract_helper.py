"""Shared by the extraction tests: a small image folder and a run of ``camjax.extract`` with a
fixed randomly initialised ``tiny_gap`` (the same weights in every process), run as

    python tests/extract_helper.py IMAGES OUT [--slow-writes S] [--process I N PORT]
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

SIZE, CLASSES = 32, 10


def make_folder(path, n_good=24, seed=0):
    """``n_good`` PNG/JPEG images of varied sizes and two unreadable files."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_good):
        h, w = (int(v) for v in rng.integers(16, 64, 2))
        img = np.zeros((h, w, 3), np.uint8)
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y : y + h // 2, x : x + w // 2] = rng.integers(100, 255, 3)  # a bright patch
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(img).save(os.path.join(path, f"img{i:03d}.{ext}"))
    with open(os.path.join(path, "img005b.jpg"), "w") as f:
        f.write("not a jpeg")
    with open(os.path.join(path, "img017b.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
    return path


def loaded():
    import jax

    from camjax import models
    from camjax.checkpoints import Loaded

    model = models.create("tiny_gap", CLASSES)
    # He-normal weights from NumPy on the model's variable shapes: the same in every
    # process, and no init program to compile (that takes ~25 s on 2 busy cores).
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, SIZE, SIZE, 3)))
    rng = np.random.default_rng(0)

    def leaf(path, s):
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("var", "scale"):
            return np.ones(s.shape, s.dtype)
        if name in ("mean", "bias") or len(s.shape) < 2:
            return np.zeros(s.shape, s.dtype)
        fan_in = int(np.prod(s.shape[:-1]))
        return (rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in)).astype(s.dtype)

    variables = jax.tree_util.tree_map_with_path(leaf, shapes)
    names = [f"class {i}" for i in range(CLASSES)]
    return Loaded(model, variables, names, SIZE, "unit", "tiny_gap random key 0")


def run(images, out, **kw):
    """``extract_to`` on ``images`` into ``out``; ``kw`` are fields of the spec or the
    run options, by name."""
    import dataclasses

    from camjax.extract import LocalizeSpec, RunOptions, extract_to

    opts = dict(top_k=3, batch_size=4, shard_size=3, progress=False, model_name="tiny_gap")
    opts.update(kw)
    spec_fields = {f.name for f in dataclasses.fields(LocalizeSpec)}
    spec = LocalizeSpec(**{k: v for k, v in opts.items() if k in spec_fields})
    options = RunOptions(**{k: v for k, v in opts.items() if k not in spec_fields})
    return extract_to(loaded(), [images], out, spec, options)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("images")
    p.add_argument("out")
    p.add_argument("--slow-writes", type=float, default=0.0)
    p.add_argument("--process", nargs=3, default=None)
    p.add_argument("--overlays", type=int, default=0)
    a = p.parse_args()
    kw = {"overlays": a.overlays}
    if a.process:
        from camjax.extract.devices import init_distributed

        i, n, port = (int(v) for v in a.process)
        init_distributed(f"127.0.0.1:{port}", n, i)
    if a.slow_writes:  # a slow disk, so that a kill lands between a shard's files
        import time

        from camjax.extract import store

        real = store.atomic_write

        def slow(path, write):
            time.sleep(a.slow_writes)
            real(path, write)

        store.atomic_write = slow
    import jax

    s = run(a.images, a.out, **kw)
    print("DONE", s["num_images"], s["complete"], jax.local_device_count(), jax.process_count())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
