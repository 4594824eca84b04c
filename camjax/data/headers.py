"""Image headers of a ``folder`` data set, read once when the folder is indexed.

For each image file: its EXIF orientation and upright size, so that training and
evaluation apply the same orientation rule as extraction (:mod:`camjax.files.images`:
EXIF applied, as PIL's ``ImageOps.exif_transpose`` does), or the reason TensorFlow would
fail to decode it, so a bad file is left out of the data set (named and counted) instead
of stopping a run when its batch comes up.

The checks are cheap (no pixels decoded for JPEG and PNG): Pillow identifies the format
from the header (a text file named ``.jpg`` and an empty file fail here); a JPEG must
hold its end-of-image marker after the first scan (entropy-coded data never contains
``FF D9``, so its absence means the file was cut short); a PNG must hold its ``IEND``
chunk; GIF and BMP files (rare, small) are decoded whole. Damage inside compressed data
that keeps the file's structure intact is not found here.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

from PIL import Image

from camjax.files import images as images_lib

# Pillow format names TensorFlow's decode_image reads (MPO: a camera JPEG with extra frames).
DECODABLE = ("JPEG", "MPO", "PNG", "GIF", "BMP")
TAIL = 1 << 16  # bytes read from a file's end; the whole file only when that is not enough


class BadImage(ValueError):
    """A file TensorFlow cannot decode (the reason is the message)."""


@dataclasses.dataclass(frozen=True)
class Header:
    size: tuple[int, int]  # (width, height) upright, i.e. after the EXIF orientation
    orientation: int  # EXIF orientation 1..8; 1: the pixels are stored upright


def _contains(f, start: int, end: int, needle: bytes) -> bool:
    """Whether ``needle`` occurs in the file's bytes ``[start, end)``; reads the last
    ``TAIL`` bytes first, then the rest in chunks."""
    lo = max(start, end - TAIL)
    f.seek(lo)
    if needle in f.read(end - lo):
        return True
    pos, overlap = start, len(needle) - 1
    while pos < lo:
        f.seek(pos)
        if needle in f.read(min(TAIL, lo + overlap - pos)):
            return True
        pos += TAIL
    return False


def _first_scan(f) -> int | None:
    """Offset of the JPEG's first start-of-scan marker (``FF DA``), None if none."""
    pos = 2  # after SOI
    while True:
        f.seek(pos)
        head = f.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return pos
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
        elif marker == 0xD9:  # end of image before any scan
            return None
        else:
            pos += 2 + int.from_bytes(head[2:], "big")


def _check_complete(f, fmt: str, size: int) -> None:
    if fmt in ("JPEG", "MPO"):
        scan = _first_scan(f)
        if scan is None:
            raise BadImage("truncated or malformed JPEG (no image data)")
        if not _contains(f, scan, size, b"\xff\xd9"):
            raise BadImage("truncated JPEG (no end-of-image marker after the image data)")
    elif fmt == "PNG" and not _contains(f, 8, size, b"IEND"):
        raise BadImage("truncated PNG (no IEND chunk)")


def read_header(path: str) -> Header:
    """The header of the image file ``path``; raises :class:`BadImage` for a file that
    TensorFlow would fail to decode."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise BadImage("empty file (0 bytes)")
        with open(path, "rb") as f, Image.open(f) as img:
            fmt = img.format or "?"
            if fmt not in DECODABLE:
                raise BadImage(f"a {fmt} image; training reads JPEG, PNG, GIF and BMP")
            if fmt in ("GIF", "BMP"):
                img.load()  # truncated files fail here
            else:
                _check_complete(f, fmt, size)
            w, h = img.size
            orientation = images_lib.exif_orientation(img)
    except BadImage:
        raise
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (Pillow cannot identify the format)") from None
    except Exception as e:  # OSError, DecompressionBombError, struct errors, ...
        raise BadImage(f"{type(e).__name__}: {e}") from None
    orientation = orientation if 1 <= orientation <= 8 else 1
    return Header((w, h) if orientation < 5 else (h, w), orientation)


def read_headers(
    paths: list[str], threads: int = 8
) -> tuple[dict[str, Header], list[tuple[str, str]]]:
    """``({path: header}, [(path, reason), ...])`` of ``paths`` (read in parallel; the
    bad ones in ``paths`` order)."""

    def one(path: str):
        try:
            return read_header(path), None
        except BadImage as e:
            return None, str(e)

    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(one, paths))
    good = {p: h for p, (h, _) in zip(paths, results, strict=True) if h is not None}
    bad = [(p, why) for p, (h, why) in zip(paths, results, strict=True) if h is None]
    return good, bad
