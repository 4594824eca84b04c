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
import hashlib
import os
import subprocess
import sysconfig
import tempfile

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from camjax import labeling

C_SOURCE = r"""
#include <stdlib.h>
#include <string.h>

typedef struct { float c; int j; } Cut;
typedef struct { int area; int first; int root; } Item;

static int cmp_cut(const void* a, const void* b) {
  const Cut* x = (const Cut*)a; const Cut* y = (const Cut*)b;
  if (x->c > y->c) return -1;
  if (x->c < y->c) return 1;
  return x->j - y->j;
}

static int cmp_item(const void* a, const void* b) {
  const Item* x = (const Item*)a; const Item* y = (const Item*)b;
  if (x->area != y->area) return x->area > y->area ? -1 : 1;
  return x->first - y->first;
}

static inline int find(int* parent, int p) {
  while (parent[p] != p) { parent[p] = parent[parent[p]]; p = parent[p]; }
  return p;
}

/* Number of sorted (descending) cuts c[k] > x, exact; the bucket table only picks the
   starting point of the two correcting walks, so rounding in the bucket index is harmless. */
static inline int level_of(float x, const Cut* cs, int T, int nfin0, float lo, float hi,
                           float inv_w, int K, const int* table) {
  if (x != x || x < lo) return T;
  if (x >= hi) { int k = nfin0; while (k < T && cs[k].c > x) ++k; return k; }
  int b = (int)((x - lo) * inv_w);
  if (b < 0) b = 0;
  if (b >= K) b = K - 1;
  int k = table[b];
  while (k > 0 && !(cs[k - 1].c > x)) --k;
  while (k < T && cs[k].c > x) ++k;
  return k;
}

typedef struct { int area, first, x0, y0, x1, y1, pos, pad; } Node;

/* vals [B,H,W], cuts [B,T]; boxes [B,T,M,4] int32, valid [B,T,M] uint8 (zeroed by caller).
   Kept at threshold j: vals >= cuts[j]. Returns 0, or -1 when out of memory. */
int component_tree_boxes(const float* vals, const float* cuts, int B, int H, int W, int T,
                         int M, int conn, int* boxes, unsigned char* valid) {
  const int N = H * W, K = 4 * T + 16, WP = W + 2, NP = (H + 2) * (W + 2);
  /* parent and node live on a grid padded by one pixel of "never kept" (-1), so the
     neighbour loop needs no bounds checks */
  /* 8-neighbours in ring order N, NE, E, SE, S, SW, W, NW; 4-neighbours N, E, S, W */
  const int RING[8] = {-WP, -WP + 1, 1, WP + 1, WP, WP - 1, -1, -WP - 1};
  const int CROSS[4] = {-WP, 1, WP, -1};
  int* buf = (int*)malloc(sizeof(int) * ((size_t)N * 4 + (size_t)NP + (size_t)T + 2 + (size_t)K));
  Node* node = (Node*)malloc(sizeof(Node) * (size_t)NP);
  Cut* cs = (Cut*)malloc(sizeof(Cut) * (size_t)(T > 0 ? T : 1));
  Item* items = (Item*)malloc(sizeof(Item) * (size_t)N);
  if (!buf || !node || !cs || !items) {
    free(buf); free(node); free(cs); free(items); return -1;
  }
  int *alive = buf, *lev = buf + N, *order = buf + 2 * N, *oyx = buf + 3 * N;
  int *parent = buf + 4 * N, *start = parent + NP, *table = start + T + 2;
  for (int b = 0; b < B; ++b) {
    const float* v = vals + (size_t)b * N;
    for (int j = 0; j < T; ++j) { cs[j].c = cuts[(size_t)b * T + j]; cs[j].j = j; }
    qsort(cs, T, sizeof(Cut), cmp_cut);
    /* finite cuts occupy sorted positions [nfin0, T); callers pass +inf for "keep nothing" */
    int nfin0 = 0;
    while (nfin0 < T && !(cs[nfin0].c < 3.0e38f)) ++nfin0;
    float hi = nfin0 < T ? cs[nfin0].c : 0.0f, lo = nfin0 < T ? cs[T - 1].c : 0.0f;
    float inv_w = hi > lo ? (float)K / (hi - lo) : 0.0f;
    for (int bk = 0, k = T; bk < K; ++bk) {
      float upper = lo + (hi - lo) * (float)(bk + 1) / (float)K;
      while (k > nfin0 && cs[k - 1].c <= upper) --k;
      table[bk] = k;
    }
    memset(start, 0, sizeof(int) * (T + 2));
    for (int p = 0; p < N; ++p) {
      int k = level_of(v[p], cs, T, nfin0, lo, hi, inv_w, K, table);
      lev[p] = k;
      start[k + 1]++;
    }
    for (int k = 0; k < T; ++k) start[k + 1] += start[k];
    for (int y = 0, p = 0; y < H; ++y)
      for (int x = 0; x < W; ++x, ++p)
        if (lev[p] < T) { int i = start[lev[p]]++; order[i] = p; oyx[i] = (y << 16) | x; }
    for (int k = T; k > 0; --k) start[k] = start[k - 1];
    start[0] = 0;
    for (int i = 0; i < NP; ++i) parent[i] = -1;
    int nalive = 0;
    for (int k = 0; k < T; ++k) {
      for (int i = start[k]; i < start[k + 1]; ++i) {
        int p = order[i], y = oyx[i] >> 16, x = oyx[i] & 0xffff, r = -1;
        int pp = (y + 1) * WP + x + 1;
        unsigned todo = 0;
        const int* offs = RING;
        if (conn == 8) {
          /* Present pixels that are adjacent were joined when the later of them entered,
             and ring-consecutive neighbours are adjacent: one pixel per run of present
             neighbours around the ring suffices (at most 4 finds instead of 8). */
          unsigned bits = 0;
          for (int d = 0; d < 8; ++d) bits |= (unsigned)(parent[pp + RING[d]] >= 0) << d;
          todo = bits & ~(((bits << 1) | (bits >> 7)) & 0xffu);
          if (bits == 0xffu) todo = 1u;
        } else {
          offs = CROSS;
          for (int d = 0; d < 4; ++d) todo |= (unsigned)(parent[pp + CROSS[d]] >= 0) << d;
        }
        for (; todo; todo &= todo - 1) {
          int q = pp + offs[__builtin_ctz(todo)], pq = parent[q];
          if (pq == r) continue;
          int rq = find(parent, q);
          if (rq == r) continue;
          if (r < 0) {  /* join the first neighbouring component: no singleton needed */
            Node* n = node + rq;
            r = rq; parent[pp] = r; n->area += 1;
            if (p < n->first) n->first = p;
            if (x < n->x0) n->x0 = x;
            if (x > n->x1) n->x1 = x;
            if (y < n->y0) n->y0 = y;
            if (y > n->y1) n->y1 = y;
            continue;
          }
          /* union by size keeps the trees shallow; `first` carries the raster-first pixel */
          int big = node[r].area >= node[rq].area ? r : rq, small = big == r ? rq : r;
          Node *nb = node + big, *ns = node + small;
          parent[small] = big; nb->area += ns->area;
          if (ns->first < nb->first) nb->first = ns->first;
          if (ns->x0 < nb->x0) nb->x0 = ns->x0;
          if (ns->y0 < nb->y0) nb->y0 = ns->y0;
          if (ns->x1 > nb->x1) nb->x1 = ns->x1;
          if (ns->y1 > nb->y1) nb->y1 = ns->y1;
          int last = alive[--nalive];
          alive[ns->pos] = last; node[last].pos = ns->pos;
          r = big;
        }
        if (r < 0) {
          Node* n = node + pp;
          parent[pp] = pp; n->area = 1; n->first = p;
          n->x0 = n->x1 = x; n->y0 = n->y1 = y;
          n->pos = nalive; alive[nalive++] = pp;
        }
      }
      int j = cs[k].j;
      int* out = boxes + ((size_t)b * T + j) * (size_t)M * 4;
      unsigned char* ok = valid + ((size_t)b * T + j) * (size_t)M;
      if (k > 0 && start[k] == start[k + 1]) {
        /* nothing entered: same components as at the previous cut */
        int jp = cs[k - 1].j;
        memcpy(out, boxes + ((size_t)b * T + jp) * (size_t)M * 4, sizeof(int) * 4 * (size_t)M);
        memcpy(ok, valid + ((size_t)b * T + jp) * (size_t)M, (size_t)M);
        continue;
      }
      for (int i = 0; i < nalive; ++i) {
        int r = alive[i];
        items[i].area = node[r].area; items[i].first = node[r].first; items[i].root = r;
      }
      if (nalive > 32) {
        qsort(items, nalive, sizeof(Item), cmp_item);
      } else {  /* the usual handful of components: insertion sort beats qsort's calls */
        for (int i = 1; i < nalive; ++i) {
          Item it = items[i];
          int h = i;
          while (h > 0 && cmp_item(&it, &items[h - 1]) < 0) { items[h] = items[h - 1]; --h; }
          items[h] = it;
        }
      }
      int m = nalive < M ? nalive : M;
      for (int i = 0; i < m; ++i) {
        Node* n = node + items[i].root;
        out[4 * i] = n->x0; out[4 * i + 1] = n->y0; out[4 * i + 2] = n->x1; out[4 * i + 3] = n->y1;
        ok[i] = 1;
      }
    }
  }
  free(buf); free(node); free(cs); free(items);
  return 0;
}
"""


def _cache_dir() -> str:
    root = os.environ.get("CAMJAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "camjax"
    )
    os.makedirs(root, exist_ok=True)
    return root


@functools.cache
def _native() -> ctypes.CDLL | None:
    """Compile (once per source version, cached on disk) and load the C kernel, or None."""
    digest = hashlib.sha256(C_SOURCE.encode()).hexdigest()[:16]
    try:
        folder = _cache_dir()
        lib_path = os.path.join(folder, f"component_tree_{digest}.so")
        if not os.path.exists(lib_path):
            cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                src = os.path.join(tmp, "component_tree.c")
                with open(src, "w") as f:
                    f.write(C_SOURCE)
                out = os.path.join(tmp, "lib.so")
                subprocess.run(
                    [cc, "-O3", "-shared", "-fPIC", "-o", out, src],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                os.replace(out, lib_path)  # atomic: concurrent processes never see half a file
        lib = ctypes.CDLL(lib_path)
    except (OSError, subprocess.SubprocessError):
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
