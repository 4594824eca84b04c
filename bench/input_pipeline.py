"""Input pipeline throughput: images/s of decode + augment + batch, as a table.

Rows:
- ``camjax_shapes``: the embedded default (64 px PNG records read from TFDS files),
  built first into ``--data_dir`` (its build time is printed too).
- ``imagenet-like``: ``--num_jpegs`` generated 500x375 JPEGs (smooth colour fields plus
  noise, ~ImageNet's average file size) fed through the real ``imagenet2012`` pipeline
  at 224 (TFDS mocked with these examples, so file reading is not measured; TFRecord
  reading is cheap next to JPEG decoding).

Run: ``python bench/input_pipeline.py [--batches 20] [--batch_size 64]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from camjax import data  # noqa: E402
from camjax.config import load_config  # noqa: E402
from camjax.data import shapes  # noqa: E402


def _jpegs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = cv2.resize(
            rng.uniform(0, 255, (6, 8, 3)).astype(np.float32),
            (500, 375),
            interpolation=cv2.INTER_CUBIC,
        )
        img = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(buf.tobytes())
    return out


def _rate(it, batches: int, batch_size: int, warmup: int = 2) -> float:
    for _ in itertools.islice(it, warmup):
        pass
    t = time.perf_counter()
    for _ in itertools.islice(it, batches):
        pass
    return batches * batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default="/tmp/camjax_bench_tfds")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--num_jpegs", type=int, default=512)
    args = ap.parse_args()
    b, n = args.batch_size, args.batches
    rows = []

    c = load_config("default").data
    c.data_dir = args.data_dir
    t = time.perf_counter()
    shapes.builder(c)
    print(
        f"camjax_shapes default (4000/500/500 at 64 px): ready in "
        f"{time.perf_counter() - t:.1f} s (0 if it was built before)"
    )
    for aug in ("crop_flip", "random_resized_crop"):
        c.train_augment = aug
        it = data.train_iterator(c, global_batch_size=b, seed=0, process_index=0, process_count=1)
        rows.append(("camjax_shapes", "train " + aug, 64, _rate(it, n, b)))
    it = data.eval_iterator(c, "validation", global_batch_size=b, process_index=0, process_count=1)
    rows.append(("camjax_shapes", "eval resize", 64, _rate(it, 5, b, warmup=1)))

    jpegs = _jpegs(args.num_jpegs)
    mean_kb = np.mean([len(j) for j in jpegs]) / 1024

    def as_dataset_fn(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": jpegs,
                "label": np.arange(len(jpegs), dtype=np.int64) % 1000,
                "file_name": [f"x{i}.JPEG" for i in range(len(jpegs))],
            }
        )

    c = load_config("default").data
    c.name, c.image_size, c.shuffle_buffer = "imagenet2012", 224, 1024
    with tfds.testing.mock_data(num_examples=len(jpegs), as_dataset_fn=as_dataset_fn):
        for aug in ("crop_flip", "random_resized_crop"):
            c.train_augment = aug
            it = data.train_iterator(
                c, global_batch_size=b, seed=0, process_index=0, process_count=1
            )
            rows.append(
                (
                    f"imagenet-like 500x375 JPEG ({mean_kb:.0f} KB)",
                    "train " + aug,
                    224,
                    _rate(it, n, b),
                )
            )

    print(
        f"\nbatch {b}, {n} batches timed after 2 warm-up, CPU cores: {os.cpu_count()}, "
        f"TF threads: default (autotune)\n"
    )
    print("| data | pipeline | side | images/s |")
    print("|---|---|---|---|")
    for name, what, side, rate in rows:
        print(f"| {name} | {what} | {side} | {rate:.0f} |")


if __name__ == "__main__":
    main()
