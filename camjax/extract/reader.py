"""Reading an extraction folder back: records, arrays, and maps at the original size.

    from camjax.extract import open_extraction
    ex = open_extraction("cams/")
    for rec in ex.records():            # every image, in input order
        m = ex.map(rec, rank=0)         # float32 [height, width], the original's size
        box = rec["top_k"][0]["box"]    # (x0, y0, x1, y1) inclusive, original pixels

A shard's ``part-XXXXX.npz`` holds, for its ``n`` images: ``index [n]`` (position in the
input list), ``paths [n]``, ``orig_size [n, 2]`` (height, width of the upright original),
``class_ids [n, k]``, ``probs [n, k]``, ``boxes [n, k, 4]`` (model-input pixels of the
``S x S`` input), ``boxes_original [n, k, 4]`` (original pixels), ``input_size [2]``,
``class_names [C]`` and, unless maps were not kept, ``maps [n, k, h, w]`` in [0, 1]
(float16 by default; ``h x w`` the feature map's size by default, ``S x S`` with
``maps="input"``).

Every file read is checked against the size and sha256 its shard's mark recorded; a
damaged one raises :class:`camjax.extract.store.DamagedOutput` naming it (running the same
``camjax extract`` command again moves that shard aside and redoes it).

Geometry: the whole original was resized to ``S x S`` without cropping, so a stored map
covers the whole original; :meth:`Extraction.map` resizes it to the original's
``height x width`` bilinearly (half-pixel centres, as ``camjax.maps.upsample``;
antialiased where it shrinks), which restores the original aspect.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from camjax.extract.store import (
    LEGACY_FORMAT,
    MANIFEST,
    DamagedOutput,
    Store,
    shard_name,
    unescape_tsv,
)


def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``float32 [h, w]`` -> ``[H, W]``: bilinear, half-pixel centres, antialiased when
    shrinking (Pillow ``F`` mode)."""
    from PIL import Image

    cam = np.asarray(cam, np.float32)
    if cam.shape == tuple(size):
        return cam.copy()
    out = Image.fromarray(cam, "F").resize(
        (int(size[1]), int(size[0])), Image.Resampling.BILINEAR, reducing_gap=None
    )
    return np.asarray(out, np.float32)


class Extraction:
    """An output folder of ``camjax extract`` (see the module docstring)."""

    def __init__(self, out_dir: str):
        self.store = Store(out_dir)
        manifest = self.store.manifest()
        if manifest is None:
            raise FileNotFoundError(f"{out_dir} holds no {MANIFEST}: not an extraction folder")
        self.manifest: dict[str, Any] = manifest
        try:
            self.settings: dict[str, Any] = manifest["settings"]
            self.class_names: list[str] = manifest["class_names"]
            int(manifest["num_shards"]), int(manifest["shard_size"])
        except (KeyError, TypeError, ValueError) as e:
            path = self.store.path(MANIFEST)
            raise DamagedOutput(f"{path}: not an extraction manifest (bad or no {e})") from e
        # Folders of camjax-extract/1 have no shard marks: nothing to check against.
        self._legacy = manifest.get("format") == LEGACY_FORMAT
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def shards(self) -> list[int]:
        """Shards written so far (all of them once the run is complete)."""
        n = int(self.manifest["num_shards"])
        if self._legacy:
            return [j for j in range(n) if os.path.exists(self._file(j, ".jsonl"))]
        return [j for j in range(n) if self.store.done(j)]

    def _file(self, j: int, suffix: str) -> str:
        return self.store.path(shard_name(j) + suffix)

    def _read(self, j: int, suffix: str) -> bytes | None:
        """A file of shard ``j``, checked against its mark; ``None`` if the shard has
        none (no arrays when every input was skipped, no skipped list when none was)."""
        path, rel = self._file(j, suffix), shard_name(j) + suffix
        if self._legacy:
            if not os.path.exists(path):
                return None
            with open(path, "rb") as f:
                return f.read()
        recorded = self.store.mark(j)["files"].get(rel)
        if recorded is None:
            return None
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise DamagedOutput(f"{path}: damaged shard file ({e.strerror}); {_REDO}") from e
        if len(data) != recorded[0]:
            raise DamagedOutput(
                f"{path}: damaged shard file ({len(data)} bytes, {recorded[0]} were written); "
                + _REDO
            )
        if hashlib.sha256(data).hexdigest() != recorded[1]:
            raise DamagedOutput(f"{path}: damaged shard file (sha256 differs); {_REDO}")
        return data

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of the written shards, in input order."""
        for j in self.shards():
            data = self._read(j, ".jsonl") or b""
            try:
                lines = [json.loads(line) for line in data.decode("utf-8").splitlines()]
            except ValueError as e:  # only where nothing was recorded to check against
                path = self._file(j, ".jsonl")
                raise DamagedOutput(f"{path}: unreadable records ({e}); {_REDO}") from e
            yield from lines

    def arrays(self, shard: int) -> dict[str, np.ndarray]:
        """The arrays of one shard (the last one read is kept)."""
        if self._cache is None or self._cache[0] != shard:
            data = self._read(shard, ".npz")
            if data is None:
                return {}
            try:
                with np.load(io.BytesIO(data)) as z:
                    arrays = {key: z[key] for key in z.files}
            except Exception as e:  # BadZipFile, EOFError, ValueError...: a damaged file
                path = self._file(shard, ".npz")
                raise DamagedOutput(
                    f"{path}: unreadable arrays ({type(e).__name__}: {e}); {_REDO}"
                ) from e
            self._cache = (shard, arrays)
        return self._cache[1]

    def find(self, index: int) -> tuple[int, int]:
        """``(shard, row)`` of input number ``index``; ``KeyError`` if it has no record."""
        j = int(index) // int(self.manifest["shard_size"])
        rows = self.arrays(j).get("index", np.zeros(0, np.int64))
        r = int(np.searchsorted(rows, index))
        if r >= len(rows) or rows[r] != index:
            raise KeyError(f"input {index} has no record (skipped, or its shard not written)")
        return j, r

    def map(
        self, record: dict[str, Any] | int, rank: int = 0, *, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The map of the class ranked ``rank`` (0 = top-1) for a record (or input index),
        ``float32`` at ``size`` (default: the original image's ``(height, width)``)."""
        if isinstance(record, dict):
            j, r = int(record["shard"]), int(record["row"])
        else:
            j, r = self.find(record)
        a = self.arrays(j)
        if "maps" not in a:
            raise KeyError("this extraction kept no maps (maps='none')")
        hw = tuple(int(v) for v in a["orig_size"][r]) if size is None else size
        return resize_map(a["maps"][r, rank].astype(np.float32), hw)

    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every unreadable input in the written shards."""
        out = []
        for j in self.shards():
            data = self._read(j, ".skipped.tsv")
            if data is not None:
                out += _skipped_rows(data.decode("utf-8", "surrogateescape"))
        return out


_REDO = "run the same camjax extract command again to redo its shard"


def read_skipped(path: str) -> list[tuple[str, str]]:
    """Rows of a ``skipped.txt`` / ``part-XXXXX.skipped.tsv`` (tab, newline and backslash
    escaped as ``\\t``, ``\\n``, ``\\\\``)."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return _skipped_rows(f.read())


def _skipped_rows(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.split("\n"):
        if line:
            p, _, why = line.partition("\t")
            out.append((unescape_tsv(p), unescape_tsv(why)))
    return out


def open_extraction(out_dir: str) -> Extraction:
    return Extraction(out_dir)


__all__ = ["Extraction", "open_extraction", "read_skipped", "resize_map"]
