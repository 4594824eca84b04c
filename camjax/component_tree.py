"""Boxes of every connected component at many thresholds, from one pass per map.

The kept sets ``{v >= c}`` are nested as the cut ``c`` falls, so their components form a
tree (the max-tree / component tree, Salembier et al. 1998; union-find construction as
in Najman & Couprie 2006). Adding pixels in order of decreasing value with a union-find
whose roots carry area and bounding box (the box of a merged set is the union of the
boxes) gives every threshold's components in one pass: O(N alpha(N) + T C log C) per map
for C live components, not O(T N) as relabelling at each of T thresholds does. Only the
T levels matter, so pixels are bucketed by level with a counting sort, not sorted by
value.

Backends (same inputs ``vals [B, H, W]`` float32 and per-map cuts ``[B, T]`` float32,
kept = ``vals >= cut``; identical outputs):

- ``host``: the union-find in C (source below), compiled once with the system C compiler
  into a cache folder and called through ``ctypes`` (which releases the GIL, so the batch
  is split over one thread per core). Without a compiler it falls back to OpenCV
  ``connectedComponentsWithStats`` per threshold (exact, O(T N), slower).
- ``jax``: for accelerators. Thresholds from high to low in a ``lax.scan``; each step
  relabels by propagation warm-started from the previous step's labels (components only
  merge as the cut falls), then segment reductions give area and box per root. O(T N)
  work, but all of it parallel and on device.

Output per map and threshold: the ``M`` largest components by pixel count, ties by the
raster order of their first pixel, sorted that way; boxes ``(x0, y0, x1, y1)`` inclusive,
``valid`` False and box zeros in unused slots.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import importlib.resources
import os
import subprocess
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np

from camjax import labeling, shared_library

# The C kernel ships beside this module; compiled on first use (see _native).
C_SOURCE = (importlib.resources.files("camjax") / "component_tree.c").read_text()


@functools.cache
def _native() -> ctypes.CDLL | None:
    """Compile (once per source version, cached on disk) and load the C kernel, or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        lib = ctypes.CDLL(str(shared_library.build(C_SOURCE, "component_tree", cc, ["-O3"])))
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    fn = lib.component_tree_boxes
    fp = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    ip = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
    bp = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
    fn.argtypes = [fp, fp] + [ctypes.c_int] * 6 + [ip, bp]
    fn.restype = ctypes.c_int
    return lib


def _fallback_np(
    vals: np.ndarray, cuts: np.ndarray, max_components: int, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-threshold OpenCV labelling; same output as the C kernel, O(T N)."""
    import cv2  # lazily: importing OpenCV edits LD_LIBRARY_PATH

    b, h, w = vals.shape
    t = cuts.shape[1]
    boxes = np.zeros((b, t, max_components, 4), np.int32)
    valid = np.zeros((b, t, max_components), bool)
    for i in range(b):
        for j in range(t):
            mask = (vals[i] >= cuts[i, j]).astype(np.uint8)
            k, lab, stats, _ = cv2.connectedComponentsWithStats(
                mask, connectivity=connectivity, ltype=cv2.CV_32S
            )
            if k <= 1:
                continue
            first = np.full(k, h * w, np.int64)
            np.minimum.at(first, lab.ravel(), np.arange(h * w))
            ids = np.lexsort((first[1:], -stats[1:, cv2.CC_STAT_AREA]))[:max_components] + 1
            x, y = stats[ids, cv2.CC_STAT_LEFT], stats[ids, cv2.CC_STAT_TOP]
            x1 = x + stats[ids, cv2.CC_STAT_WIDTH] - 1
            y1 = y + stats[ids, cv2.CC_STAT_HEIGHT] - 1
            boxes[i, j, : len(ids)] = np.stack([x, y, x1, y1], -1)
            valid[i, j, : len(ids)] = True
    return boxes, valid


def _num_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def component_boxes_np(
    vals: np.ndarray, cuts: np.ndarray, max_components: int, connectivity: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Host kernel: ``vals [B, H, W]``, ``cuts [B, T]`` -> ``(boxes [B,T,M,4], valid [B,T,M])``."""
    labeling.check_connectivity(connectivity)
    vals = np.ascontiguousarray(vals, np.float32)
    lead, (h, w) = vals.shape[:-2], vals.shape[-2:]
    vals = vals.reshape(-1, h, w)
    cuts = np.ascontiguousarray(np.asarray(cuts, np.float32).reshape(vals.shape[0], -1))
    b, t = cuts.shape
    if h >= 1 << 15 or w >= 1 << 15:  # the kernel packs (y, x) into one int32
        raise ValueError(f"maps must be smaller than 32768 x 32768, got {h} x {w}")
    lib = _native()
    if lib is None:
        boxes, valid = _fallback_np(vals, cuts, max_components, connectivity)
    else:
        boxes = np.zeros((b, t, max_components, 4), np.int32)
        valid = np.zeros((b, t, max_components), np.uint8)
        # ctypes drops the GIL during the call, so maps split over threads run in parallel.
        parts = [c for c in np.array_split(np.arange(b), min(_num_threads(), b)) if len(c)]

        def run(c: np.ndarray) -> int:
            s = slice(int(c[0]), int(c[-1]) + 1)
            return lib.component_tree_boxes(
                vals[s], cuts[s], len(c), h, w, t, max_components, connectivity, boxes[s], valid[s]
            )

        with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
            codes = list(pool.map(run, parts))
        if any(codes):
            raise MemoryError("component_tree_boxes: out of memory")
        valid = valid.view(np.bool_)
    return boxes.reshape(lead + boxes.shape[1:]), valid.reshape(lead + valid.shape[1:])


def component_boxes_host(
    vals: jnp.ndarray, cuts: jnp.ndarray, max_components: int, connectivity: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """:func:`component_boxes_np` through ``jax.pure_callback`` (jittable)."""
    b, _, _ = vals.shape
    t = cuts.shape[-1]
    out = (
        jax.ShapeDtypeStruct((b, t, max_components, 4), jnp.int32),
        jax.ShapeDtypeStruct((b, t, max_components), jnp.bool_),
    )

    def cb(v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return component_boxes_np(v, c, max_components, connectivity)

    return jax.pure_callback(cb, out, vals, cuts, vmap_method="broadcast_all")


def root_stats_jax(roots: jnp.ndarray, kept: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per root slot of ``roots [P, H, W]``: area ``[P, N]`` and box ``[P, N, 4]``."""
    p, h, w = roots.shape
    n = h * w
    flat = jnp.where(kept, roots, n).reshape(p, n)
    rows = jnp.arange(p, dtype=jnp.int32)[:, None]
    ys, xs = jnp.divmod(jnp.arange(n, dtype=jnp.int32), w)
    ys, xs = jnp.broadcast_to(ys, (p, n)), jnp.broadcast_to(xs, (p, n))
    area = jnp.zeros((p, n + 1), jnp.int32).at[rows, flat].add(1)[:, :n]
    big = jnp.full((p, n + 1), n, jnp.int32)
    small = jnp.full((p, n + 1), -1, jnp.int32)
    x0 = big.at[rows, flat].min(xs)[:, :n]
    y0 = big.at[rows, flat].min(ys)[:, :n]
    x1 = small.at[rows, flat].max(xs)[:, :n]
    y1 = small.at[rows, flat].max(ys)[:, :n]
    return area, jnp.stack([x0, y0, x1, y1], -1)


def _top_components(
    area: jnp.ndarray, box: jnp.ndarray, max_components: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The ``M`` largest roots, ties by root index (first pixel), as the C kernel orders them.

    ``lax.top_k`` puts the lower index first among equal values (its documented tie
    rule), which is exactly that order, without sorting all ``N`` slots.
    """
    p, n = area.shape
    m = min(max_components, n)
    _, top = jax.lax.top_k(area, m)
    ok = jnp.take_along_axis(area, top, axis=1) > 0
    bx = jnp.take_along_axis(box, top[..., None], axis=1)
    bx = jnp.where(ok[..., None], bx, 0)
    if m < max_components:
        bx = jnp.pad(bx, ((0, 0), (0, max_components - m), (0, 0)))
        ok = jnp.pad(ok, ((0, 0), (0, max_components - m)))
    return bx, ok


def component_boxes_jax(
    vals: jnp.ndarray,
    cuts: jnp.ndarray,
    thresholds_order: jnp.ndarray,
    max_components: int,
    connectivity: int,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """On-device variant. ``thresholds_order``: threshold indices with cuts non-increasing."""
    b, h, w = vals.shape

    def step(prev: jnp.ndarray, j: jnp.ndarray):
        kept = vals >= cuts[:, j][:, None, None]
        roots = labeling.root_labels_jax(kept, connectivity, init=prev)
        area, box = root_stats_jax(roots, kept)
        return roots, _top_components(area, box, max_components)

    init = jnp.full((b, h, w), h * w, jnp.int32)
    _, (bx, ok) = jax.lax.scan(step, init, thresholds_order)
    inverse = jnp.argsort(thresholds_order)
    bx, ok = bx[inverse], ok[inverse]
    return jnp.moveaxis(bx, 0, 1), jnp.moveaxis(ok, 0, 1)
