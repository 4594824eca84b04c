"""Seeded grey heatmaps for the ``released`` protocol tests (integer arithmetic only, so
they are bitwise the same on every machine and numpy version: PCG64 integers)."""

from __future__ import annotations

import numpy as np


def heatmap(seed: int, speckle: int = 6) -> np.ndarray:
    """A uint8 ``[H, W]`` map (24 <= H, W < 160) of 1-5 cones, rings (a hole in the middle)
    or plateaus, some cut by the border, plus uniform noise in ``[0, speckle)``, scaled so
    that its maximum is 255 (as the released heatmaps are, divided by their max)."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(24, 160, size=2))
    yy, xx = np.mgrid[:h, :w].astype(np.int64)
    acc = np.zeros((h, w), np.int64)
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = int(rng.integers(-h // 4, h + h // 4)), int(rng.integers(-w // 4, w + w // 4))
        ry, rx = int(rng.integers(2, h // 2 + 3)), int(rng.integers(2, w // 2 + 3))
        peak = int(rng.integers(60, 256))
        d = ((yy - cy) ** 2 * 256) // (ry * ry) + ((xx - cx) ** 2 * 256) // (rx * rx)
        kind = int(rng.integers(0, 3))
        if kind == 0:  # cone
            acc += np.maximum(0, peak * 256 - peak * d) // 256
        elif kind == 1:  # ring
            acc += np.maximum(0, peak - peak * np.abs(d - 160) // 96)
        else:  # plateau
            acc += np.where(d < 256, peak, 0)
    acc += rng.integers(0, speckle, size=(h, w))
    return (acc * 255 // max(int(acc.max()), 1)).astype(np.uint8)
