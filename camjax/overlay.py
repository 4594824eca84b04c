"""Heat-map overlays of CAMs on images, with optional boxes, as uint8 arrays and PNGs.

Host-side (NumPy, Matplotlib colour maps, Pillow): this is for looking at results, not
for the jitted path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]


def _as_uint8_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(
            "a float image must hold finite values in [0, 1] (pass the raw image, not the "
            f"model-normalised one); got range [{np.nanmin(image)}, {np.nanmax(image)}]"
        )
    return np.round(image * 255.0).astype(np.uint8)


def _resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if cam.shape == size:
        return cam
    resized = Image.fromarray(cam.astype(np.float32)).resize(
        (size[1], size[0]), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, np.float32)


def overlay(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    boxes: np.ndarray | None = None,
    box_colors: Color | Sequence[Color] = (0, 255, 0),
    box_width: int = 2,
) -> np.ndarray:
    """Blend a colour-mapped CAM over ``image``; returns ``uint8 [H, W, 3]``.

    ``out = round((1 - alpha) * image + alpha * 255 * colormap(cam)[:3])`` per pixel and
    channel, with ``image`` in 0..255 (uint8 as is; float images in [0, 1] are scaled by
    255 and rounded first). ``cam`` is ``[h, w]`` in [0, 1] (e.g. one map from
    :func:`camjax.extract`); values are clipped to [0, 1], non-finite values count as 0,
    and a map of another size is resized bilinearly to the image. ``boxes`` (``[4]`` or
    ``[n, 4]``, inclusive ``(x0, y0, x1, y1)`` pixels) are drawn as outlines
    ``box_width`` pixels thick inside each box, clipped to the image; ``box_colors`` is one
    RGB colour or one per box.
    """
    import matplotlib

    img = _as_uint8_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be one map [h, w], got shape {cam.shape}")
    cam = np.clip(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    cam = np.clip(_resize_map(cam, img.shape[:2]), 0.0, 1.0)
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError as e:
        raise ValueError(f"unknown matplotlib colormap {colormap!r}") from e
    heat = cmap(cam)[..., :3] * 255.0
    out = np.round((1.0 - alpha) * img.astype(np.float64) + alpha * heat)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if boxes is not None:
        draw_boxes(out, boxes, box_colors, box_width)
    return out


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    colors: Color | Sequence[Color] = (0, 255, 0),
    width: int = 2,
) -> np.ndarray:
    """Draw inclusive ``(x0, y0, x1, y1)`` box outlines ``width`` pixels thick, inside each
    box, into ``image`` (in place); returns it. Parts outside the image are not drawn."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    if not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes must be integer pixel corners, got dtype {boxes.dtype}")
    if width < 1:
        raise ValueError(f"box width must be >= 1, got {width}")
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    if len(colors) not in (1, len(boxes)):
        raise ValueError(f"need 1 or {len(boxes)} box colours, got {len(colors)}")
    yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box {i} has x1 < x0 or y1 < y0: {(x0, y0, x1, y1)}")
        # Outline = box minus its interior shrunk by `width`; an edge that lies outside
        # the image is not drawn (no fake edge along the image border).
        outer = (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)
        inner = (yy >= y0 + width) & (yy <= y1 - width) & (xx >= x0 + width) & (xx <= x1 - width)
        image[outer & ~inner] = colors[i % len(colors)]
    return image


def save_png(image: np.ndarray, path: str | os.PathLike) -> str:
    """Write a ``uint8 [H, W, 3]`` (or ``[H, W]``) array as a PNG; returns the path."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"save_png takes uint8 [H, W(, 3)], got {image.dtype} {image.shape}")
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return path


def labelled_panels(
    image: np.ndarray,
    cams: Sequence[np.ndarray],
    boxes: np.ndarray,
    labels: Sequence[str],
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """One overlay per map side by side, each with its box (green) and its label written
    in white on a black band above it (readable on any image); ``uint8 [h + band, n*w, 3]``.

    ``image`` ``uint8 [h, w, 3]``, ``cams``: n maps (any size, resized to the image),
    ``boxes`` ``[n, 4]`` in the image's pixels, ``labels``: n strings.
    """
    from PIL import Image, ImageDraw, ImageFont

    img = _as_uint8_image(image)
    boxes = np.asarray(boxes).reshape(-1, 4)
    if not len(cams) == len(boxes) == len(labels):
        raise ValueError(f"need one box and label per map, got {len(cams)}, {len(boxes)}, "
                         f"{len(labels)}")  # fmt: skip
    h, w = img.shape[:2]
    band = max(12, min(40, max(h, w) // 16))
    width = max(1, min(h, w) // 150)
    try:
        font = ImageFont.load_default(size=int(band * 0.75))
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    out = np.zeros((h + band, w * len(cams), 3), np.uint8)
    for i, (cam, box) in enumerate(zip(cams, boxes, strict=True)):
        out[band:, i * w : (i + 1) * w] = overlay(
            img, cam, alpha=alpha, boxes=box[None], box_width=width
        )
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        draw.text((i * w + 3, 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


__all__ = ["draw_boxes", "labelled_panels", "overlay", "save_png"]
