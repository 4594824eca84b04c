"""Training input pipeline throughput per core: camjax against a reference pipeline written
from the documented steps of flax's ``examples/imagenet/input_pipeline.py``.

    python bench/input_pipeline.py [--num-jpegs 512] [--batches 16] [--rounds 3] [--cores 1,2]

Data: ``--num-jpegs`` generated ImageNet-like JPEGs (each side drawn from 300-500 px,
smooth colour fields plus noise, quality 90), the same encoded bytes on both sides, held
in memory (file reading is not measured: TFRecord reading is cheap next to decoding).

- camjax: ``camjax.data.train_iterator`` on ``imagenet2012`` at 224 with
  ``train_augment="random_resized_crop"`` (TFDS mocked with these examples): the crop
  window drawn from the JPEG header, only that window decoded
  (``decode_and_crop_jpeg``), bilinear resize, random mirror, ImageNet mean/std, batches
  of ``--batch-size``.
- reference, from flax's documented steps: encoded images kept undecoded, shuffled
  (16 batches of buffer), then per image a distorted bounding box sampled on the JPEG's
  shape (whole-image box, area 8-100%, aspect 3/4-4/3, 10 attempts), that window decoded
  with the fused decode-and-crop, a centre crop (224/256 of the short side) where the
  sample fell back to the whole image, resize to 224, random left-right flip, mean/std
  normalisation, parallel map (autotuned), batches with the remainder dropped, prefetch.
  Its resize is bilinear by default, as camjax's (``--reference-resize bicubic``: flax's).

Per core: each side runs in a worker process pinned to ``k`` cores (CPU affinity, set
before TensorFlow starts), for each ``k`` of ``--cores``; the sides run in interleaved
rounds (bench/fair.py), ``--batches`` batches each per round timed in the steady state
(after draining what the pipeline read ahead while it waited, and staying until it has
refilled, so no side computes during another's turn); images/s, images/s per core, CPU
seconds per 1,000 images; a load check marks a run on a busy machine as contaminated. The
last line estimates the cores one host needs to feed 3,000 images/s, from the best
per-core rate and from the CPU time per image (cores scale linearly to first order).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fair  # noqa: E402

SIZE = 224
READ_AHEAD = 16  # batches either pipeline may hold ready (camjax's cap; the reference: 10)
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs, each side uniform in [300, 500] px, quality 90."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(300, 501, 2))
        field = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)  # fmt: skip
        img = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        out.append(buf.tobytes())
    return out


def reference_dataset(jpegs: list[bytes], batch: int, resize: str):
    """The reference pipeline (module docstring), written from flax's documented steps."""
    import tensorflow as tf

    def crop(encoded, seed):
        shape = tf.io.extract_jpeg_shape(encoded)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
            min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)  # fmt: skip
        whole = tf.reduce_all(tf.equal(size[:2], shape[:2]))
        side = tf.cast(SIZE / (SIZE + 32) * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32),
                       tf.int32)  # fmt: skip
        centre = tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])
        window = tf.where(whole, centre, tf.stack([begin[0], begin[1], size[0], size[1]]))
        image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
        return tf.image.resize(image, (SIZE, SIZE), method=resize)

    def one(encoded, label, index):
        seed = tf.stack([tf.constant(7, tf.int64), index])
        image = crop(encoded, seed)
        flip = tf.random.stateless_uniform([], seed + 1) < 0.5
        image = tf.where(flip, tf.reverse(image, [1]), image)
        image = (image - MEAN) / STD
        return {"image": image, "label": tf.cast(label, tf.int32)}

    labels = np.arange(len(jpegs), dtype=np.int64) % 1000
    ds = tf.data.Dataset.from_tensor_slices((jpegs, labels)).repeat()
    ds = ds.enumerate().map(lambda i, ex: (ex[0], ex[1], i))
    ds = ds.shuffle(16 * batch, seed=0)
    ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(10)


def camjax_iterator(jpegs: list[bytes], batch: int):
    """camjax's training iterator over ``jpegs`` (TFDS mocked); keep the returned context
    open while iterating."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from camjax import data
    from camjax.config import load_config

    def as_dataset_fn(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices({
            "image": jpegs,
            "label": np.arange(len(jpegs), dtype=np.int64) % 1000,
            "file_name": [f"x{i}.JPEG" for i in range(len(jpegs))],
        })  # fmt: skip

    c = load_config("default").data
    c.name, c.image_size, c.train_augment = "imagenet2012", SIZE, "random_resized_crop"
    c.shuffle_buffer = 16 * batch  # the reference's buffer
    mock = tfds.testing.mock_data(num_examples=len(jpegs), as_dataset_fn=as_dataset_fn)
    mock.__enter__()
    it = data.train_iterator(c, global_batch_size=batch, seed=0, process_index=0,
                             process_count=1)  # fmt: skip
    return it, mock


def _worker(a: argparse.Namespace) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: a.pin]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    jpegs = make_jpegs(a.num_jpegs)
    if a.child == "camjax":
        it, _mock = camjax_iterator(jpegs, a.batch_size)
    else:
        it = iter(reference_dataset(jpegs, a.batch_size, a.reference_resize))
    for _ in range(3):
        next(it)

    def batches():
        # Both pipelines keep producing ahead while their worker waits for its turn: drain
        # that read-ahead first, time the steady state, then stay until it is refilled, so
        # that no side computes during another's turn.
        for _ in range(READ_AHEAD):
            next(it)
        w0, c0 = time.perf_counter(), fair.cpu_seconds()
        for _ in range(a.batches):
            np.asarray(next(it)["image"])  # the batch on the host, as training takes it
        wall, cpu = time.perf_counter() - w0, fair.cpu_seconds() - c0
        time.sleep(min(60.0, 1.5 * READ_AHEAD * wall / a.batches))
        return {"images": a.batches * a.batch_size, "wall": wall, "cpu": cpu}

    fair.serve(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-jpegs", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=16, help="timed batches per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", default="1,2", help="core counts to pin each side to")
    ap.add_argument("--reference-resize", default="bilinear", choices=("bilinear", "bicubic"))
    ap.add_argument("--child", choices=("camjax", "reference"), help=argparse.SUPPRESS)
    ap.add_argument("--pin", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _worker(a)
        return
    common = ["--num-jpegs", str(a.num_jpegs), "--batch-size", str(a.batch_size),
              "--batches", str(a.batches), "--reference-resize", a.reference_resize]  # fmt: skip
    cores = [k for k in (int(c) for c in a.cores.split(",")) if k <= fair.usable_cores()]
    workers = {}
    try:
        for k in cores:
            for side in ("camjax", "reference"):
                cmd = [sys.executable, __file__, "--child", side, "--pin", str(k), *common]
                workers[side, k] = fair.Worker(f"{side}, {k} core(s)", cmd)
        # The workers' pipelines fill their read-ahead after warming up; let them finish
        # before the load check times its reference loop.
        time.sleep(15)
        check = fair.LoadCheck().start()
        fair.interleave(workers, a.rounds, warmup=0, pause=0.2)
        verdict = check.finish()
    finally:
        for w in workers.values():
            w.close()
    n = a.batches * a.batch_size
    print(f"\n{a.num_jpegs} JPEGs 300-500 px (q90) -> {SIZE}, batch {a.batch_size}, {a.rounds} "
          f"interleaved rounds of {a.batches} batches (median); reference resize "
          f"{a.reference_resize}")  # fmt: skip
    print("| pipeline | cores | images/s | images/s per core | CPU s per 1,000 images | "
          "camjax / reference |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    best, cpu_per_image = 0.0, np.inf
    for k in cores:
        times = {side: workers[side, k].times() for side in ("camjax", "reference")}
        for side, t in times.items():
            rate = n / t.median_wall
            if side == "camjax":
                best, cpu_per_image = max(best, rate / k), min(cpu_per_image, t.median_cpu / n)
            vs = f"{fair.ratio(times, 'camjax', 'reference'):.2f}x" if side == "camjax" else ""
            print(f"| {side} | {k} | {rate:.0f} | {rate / k:.0f} | "
                  f"{1e3 * t.median_cpu / n:.2f} | {vs} |")  # fmt: skip
    print(f"cores to feed 3,000 images/s with camjax: {3000 / best:.1f} at its best wall-clock "
          f"rate per core, {3000 * cpu_per_image:.1f} at its CPU time per image (the figure "
          "load does not inflate)")  # fmt: skip
    print(fair.verdict_line(verdict))


if __name__ == "__main__":
    main()
