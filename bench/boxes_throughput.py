"""Throughput of camjax's component boxes against the WSOL benchmark's host path.

The WSOL benchmark (Choe et al., CVPR 2020; clovaai/wsolevaluation,
``compute_bboxes_from_scoremaps``) boxes a CAM at each threshold with, per map and per
threshold: ``cv2.threshold`` of ``uint8(map * 255)`` at ``int(t * max)``,
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` and ``cv2.boundingRect`` per contour.
camjax does every threshold of a map in one pass over its component tree
(``camjax.boxes.component_boxes``, ``mode="wsol"`` for the same kept pixels).

Maps: smooth random blobs like upsampled CAMs (a 14x14 Gaussian field, bilinear to
224x224, ReLU, divided by the max). Checks that the outer-contour boxes (even depth in
the contour tree; holes aside) equal camjax's component boxes, then prints
map-thresholds/s. Also times ``largest_component_box`` on 32 maps with both backends.

Fair (bench/fair.py): the sides run in interleaved rounds; camjax's host kernel splits the
batch over one thread per core, so the OpenCV path is shown single-threaded and split
over the same number of threads, and CPU time (all threads summed) beside wall time; a
load check before and after marks a run on a busy machine as contaminated.

Run: ``python bench/boxes_throughput.py [--batch 64] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys

import cv2
import jax
import numpy as np

from camjax import boxes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402


def blob_maps(batch: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """CAM-like maps in [0, 1]: a coarse random field, bilinear upsampled, ReLU, / max."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((batch, 14, 14)).astype(np.float32)
    maps = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in coarse])
    maps = np.maximum(maps, 0.0)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def wsol_boxes(scoremap: np.ndarray, thresholds: np.ndarray, outer_only: bool) -> list:
    """The benchmark's per-threshold path; boxes as inclusive corners per threshold."""
    image = (scoremap * 255).astype(np.uint8)
    out = []
    for t in thresholds:
        _, thr = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
        contours, hierarchy = cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        rects = [cv2.boundingRect(c) for c in contours]
        if outer_only and contours:
            parents = hierarchy[0, :, 3]
            depth = np.zeros(len(contours), int)
            for i in range(len(contours)):
                p = parents[i]
                while p >= 0:
                    depth[i] += 1
                    p = parents[p]
            rects = [r for r, d in zip(rects, depth, strict=True) if d % 2 == 0]
        out.append(sorted((x, y, x + w - 1, y + h - 1) for x, y, w, h in rects))
    return out


def check_equal(maps, thresholds, got_boxes, got_valid, num_maps: int) -> int:
    """Compares outer-contour boxes with camjax's on ``num_maps`` maps; returns #compared."""
    compared = 0
    for i in range(num_maps):
        ref = wsol_boxes(maps[i], thresholds, outer_only=True)
        for j, r in enumerate(ref):
            mine = sorted(tuple(int(v) for v in b) for b in got_boxes[i, j][got_valid[i, j]])
            if mine != r:
                raise AssertionError(f"map {i} threshold {thresholds[j]}: {mine} != {r}")
            compared += 1
    return compared


def wsol_threaded(maps, thresholds, threads: int) -> list:
    """The benchmark's path over ``maps`` split across ``threads`` threads (OpenCV drops the
    GIL), as camjax's host kernel splits its batch: the same-thread-count comparison."""
    parts = [c for c in np.array_split(np.arange(len(maps)), threads) if len(c)]
    with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(lambda c: [wsol_boxes(maps[i], thresholds, False) for i in c], parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--max-components", type=int, default=64)
    parser.add_argument("--check-maps", type=int, default=8)
    parser.add_argument("--baseline-maps", type=int, default=16)
    args = parser.parse_args()
    threads = fair.usable_cores()
    print(f"jax {jax.__version__} on {jax.default_backend()}, OpenCV {cv2.__version__}, "
          f"{threads} cores")  # fmt: skip
    check = fair.LoadCheck().start()
    maps = blob_maps(args.batch)
    device_maps = jax.device_put(maps)
    nb = args.baseline_maps
    rows = []
    for num_t in (100, 1000):
        # The benchmark's grid: np.arange(0, 1, interval), interval 0.01 (or 0.001).
        thresholds = np.arange(0, 1, 1.0 / num_t)
        fn = jax.jit(
            lambda m, th=thresholds: boxes.component_boxes(
                m, th, max_components=args.max_components, mode="wsol"
            )
        )
        got = jax.block_until_ready(fn(device_maps))
        got_boxes, got_valid = (np.asarray(x) for x in got)
        if got_valid[..., -1].any():
            raise AssertionError("max_components too small for an exact comparison")
        compared = check_equal(maps, thresholds, got_boxes, got_valid, args.check_maps)
        times = fair.interleave(
            {
                "camjax": lambda fn=fn: jax.block_until_ready(fn(device_maps)),
                "opencv": lambda th=thresholds: [wsol_boxes(m, th, False) for m in maps[:nb]],
                "opencv_threads": lambda th=thresholds: wsol_threaded(maps[:nb], th, threads),
            },
            args.repeats,
            warmup=1,
        )
        rows.append((num_t, times, compared))
    verdict = check.finish()
    print(f"\ncomponent boxes, {args.batch} maps of 224x224 (OpenCV path on {nb}), "
          f"{args.repeats} interleaved rounds (median)")  # fmt: skip
    print("| thresholds | clock | OpenCV threads | WSOL OpenCV path (map-thr/s) | camjax "
          f"({threads} threads, map-thr/s) | speed-up | checked equal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for num_t, times, compared in rows:
        cam = times["camjax"]
        for clock in ("wall", "cpu"):
            for side, n_threads in (("opencv", 1), ("opencv_threads", threads)):
                if clock == "cpu" and side == "opencv_threads":
                    continue  # CPU time does not depend on the split
                c = args.batch * num_t / float(np.median(getattr(cam, clock)))
                r = nb * num_t / float(np.median(getattr(times[side], clock)))
                print(f"| {num_t} | {clock} | {n_threads} | {r:,.0f} | {c:,.0f} | "
                      f"{c / r:.1f}x | {compared} |")  # fmt: skip

    small = device_maps[:32]
    print("\nlargest_component_box, 32 maps of 224x224, threshold 0.2")
    print("| backend | wall ms per call | CPU ms per call | maps/s (wall) |")
    print("|---|---|---|---|")
    fns, results = {}, {}
    for backend in ("host", "jax"):
        fn = jax.jit(lambda m, b=backend: boxes.largest_component_box(m, 0.2, backend=b))
        results[backend] = np.asarray(fn(small))
        fns[backend] = lambda fn=fn: jax.block_until_ready(fn(small))
    for backend, t in fair.interleave(fns, args.repeats, warmup=0).items():
        wall, cpu = t.median_wall, t.median_cpu
        print(f"| {backend} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {32 / wall:,.0f} |")
    if not np.array_equal(results["host"], results["jax"]):
        raise AssertionError("host and jax backends disagree")
    print(fair.verdict_line(verdict))


if __name__ == "__main__":
    main()
