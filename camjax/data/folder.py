"""Batches from a user's own image files (``camjax.data.folder_iterator``).

Reading, resizing and normalisation are those of the extraction path
(:mod:`camjax.files.images`: EXIF orientation, alpha dropped, any Pillow mode to RGB,
whole image to ``image_size`` squared, bilinear, antialiased when downscaling, JPEG
decoded downscaled, a pixel limit); listing is :func:`camjax.files.inputs.list_inputs`.
Unreadable inputs are skipped and logged; ``FolderIterator.skipped`` lists them with the
reason after (or during) the pass. Read-ahead is bounded (two batches).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from camjax.files import images as images_lib
from camjax.files.inputs import IMAGE_EXTENSIONS, list_inputs
from camjax.files.prefetch import ordered_map


def read_rgb(path: str, max_side: int | None = None) -> np.ndarray:
    """``uint8 [h, w, 3]`` upright (EXIF applied), at most ``max_side`` a side if given;
    raises ``OSError``/``ValueError`` for unreadable files."""
    return images_lib.read_image(path, max_side, keep_aspect=True)[0]


class FolderIterator:
    """Iterable of batches ``image [B,S,S,3] float32, valid [B], path [B], orig_size [B,2]``.

    ``orig_size`` is ``(height, width)`` of the upright image; the last batch is padded
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
        max_pixels: int = images_lib.DEFAULT_MAX_PIXELS,
    ):
        if batch_size < 1 or image_size < 1:
            raise ValueError(
                f"batch_size and image_size must be >= 1, got {batch_size}, {image_size}"
            )
        if normalization not in images_lib.NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; known: "
                f"{', '.join(images_lib.NORMALIZATIONS)}"
            )
        self.entries = list_inputs(paths_or_glob).entries
        self.paths = [p for p, _ in self.entries]
        self.image_size = int(image_size)
        self.normalization = normalization
        self.batch_size = int(batch_size)
        self.num_threads = int(num_threads)
        self.max_pixels = int(max_pixels)
        self.skipped: list[tuple[str, str]] = []

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def _load(self, entry):
        path, why = entry
        if why is not None:
            raise FileNotFoundError(why)
        return images_lib.read_image(path, self.image_size, max_pixels=self.max_pixels)

    def _emit(self, rows) -> dict:
        b, s = self.batch_size, self.image_size
        image = np.zeros((b, s, s, 3), np.float32)
        orig = np.zeros((b, 2), np.int32)
        paths = np.full((b,), "", dtype=object)
        for i, (path, (img, hw)) in enumerate(rows):
            image[i] = images_lib.normalize(img, self.normalization)
            orig[i], paths[i] = hw, path
        return {"image": image, "valid": np.arange(b) < len(rows), "path": paths, "orig_size": orig}

    def __iter__(self) -> Iterator[dict]:
        self.skipped = []
        rows = []
        window = 2 * self.batch_size + self.num_threads
        for (path, _), loaded, err in ordered_map(
            self._load, self.entries, threads=self.num_threads, window=window
        ):
            if err is not None:
                why = str(err) if isinstance(err, FileNotFoundError) else (
                    f"{type(err).__name__}: {err}"
                )  # fmt: skip
                logging.warning("skipping unreadable image %r (%s)", path, why)
                self.skipped.append((path, why))
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


__all__ = ["IMAGE_EXTENSIONS", "FolderIterator", "folder_iterator", "read_rgb"]
