"""Throughput of camjax's streaming evaluators against the WSOL benchmark's host loop.

The WSOL benchmark (Choe et al., CVPR 2020; clovaai/wsolevaluation, ``BoxEvaluator`` and
``MaskEvaluator``) accumulates one map at a time on the host: per CAM threshold an OpenCV
threshold + contours + bounding boxes and a numpy IoU (MaxBoxAccV2), or a numpy histogram
of the map's values at fg and bg pixels (PxAP). This script runs that loop (written here
from the published formulas, outer contours only, inclusive boxes, the benchmark's uint8
rule = camjax ``mode="wsol"``) and camjax's batched ``update`` on the same maps, checks
that both give the same MaxBoxAccV2 curves and PxAP, and prints maps/s: both sides in
interleaved rounds, wall and CPU-time speed-ups, and a load check (bench/fair.py).

Run: ``python bench/evaluators_throughput.py [--batch 64] [--batches 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import jax
import numpy as np

from camjax import metrics
from camjax.metrics import BoxEvaluator, MaskEvaluator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402


def blob_maps(batch: int, size: int, seed: int) -> np.ndarray:
    """CAM-like maps in [0, 1]: a 14x14 random field, bilinear upsampled, ReLU, / max."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((batch, 14, 14)).astype(np.float32)
    maps = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in coarse])
    maps = np.maximum(maps, 0.0)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def random_gt(batch: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, size // 2, (batch, 3, 2))
    return np.concatenate([lo, lo + rng.integers(8, size // 2, (batch, 3, 2))], -1).astype(np.int32)


def check_scoremap(scoremap: np.ndarray) -> None:
    """The benchmark checks every map (``check_scoremap_validity``): finite, in [0, 1]."""
    if np.isnan(scoremap).any() or scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError("scoremap must be finite and in [0, 1]")


def host_box_hits(scoremap, gt, thresholds, deltas) -> np.ndarray:
    """One map, the benchmark's way: hits ``[D, T]`` over every outer contour's box."""
    check_scoremap(scoremap)
    image = (scoremap * 255).astype(np.uint8)
    best = np.zeros(len(thresholds))
    for j, t in enumerate(thresholds):
        _, thr = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
        contours, _ = cv2.findContours(thr, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        rects = np.array([cv2.boundingRect(c) for c in contours])
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], 1)
        ix = np.minimum(boxes[:, None, 2:], gt[None, :, 2:]) - np.maximum(
            boxes[:, None, :2], gt[None, :, :2]
        )
        inter = np.prod(np.maximum(ix + 1, 0), -1)
        area = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        best[j] = (inter / (area(boxes)[:, None] + area(gt)[None] - inter)).max()
    return best[None, :] >= np.asarray(deltas, np.float64)[:, None]


def host_histograms(scoremap, mask, edges) -> tuple[np.ndarray, np.ndarray]:
    check_scoremap(scoremap)
    return (
        np.histogram(scoremap[mask == 1], bins=edges)[0],
        np.histogram(scoremap[mask == 0], bins=edges)[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timed rounds")
    args = parser.parse_args()
    n = args.batch * args.batches
    data = [
        (blob_maps(args.batch, args.size, s), random_gt(args.batch, args.size, s + 100))
        for s in range(args.batches)
    ]
    check = fair.LoadCheck().start()
    print(f"device: {jax.devices()[0].platform}, {n} maps of {args.size}x{args.size}, "
          f"{args.rounds} interleaved rounds (median)\n")  # fmt: skip
    print("| metric | thresholds | camjax maps/s | host loop maps/s | speed-up (wall) | "
          "speed-up (CPU time) | same result |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    deltas = (0.3, 0.5, 0.7)
    for steps in (100, 1000):
        grid = metrics.default_cam_thresholds(1.0 / steps)
        # MaxBoxAccV2 ------------------------------------------------------------------
        ev = BoxEvaluator(grid, deltas, mode="wsol", max_components=64)
        hits = np.zeros((len(deltas), len(grid)))

        def box_jax(ev=ev):
            ev.reset()
            for maps, gt in data:
                ev.update(maps, gt)
            jax.block_until_ready(ev.state)

        def box_host(hits=hits, grid=grid):
            hits[:] = 0
            for maps, gt in data:
                for m, g in zip(maps, gt, strict=True):
                    hits += host_box_hits(m, g, grid, deltas)

        times = fair.interleave({"camjax": box_jax, "host": box_host}, args.rounds)
        curves = ev.result()["curve_per_iou"]
        same = all(
            np.allclose(curves[k], 100 * hits[i] / n) for i, k in enumerate(("30", "50", "70"))
        )
        _row("MaxBoxAccV2", steps, n, times, same)
        # PxAP ---------------------------------------------------------------------------
        masks = [(maps > 0.3).astype(np.uint8) for maps, _ in data]
        mev = MaskEvaluator(grid)
        edges = np.append(grid, [1.0, 2.0, 3.0])
        hist = np.zeros((2, len(edges) - 1))

        def mask_jax(mev=mev, masks=masks):
            mev.reset()
            for (maps, _), mask in zip(data, masks, strict=True):
                mev.update(maps, mask)
            jax.block_until_ready(mev.state)

        def mask_host(hist=hist, edges=edges, masks=masks):
            hist[:] = 0
            for (maps, _), mask in zip(data, masks, strict=True):
                for m, k in zip(maps, mask, strict=True):
                    f, b = host_histograms(m, k, edges)
                    hist += (f, b)

        times = fair.interleave({"camjax": mask_jax, "host": mask_host}, args.rounds)
        same = np.isclose(mev.result()["pxap"], metrics.pxap_from_histograms(*hist))
        _row("PxAP", steps, n, times, same)
    print(fair.verdict_line(check.finish()))


def _row(metric: str, steps: int, n: int, times: dict, same: bool) -> None:
    cam, host = times["camjax"], times["host"]
    print(f"| {metric} | {steps} | {n / cam.median_wall:.0f} | {n / host.median_wall:.0f} | "
          f"{fair.ratio(times, 'camjax', 'host'):.1f}x | "
          f"{fair.ratio(times, 'camjax', 'host', 'cpu'):.1f}x | {same} |")  # fmt: skip


if __name__ == "__main__":
    main()
