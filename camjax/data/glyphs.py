"""Drawing of the embedded ``camjax_shapes`` scenes in numpy (no per-pixel Python loops).

One scene: a textured background (smooth noise, stripes, sensor noise), 1-4 irregular
distractor blobs and strokes that belong to no class, then one object whose silhouette is
the class, with random colour, scale, aspect, tilt (up to 30 degrees) and position
(sometimes cut by the image border). The object is rendered with 2x2 supersampling, so
its edges are antialiased; its mask is the pixels it covers by at least half and its box
is the box of that mask, so mask and box agree by construction.
"""

from __future__ import annotations

import cv2
import numpy as np

# Objects are tilted by at most this much (radians): upright enough that a small CNN
# learns the classes in minutes, so what the demo measures is localisation.
MAX_TILT = np.deg2rad(30.0)

CLASS_NAMES = (
    "circle", "square", "triangle", "star", "plus",
    "ring", "crescent", "tee", "arrow", "heart",
)  # fmt: skip


def _polygon(u: np.ndarray, v: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of every (u, v) against vertices ``pts [n, 2]``."""
    inside = np.zeros(u.shape, bool)
    for (ua, va), (ub, vb) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        crosses = (va > v) != (vb > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ua + (v - va) * (ub - ua) / (vb - va)
        inside ^= crosses & (u < at)
    return inside


def _regular(n: int, radii, phase: float = -np.pi / 2) -> np.ndarray:
    ang = phase + np.arange(n) * 2 * np.pi / n
    r = np.resize(np.asarray(radii, float), n)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


_TRIANGLE = _regular(3, [1.0])
_STAR = _regular(10, [1.0, 0.42])


def silhouette(class_id: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of local coordinates (u right, v down, object radius 1) in class shape."""
    r2 = u * u + v * v
    au, av = np.abs(u), np.abs(v)
    if class_id == 0:  # circle
        return r2 <= 1.0
    if class_id == 1:  # square
        return np.maximum(au, av) <= 0.8
    if class_id == 2:  # equilateral triangle
        return _polygon(u, v - 0.2, _TRIANGLE)
    if class_id == 3:  # five-pointed star
        return _polygon(u, v, _STAR)
    if class_id == 4:  # plus
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if class_id == 5:  # ring
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if class_id == 6:  # crescent
        return (r2 <= 1.0) & ((u - 0.5) ** 2 + v * v >= 0.8**2)
    if class_id == 7:  # tee glyph
        return ((au <= 0.95) & (v >= -0.95) & (v <= -0.45)) | ((au <= 0.24) & (av <= 0.95))
    if class_id == 8:  # arrow: shaft plus head
        shaft = (av <= 0.2) & (u >= -0.95) & (u <= 0.1)
        head = (u >= 0.0) & (u <= 0.95) & (av <= 0.75 * (0.95 - u) / 0.95)
        return shaft | head
    if class_id == 9:  # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0
        x, y = 1.15 * u, -1.15 * v + 0.1
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    raise ValueError(f"class_id must be in [0, {len(CLASS_NAMES)}), got {class_id}")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a ``cells x cells`` random grid, bicubic-upsampled."""
    grid = rng.random((cells, cells)).astype(np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = _smooth_noise(rng, size, int(rng.integers(3, 9)))
    if rng.random() < 0.6:  # stripes / waves
        th, f = rng.uniform(0, np.pi), rng.uniform(0.05, 0.25)
        stripes = 0.5 + 0.5 * np.sin(f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6))
        w = rng.uniform(0.2, 0.7)
        t = (1 - w) * t + w * stripes
    fine = _smooth_noise(rng, size, size // 3)
    t = 0.8 * t + 0.2 * fine
    # Texture contrast (|c1 - c0| <= 45 per channel) stays below the object's contrast
    # (>= 90, ``_contrasting_colour``): the silhouette is the strongest edge structure.
    c0 = rng.uniform(20, 235, size=3).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-45, 45, size=3), 0, 255).astype(np.float32)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    return img


def _distractors(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Irregular blobs (random low-order polar radius) and strokes, painted in place."""
    size = img.shape[0]
    for _ in range(count):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        cx, cy = rng.uniform(0, size, 2)
        blob = rng.random() < 0.7
        if blob:
            rad = rng.uniform(0.05, 0.14) * size
            amps = rng.uniform(0.12, 0.3, 3)
            phases = rng.uniform(0, 2 * np.pi, 3)
            reach = rad * (1.0 + amps.sum())
        else:
            th, length = rng.uniform(0, np.pi), rng.uniform(0.3, 0.8) * size
            width, bend = rng.uniform(1.0, 2.5), rng.uniform(-0.02, 0.02)
            reach = length / 2 + width + abs(bend) * length**2 / 4
        # Only the window the shape can reach is evaluated.
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dx, dy = xx - cx, yy - cy
        if blob:
            ang = np.arctan2(dy, dx)
            rr = np.ones_like(ang)
            for k, a, p in zip((2, 3, 5), amps, phases, strict=True):
                rr += a * np.cos(k * ang + p)  # lumpy, not any class's symmetric outline
            region = np.hypot(dx, dy) <= rad * rr
        else:
            along = dx * np.cos(th) + dy * np.sin(th)
            across = -dx * np.sin(th) + dy * np.cos(th)
            region = (np.abs(along) <= length / 2) & (np.abs(across - bend * along**2) <= width)
        img[y0:y1, x0:x1][region] = colour


def render(rng: np.random.Generator, size: int, class_id: int):
    """One scene -> (image uint8 [S, S, 3], mask uint8 [S, S] 0/1, box (x0, y0, x1, y1)).

    Inclusive pixel box of the mask. Retries the placement until at least 40% of the
    object (and at least 12 pixels) is inside the image.
    """
    img = _background(rng, size)
    _distractors(rng, img, int(rng.integers(1, 5)))
    # 2x2 supersampling grid: sub-pixel centres at (i + 0.25, i + 0.75).
    sub = (np.arange(2 * size, dtype=np.float32) + 0.5) / 2.0
    sy, sx = np.meshgrid(sub, sub, indexing="ij")
    border = True
    for attempt in range(50):
        radius = rng.uniform(0.2, 0.34) * size if border else 0.3 * size
        aspect = np.sqrt(rng.uniform(0.75, 1.33))
        theta = rng.uniform(-MAX_TILT, MAX_TILT)
        if border and rng.random() < 0.15:  # straddle a border
            cx, cy = rng.uniform(0, size, 2)
            side = int(rng.integers(4))
            edge = rng.uniform(-0.3, 0.5) * radius
            if side == 0:
                cx = edge
            elif side == 1:
                cx = size - edge
            elif side == 2:
                cy = edge
            else:
                cy = size - edge
        else:
            cx, cy = rng.uniform(radius * 0.9, size - radius * 0.9, 2)
        dx, dy = sx - cx, sy - cy
        c, s = np.cos(theta), np.sin(theta)
        u = (c * dx + s * dy) / (radius * aspect)
        v = (-s * dx + c * dy) * aspect / radius
        cover = silhouette(class_id, u, v).astype(np.float32)
        cover = cover.reshape(size, 2, size, 2).mean(axis=(1, 3))
        mask = cover >= 0.5
        if mask.sum() >= 12 and cover.sum() >= 0.4 * _full_area(class_id, radius):
            break
        if attempt == 48:  # last try: fully inside, so the loop always ends with an object
            border = False
    colour = _contrasting_colour(rng, img, mask)
    shade = 0.85 + 0.3 * _smooth_noise(rng, size, 4)[..., None]
    obj = np.clip(colour * shade, 0, 255)
    img = img * (1 - cover[..., None]) + obj * cover[..., None]
    img += rng.normal(0, rng.uniform(1, 4), img.shape).astype(np.float32)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask.astype(np.uint8), box


def _unit_area(class_id: int) -> float:
    """Area of the class silhouette at radius 1, by a 400x400 grid over [-1, 1]^2."""
    g = (np.arange(400) + 0.5) / 200.0 - 1.0
    u, v = np.meshgrid(g, g)
    return float(silhouette(class_id, u, v).mean() * 4.0)


_UNIT_AREAS = tuple(_unit_area(k) for k in range(len(CLASS_NAMES)))


def _full_area(class_id: int, radius: float) -> float:
    return _UNIT_AREAS[class_id] * radius**2


def _contrasting_colour(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray):
    """A random colour at least 90 (RGB distance) from the background under the object."""
    under = img[mask].mean(axis=0)
    best, best_d = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        d = float(np.linalg.norm(colour - under))
        if d >= 90.0:
            return colour
        if d > best_d:
            best, best_d = colour, d
    return best
