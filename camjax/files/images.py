"""Image files to model inputs, with bounded memory and without TensorFlow.

Decoding (Pillow): EXIF orientation applied, alpha dropped, palette/CMYK/grayscale to
RGB, 16-bit scaled to 8-bit. Resizing: the whole image to ``S x S`` (aspect not kept,
as the evaluation pipeline does), bilinear, antialiased when downscaling (Pillow's
filter widened by the scale factor, as ``tf.image.resize(..., antialias=True)`` and the
WSOL benchmark's PIL resize do); then the model's normalisation
(:data:`NORMALIZATIONS`, the table ``camjax.data.preprocess`` reads too).

Memory budget (documented in the README): a JPEG is decoded at the smallest DCT scale
(1/2, 1/4, 1/8) that keeps both sides at least ``2 S`` (Pillow's ``draft``); any image
whose decoded size exceeds ``max_pixels`` is refused with the reason rather than decoded
(a 12000 x 12000 PNG needs 432 MB as RGB); and a :class:`PixelBudget` shared by the
decoding threads lets at most ``max_pixels`` pixels (about ``4 * max_pixels`` bytes) be
decoded at once, however many threads there are.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

# ImageNet RGB statistics in [0, 1] units (torchvision / timm convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The one pixel-normalisation table, for the numpy path here and the tf.data path
# (``camjax.data.preprocess``): ``data_cfg.normalization`` -> ``(scale, mean, std)``,
# model input ``= (pixels / scale - mean) / std`` per channel, pixels in [0, 255].
NORMALIZATIONS: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (255.0, IMAGENET_MEAN, IMAGENET_STD),
    "minus127_div128": (1.0, (127.0,) * 3, (128.0,) * 3),  # EfficientNet(-Lite) TF-slim
    "unit": (255.0, (0.0,) * 3, (1.0,) * 3),
}
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000; the decode budget, see the module docstring

# EXIF orientation tag (0x0112) -> the transpose that shows the image upright.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class TooLarge(ValueError):
    """An image above the pixel limit (refused before decoding)."""


def normalize(images: np.ndarray, mode: str) -> np.ndarray:
    """``[..., 3]`` pixels in [0, 255] -> float32 model input by ``NORMALIZATIONS[mode]``."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; known: {', '.join(NORMALIZATIONS)}")
    scale, mean, std = NORMALIZATIONS[mode]
    x = np.asarray(images, np.float32) / np.float32(scale)
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def input_range(mode: str) -> tuple[float, float]:
    """The range of ``normalize(x, mode)`` over pixels in [0, 255] (both ends included)."""
    lo = normalize(np.zeros((1, 3)), mode)
    hi = normalize(np.full((1, 3), 255.0), mode)
    return float(lo.min()), float(hi.max())


class PixelBudget:
    """At most ``limit`` pixels decoded at once across threads (one image always may)."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.used = 0
        self._cv = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cv:
            while self.used and self.used + n > self.limit:
                self._cv.wait()
            self.used += n

    def release(self, n: int) -> None:
        with self._cv:
            self.used -= n
            self._cv.notify_all()


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image, 1 where there is none: the one rule
    of training, evaluation and extraction (``camjax.data.headers``)."""
    # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the
    # pixels; only EXIF found in the header is used for PNGs.
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF: keep the pixels as stored
        return 1


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, np.int64)
        arr = (arr >> 8) if arr.max() > 255 else arr
        img = Image.fromarray(arr.astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def read_image(
    path: str,
    size: tuple[int, int] | int | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget: PixelBudget | None = None,
    keep_aspect: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(uint8 [h, w, 3], (H, W))``: the upright image resized, and its upright size.

    ``size``: ``S`` or ``(h, w)`` output size; with ``keep_aspect`` the image is scaled
    to fit inside ``size`` instead (never enlarged); ``None``: the original size. Raises
    :class:`TooLarge` above ``max_pixels`` decoded pixels, ``OSError``/``ValueError`` for
    unreadable files.
    """
    with Image.open(path) as img:
        w0, h0 = img.size
        if img.format != "JPEG" and w0 * h0 > max_pixels:  # no reduced decode: refuse now
            raise TooLarge(
                f"{w0}x{h0} image needs {w0 * h0 / 1e6:.1f} MP decoded, above the "
                f"{max_pixels / 1e6:.0f} MP limit (--max-megapixels)"
            )
        orient = exif_orientation(img)
        upright = (w0, h0) if orient < 5 else (h0, w0)  # (W, H) as shown
        if size is None:
            want = upright
        elif keep_aspect:
            sh, sw = (size, size) if isinstance(size, int) else size
            scale = min(1.0, sw / upright[0], sh / upright[1])
            want = (max(1, round(upright[0] * scale)), max(1, round(upright[1] * scale)))
        else:
            sh, sw = (size, size) if isinstance(size, int) else size
            want = (sw, sh)
        stored = want if orient < 5 else (want[1], want[0])  # output size before rotating
        if img.format == "JPEG" and size is not None:
            img.draft("RGB", (2 * stored[0], 2 * stored[1]))  # DCT-domain 1/2..1/8 scaling
        n = img.size[0] * img.size[1]
        if n > max_pixels:
            raise TooLarge(
                f"{w0}x{h0} image needs {n / 1e6:.1f} MP decoded, above the "
                f"{max_pixels / 1e6:.0f} MP limit (--max-megapixels)"
            )
        if budget is not None:
            budget.acquire(n)
        try:
            img.load()  # truncated files fail here
            rgb = _to_rgb(img)
            if rgb.size != stored:
                rgb = rgb.resize(stored, Image.Resampling.BILINEAR, reducing_gap=None)
            else:
                rgb = rgb.copy()
        finally:
            if budget is not None:
                budget.release(n)
    if orient in _ORIENT:
        rgb = rgb.transpose(_ORIENT[orient])
    arr = np.asarray(rgb, np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ValueError(f"empty or malformed image {arr.shape}")
    return arr, (int(upright[1]), int(upright[0]))


def resize_array(
    arr: np.ndarray, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` for an already decoded uint8 ``[h, w, 3]`` image."""
    h, w = arr.shape[:2]
    if h * w > max_pixels:
        raise TooLarge(f"{w}x{h} image above the {max_pixels / 1e6:.0f} MP limit")
    img = Image.fromarray(np.ascontiguousarray(arr, np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, np.uint8), (int(h), int(w))


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "resize_array",
    "NORMALIZATIONS",
    "PixelBudget",
    "TooLarge",
    "exif_orientation",
    "input_range",
    "normalize",
    "read_image",
]
