"""Batches from a user's own image files, for extraction (``camjax.extract``).

Any file Pillow can read (JPEG, PNG, BMP, GIF, WebP, TIFF; grayscale, palette, RGBA,
CMYK, 16-bit) becomes RGB: EXIF orientation applied, alpha dropped, 16-bit scaled to
8-bit. The image is resized to ``image_size`` squared with bilinear interpolation (half-
pixel centres, no antialiasing: OpenCV ``INTER_LINEAR``, the same resampling as the eval
pipeline's ``tf.image.resize(..., antialias=False)``) and normalised like the model's
training data. Files that cannot be read (truncated, not an image) are skipped and
logged; ``FolderIterator.skipped`` lists them with the reason after (or during) the pass.
"""

from __future__ import annotations

import concurrent.futures
import glob
import logging
import os
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps

from camjax.data import preprocess

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_images(paths_or_glob: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Files named by a glob, a directory (its image files, sorted), a file, or a list."""
    items = [paths_or_glob] if isinstance(paths_or_glob, str | os.PathLike) else paths_or_glob
    out: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            names = sorted(os.listdir(item))
            out += [
                os.path.join(item, n)
                for n in names
                if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, n))
            ]
        elif os.path.isfile(item):
            out.append(item)
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"no such file, directory or glob match: {item!r}")
            out += [m for m in matches if os.path.isfile(m)]
    return out


def read_rgb(path: str) -> np.ndarray:
    """``uint8 [h, w, 3]``; raises ``OSError``/``ValueError`` for unreadable files."""
    with Image.open(path) as img:
        img.load()  # truncated files fail here, not later
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF: keep the pixels as stored
            pass
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, np.int64)
            arr = (arr >> 8) if arr.max() > 255 else arr
            img = Image.fromarray(arr.astype(np.uint8), "L")
        arr = np.asarray(img.convert("RGB"), np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image {arr.shape}")
    return arr


class FolderIterator:
    """Iterable of batches ``image [B,S,S,3] float32, valid [B], path [B], orig_size [B,2]``.

    ``orig_size`` is ``(height, width)`` of the file's image; the last batch is padded
    (``valid`` False, ``path`` ""). Unreadable files do not take a batch slot.
    """

    def __init__(
        self,
        paths_or_glob,
        *,
        image_size: int,
        normalization: str,
        batch_size: int,
        num_threads: int = 4,
    ):
        if batch_size < 1 or image_size < 1:
            raise ValueError(
                f"batch_size and image_size must be >= 1, got {batch_size}, {image_size}"
            )
        if normalization not in preprocess.NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; known: "
                f"{', '.join(preprocess.NORMALIZATIONS)}"
            )
        self.paths = list_images(paths_or_glob)
        self.image_size = int(image_size)
        self.normalization = normalization
        self.batch_size = int(batch_size)
        self.num_threads = int(num_threads)
        self.skipped: list[tuple[str, str]] = []

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def _load(self, path: str):
        try:
            arr = read_rgb(path)
        except Exception as e:  # any decoder failure means "unreadable", never a crash
            return path, None, f"{type(e).__name__}: {e}"
        s = self.image_size
        resized = cv2.resize(arr.astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
        return path, (resized, arr.shape[:2]), None

    def _emit(self, rows) -> dict:
        b, s = self.batch_size, self.image_size
        image = np.zeros((b, s, s, 3), np.float32)
        orig = np.zeros((b, 2), np.int32)
        paths = np.full((b,), "", dtype=object)
        for i, (path, (img, hw)) in enumerate(rows):
            image[i], orig[i], paths[i] = img, hw, path
        import tensorflow as tf

        image = preprocess.normalize(tf.constant(image), self.normalization).numpy()
        image[len(rows) :] = 0.0
        return {"image": image, "valid": np.arange(b) < len(rows), "path": paths, "orig_size": orig}

    def __iter__(self) -> Iterator[dict]:
        self.skipped = []
        rows = []
        with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool:
            for path, loaded, err in pool.map(self._load, self.paths):
                if loaded is None:
                    logging.warning("skipping unreadable image %s (%s)", path, err)
                    self.skipped.append((path, err))
                    continue
                rows.append((path, loaded))
                if len(rows) == self.batch_size:
                    yield self._emit(rows)
                    rows = []
        if rows:
            yield self._emit(rows)
        if self.skipped:
            logging.warning("skipped %d unreadable of %d files", len(self.skipped), len(self.paths))


def folder_iterator(
    paths_or_glob, *, image_size: int, normalization: str, batch_size: int
) -> FolderIterator:
    """Batches of the images under ``paths_or_glob`` (see ``FolderIterator``)."""
    return FolderIterator(
        paths_or_glob, image_size=image_size, normalization=normalization, batch_size=batch_size
    )
