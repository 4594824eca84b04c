"""The authors' released box generator (``bboxgenerator/dt_box.cpp``), reimplemented.

Zhou et al. (CVPR 2016) box the ILSVRC maps with a program released beside their
evaluation script (zhoubolei/CAM, ``bboxgenerator/dt_box.cpp`` and ``dt.c``), not with the
single 20% rule of the paper's text. What it does, with the line of the original it comes
from (facts only; this is camjax's own code):

1. The heatmap is an 8-bit grey image (``dt_box.cpp`` l. 218: the JPEG written by
   ``ILSVRC_generate_heatmap.m`` l. 356, read back as grey).
2. For each of three levels ``t`` (``ILSVRC_evaluate_bbox.m`` l. 63 and
   ``generate_bbox.m`` l. 15 pass ``20 100 110``; the program's own defaults are
   ``30 90 150``, ``dt_box.cpp`` l. 49): keep ``grey > t`` (``cvThreshold`` BINARY, l. 58).
3. Distance transform (l. 59, ``dt.c`` ``dt_binary``): each kept pixel's Euclidean
   distance to the nearest dropped pixel; the distances are scaled to 0..255 by their
   maximum over the image (``dt.c`` ``double_to_image``: ``(int)(d * 255 / max + 0.5)``)
   and kept where the level is ``> 10`` (l. 60). This erodes every region by ~4% of the
   largest inscribed radius and drops thin parts.
4. Every contour of the result, outer borders and hole borders alike
   (``findContours`` with ``RETR_CCOMP``, l. 84), gives its bounding rectangle
   ``(x, y, w, h)``, clamped 5 pixels from the right and bottom border (l. 89-92; the
   width is clamped with the unclamped ``x``, so it can come out negative).
5. Rectangles of all three levels are sorted by area ``w * h``, largest first (l. 153-164),
   then merged (l. 108-151): scanning in that order, a later rectangle whose overlap with
   an earlier one exceeds half the larger area (``int`` truncated) is dropped; the scan
   steps past the rectangle that moves into the dropped one's place (``erase`` inside a
   ``for`` loop), so that one is not compared with the earlier rectangle.
6. The evaluation reads rectangle ``r`` as the box ``(x, y, x + w, y + h)`` (corners
   ordered, ``ILSVRC_evaluate_bbox.m`` l. 97-98): ``bbox1`` is the first, ``bbox2`` the
   second (l. 109, 114).

Differences, all documented and tested: with more than 16 rectangles of equal area,
``std::sort`` (not stable beyond 16 elements in libstdc++) may order them otherwise than
the stable sort here; the released script indexes ``bbox2`` without checking it exists
(camjax repeats ``bbox1`` then) and has no box when nothing passes the first level
(camjax: ``(0, 0, 0, 0)``, the convention of :mod:`camjax.boxes`). Contours come from the
same OpenCV function the program calls.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

RELEASED_LEVELS = (20, 100, 110)  # ILSVRC_evaluate_bbox.m l. 63, generate_bbox.m l. 15
PROGRAM_DEFAULT_LEVELS = (30, 90, 150)  # dt_box.cpp l. 49
DT_LEVEL = 10  # dt_box.cpp l. 60: scaled distance must exceed this
BORDER = 5  # dt_box.cpp l. 89-92
_BIG = 1e20  # dt.c's "INF": the value a kept pixel starts from
_INT_MIN = -(2**31)


def _limit(v: int, lo: int, hi: int) -> int:
    """``dt_box.cpp``'s ``LIMIT``: ``lo`` below ``lo``, else ``hi`` above ``hi`` (even when
    ``hi < lo``)."""
    return lo if v < lo else (hi if v > hi else v)


def _c_round_to_int(s: np.ndarray) -> np.ndarray:
    """``(int)(s + 0.5)`` on x86-64: truncation, out-of-range values give ``INT_MIN``."""
    t = s + 0.5
    inside = (t > -(2.0**31) - 1) & (t < 2.0**31)
    return np.where(inside, np.trunc(np.where(inside, t, 0.0)), _INT_MIN).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _envelope_1d(f: tuple[float, ...]) -> tuple[float, ...]:
    """Squared-distance transform of one line of samples ``f`` (lower envelope of the
    parabolas ``(q - p)^2 + f[p]``; Felzenszwalb and Huttenlocher, "Distance Transforms of
    Sampled Functions", 2012), with the same float64 operations as ``dt.c``."""
    n = len(f)
    v = [0] * n
    z = [0.0] * (n + 1)
    k = 0
    z[0], z[1] = -_BIG, _BIG
    for q in range(1, n):
        while True:
            p = v[k]
            s = ((f[q] + q * q) - (f[p] + p * p)) / float(2 * q - 2 * p)
            if s > z[k]:
                break
            k -= 1
        k += 1
        v[k], z[k], z[k + 1] = q, s, _BIG
    out = [0.0] * n
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        out[q] = (q - v[k]) ** 2 + f[v[k]]
    return tuple(out)


def _all_kept_distances(h: int, w: int) -> np.ndarray:
    """``dt.c``'s squared distances when every pixel is kept (no zero to measure from):
    the columns are all alike, and then each row is constant, so a handful of 1-D passes
    reproduce the program's float64 values (they differ from ``1e20`` by rounding only)."""
    col = _envelope_1d((_BIG,) * h)
    rows = [_envelope_1d((c,) * w) for c in col]
    return np.asarray(rows, np.float64)


def squared_distances(kept: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each kept pixel to the nearest dropped one (float64,
    0 on dropped pixels), as ``dt.c``'s ``dt`` computes it for a 0 / ``1e20`` image."""
    from scipy import ndimage

    kept = np.asarray(kept, bool)
    h, w = kept.shape
    if kept.all():
        return _all_kept_distances(h, w)
    if not kept.any():
        return np.zeros((h, w), np.float64)
    # With one dropped pixel anywhere every distance is an exact small integer, so the
    # exact transform equals the program's (its envelope arithmetic is exact there).
    iy, ix = ndimage.distance_transform_edt(kept, return_distances=False, return_indices=True)
    yy, xx = np.mgrid[:h, :w]
    return ((iy - yy) ** 2 + (ix - xx) ** 2).astype(np.float64)


def eroded(grey: np.ndarray, level: int) -> np.ndarray:
    """Steps 2-3 for one level: uint8 mask (255 kept) of ``grey > level`` eroded by the
    scaled distance transform (``dt_box.cpp`` l. 58-60)."""
    kept = np.asarray(grey) > level
    d = np.sqrt(squared_distances(kept))
    lo, hi = float(d.min()), float(d.max())
    if lo == hi:  # double_to_image leaves the thresholded image as it was
        image = np.where(kept, 255, 0)
    else:
        image = np.clip(_c_round_to_int(d * (255.0 / (hi - lo))), 0, 255)
    return np.where(image > DT_LEVEL, 255, 0).astype(np.uint8)


def rectangles(grey: np.ndarray, levels: Sequence[int] = RELEASED_LEVELS) -> list[tuple]:
    """The program's output: ``[(x, y, w, h), ...]`` after ranking and merging.

    ``grey``: uint8 ``[H, W]``. ``levels``: three increasing integers in (0, 255), as the
    program requires (otherwise it silently keeps its defaults; here a ``ValueError``).
    """
    import cv2

    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8 or min(grey.shape) < 1:
        raise ValueError(f"grey must be a uint8 [H, W] image, got {grey.dtype} {grey.shape}")
    levels = tuple(int(t) for t in levels)
    if len(levels) != 3 or not 0 < levels[0] < levels[1] < levels[2] < 255:
        raise ValueError(f"levels must be 3 increasing integers in (0, 255), got {levels}")
    h, w = grey.shape
    rects: list[tuple[int, int, int, int]] = []
    for level in levels:
        contours, _ = cv2.findContours(eroded(grey, level), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            x, y, bw, bh = (int(v) for v in cv2.boundingRect(c))
            rects.append(
                (
                    _limit(x, 0, w - BORDER),
                    _limit(y, 0, h - BORDER),
                    _limit(bw, 0, w - x - BORDER),
                    _limit(bh, 0, h - y - BORDER),
                )
            )
    return _merge(introsort(rects, key=lambda r: r[2] * r[3]))


def introsort(items: list, key) -> list:
    """Sort by ``key`` descending in the order libstdc++'s ``std::sort`` leaves equal keys.

    ``std::sort`` (``dt_box.cpp`` l. 163) is not stable: ranges over 16 elements are
    partitioned around the median of three (second, middle, last element) with an
    unguarded Hoare partition, recursing on the right part and looping on the left, then
    one insertion sort (stable) finishes. Equal-area rectangles therefore end up in the
    program's order only if that is reproduced; it is here, step for step. Past the
    ``2 log2(n)`` depth limit libstdc++ switches to heap sort; this function then falls
    back to a stable sort of that range (not reached on blob-like heatmaps).
    """
    a = list(items)
    keys = [key(x) for x in a]

    def less(i: int, j: int) -> bool:  # comp(a[i], a[j]): a[i] sorts before a[j]
        return keys[i] > keys[j]

    def swap(i: int, j: int) -> None:
        a[i], a[j] = a[j], a[i]
        keys[i], keys[j] = keys[j], keys[i]

    def median_to_first(result: int, x: int, y: int, z: int) -> None:
        if less(x, y):
            if less(y, z):
                swap(result, y)
            elif less(x, z):
                swap(result, z)
            else:
                swap(result, x)
        elif less(x, z):
            swap(result, x)
        elif less(y, z):
            swap(result, z)
        else:
            swap(result, y)

    def partition(lo: int, hi: int, pivot: int) -> int:
        while True:
            while less(lo, pivot):
                lo += 1
            hi -= 1
            while less(pivot, hi):
                hi -= 1
            if not lo < hi:
                return lo
            swap(lo, hi)
            lo += 1

    def loop(lo: int, hi: int, depth: int) -> None:
        while hi - lo > 16:
            if depth == 0:
                order = sorted(range(lo, hi), key=lambda i: -keys[i])
                a[lo:hi], keys[lo:hi] = [a[i] for i in order], [keys[i] for i in order]
                return
            depth -= 1
            median_to_first(lo, lo + 1, lo + (hi - lo) // 2, hi - 1)
            cut = partition(lo + 1, hi, lo)
            loop(cut, hi, depth)
            hi = cut

    n = len(a)
    if n > 1:
        loop(0, n, 2 * (n.bit_length() - 1))
    # The final insertion sort moves an element only past strictly smaller keys: stable.
    order = sorted(range(n), key=lambda i: -keys[i])
    return [a[i] for i in order]


def _merge(rects: list[tuple]) -> list[tuple]:
    """Step 5, one pass per kept rectangle ``i`` over the later ones, vectorised.

    In the released loop a rectangle ``j > i`` is dropped when its overlap with ``i``
    (``(x, y)`` to ``(x + w, y + h)``) exceeds ``int(max(area_i, area_j) * 0.5)``, except
    the one right after a dropped one, which ``erase`` moved under the loop's ``++j``.
    """
    r = np.asarray(rects, np.int64).reshape(-1, 4)
    i = 0
    while i < len(r) - 1:
        a, rest = r[i], r[i + 1 :]
        area = rest[:, 2] * rest[:, 3]
        limit = np.trunc(np.maximum(a[2] * a[3], area) * 0.5)
        ox = np.minimum(a[0] + a[2], rest[:, 0] + rest[:, 2]) - np.maximum(a[0], rest[:, 0])
        oy = np.minimum(a[1] + a[3], rest[:, 1] + rest[:, 3]) - np.maximum(a[1], rest[:, 1])
        big = np.maximum(ox, 0) * np.maximum(oy, 0) > limit
        drop, last = [], -2
        for k in np.flatnonzero(big):
            if k != last + 1:  # the one after a dropped rectangle is stepped over
                drop.append(k)
                last = k
        if drop:
            r = np.delete(r, np.asarray(drop) + i + 1, axis=0)
        i += 1
    return [tuple(int(v) for v in row) for row in r]


def rect_to_box(rect: Sequence[int]) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` -> ``(x0, y0, x1, y1)`` = ``(x, y, x + w, y + h)`` with the corners
    ordered, as the released evaluation reads the program's output."""
    x, y, w, h = (int(v) for v in rect)
    return (min(x, x + w), min(y, y + h), max(x, x + w), max(y, y + h))


def released_boxes(grey: np.ndarray, levels: Sequence[int] = RELEASED_LEVELS) -> np.ndarray:
    """``bbox1`` and ``bbox2`` of one grey heatmap: int32 ``[2, 4]``.

    Fewer than two rectangles: ``bbox2`` repeats ``bbox1``; none: both ``(0, 0, 0, 0)``.
    """
    rects = rectangles(grey, levels)
    out = np.zeros((2, 4), np.int32)
    if rects:
        out[0] = rect_to_box(rects[0])
        out[1] = rect_to_box(rects[1] if len(rects) > 1 else rects[0])
    return out
