"""Reading an extraction folder back: records, arrays, and maps at the original size.

    from camjax.bulk import open_extraction
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

Geometry: the whole original was resized to ``S x S`` without cropping, so a stored map
covers the whole original; :meth:`Extraction.map` resizes it to the original's
``height x width`` bilinearly (half-pixel centres, as ``camjax.cam.upsample``;
antialiased where it shrinks), which restores the original aspect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from camjax.bulk.store import MANIFEST, Store, shard_name, unescape_tsv


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
        self.settings: dict[str, Any] = manifest["settings"]
        self.class_names: list[str] = manifest["class_names"]
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def shards(self) -> list[int]:
        """Shards written so far (all of them once the run is complete)."""
        return [j for j in range(self.manifest["num_shards"]) if self.store.done(j)]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of the written shards, in input order."""
        for j in self.shards():
            with open(self.store.path(shard_name(j) + ".jsonl"), encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)

    def arrays(self, shard: int) -> dict[str, np.ndarray]:
        """The arrays of one shard (the last one read is kept)."""
        if self._cache is None or self._cache[0] != shard:
            path = self.store.path(shard_name(shard) + ".npz")
            if not os.path.exists(path):
                return {}
            with np.load(path) as z:
                self._cache = (shard, {key: z[key] for key in z.files})
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
            path = self.store.path(shard_name(j) + ".skipped.tsv")
            if os.path.exists(path):
                out += read_skipped(path)
        return out


def read_skipped(path: str) -> list[tuple[str, str]]:
    """Rows of a ``skipped.txt`` / ``part-XXXXX.skipped.tsv`` (tab, newline and backslash
    escaped as ``\\t``, ``\\n``, ``\\\\``)."""
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        for line in f:
            p, _, why = line.rstrip("\n").partition("\t")
            out.append((unescape_tsv(p), unescape_tsv(why)))
    return out


def open_extraction(out_dir: str) -> Extraction:
    return Extraction(out_dir)


__all__ = ["Extraction", "open_extraction", "read_skipped", "resize_map"]
