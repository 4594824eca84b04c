"""Extraction of many images into a resumable, sharded output folder (``camjax extract``).

Pipeline: inputs listed in a fixed order (:mod:`camjax.files.inputs`); files decoded and
resized in threads with bounded read-ahead (:mod:`camjax.files.images`,
:mod:`camjax.files.prefetch`); batches run on every local device
(:mod:`camjax.extract.devices`), the next batch dispatched before the last one is written;
records written shard by shard, each shard atomically (:mod:`camjax.extract.store`). With
several processes, process ``p`` of ``P`` does shards ``j`` with ``j % P == p``. No
TensorFlow is imported on this path.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from camjax.extract.lock import OutputBusy, OutputLock
from camjax.extract.store import FORMAT, Store, inputs_fingerprint, shard_name
from camjax.extract.writer import ShardWriter
from camjax.files import images as images_lib
from camjax.files.atomic import NoRoom, no_room
from camjax.files.inputs import list_inputs
from camjax.files.prefetch import ordered_map
from camjax.localize import LocalizeSpec

MAP_MODES = ("feature", "input", "none")
RESIZE = "whole image to SxS (aspect not kept), bilinear, antialiased when downscaling"


class ExtractionStopped(OSError):
    """The run stopped for want of room (disk full, quota, file size limit); the message,
    one line, names the file and what was kept."""

    def __str__(self) -> str:
        return str(self.args[0])


class _Listed(Exception):
    """An input the listing already found unreadable (its message is the reason)."""


@dataclasses.dataclass
class _Shard:
    """Rows of one shard gathered until every one of its inputs is accounted for."""

    expected: int
    rows: list = dataclasses.field(default_factory=list)  # (index, path, hw, out_row)
    skipped: list = dataclasses.field(default_factory=list)  # (index, path, reason)

    def full(self) -> bool:
        return len(self.rows) + len(self.skipped) == self.expected


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a folder-to-folder extraction reads, batches and writes (what it computes is
    the :class:`~camjax.localize.LocalizeSpec`). Checked when built.

    ``model_name``: the manifest's model name (default: the checkpoint's). ``recursive``,
    ``lists``: inputs in sub-folders, list files (:func:`camjax.files.inputs.list_inputs`).
    ``maps``: ``"feature"`` (each method's own resolution, e.g. 7x7), ``"input"``
    (``S x S``) or ``"none"``; stored as ``maps_dtype``. ``overlays``: PNGs of the
    top-``overlays`` maps per image (0: none), at most ``overlay_size`` pixels a side per
    panel. ``max_pixels``: larger images are skipped. ``threads``: decoding threads
    (default ``min(8, cores + 1)``). ``overwrite``: start ``out_dir`` afresh.
    ``process_index``/``process_count``: this process's share (default JAX's).
    ``devices``: where batches run (default this process's). ``tfds``: ``"NAME:SPLIT"``,
    a TFDS split as the input instead of files (``data_dir`` its TFDS folder).
    """

    model_name: str | None = None
    recursive: bool = False
    lists: tuple[str, ...] = ()
    batch_size: int = 16
    shard_size: int = 1000
    maps: str = "feature"
    maps_dtype: str = "float16"
    overlays: int = 0
    overlay_size: int = 512
    max_pixels: int = images_lib.DEFAULT_MAX_PIXELS
    threads: int | None = None
    overwrite: bool = False
    progress: bool = True
    process_index: int | None = None
    process_count: int | None = None
    devices: tuple | None = None
    tfds: str | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.maps not in MAP_MODES:
            raise ValueError(f"maps must be one of {MAP_MODES}, got {self.maps!r}")
        if self.maps_dtype not in ("float16", "float32"):
            raise ValueError(f"maps_dtype must be float16 or float32, got {self.maps_dtype!r}")
        for name, lo in (("batch_size", 1), ("shard_size", 1), ("overlays", 0),
                         ("overlay_size", 16), ("max_pixels", 1)):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        object.__setattr__(self, "lists", tuple(self.lists))
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(self.devices))


def _version() -> str:
    try:
        return importlib.metadata.version("camjax")
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
        return "unknown"


def _check_inputs(batch: np.ndarray, normalization: str) -> None:
    """The model must get float images in its normalised range (never raw uint8)."""
    lo, hi = images_lib.input_range(normalization)
    if batch.dtype != np.float32 or batch.min() < lo - 1e-4 or batch.max() > hi + 1e-4:
        raise ValueError(
            f"model inputs must be float32 in [{lo:.3f}, {hi:.3f}] ({normalization} "
            f"normalisation), got {batch.dtype} in [{batch.min()}, {batch.max()}]"
        )


def extract_to(
    loaded: Any,
    inputs: Sequence[str],
    out_dir: str,
    spec: LocalizeSpec | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Extract every input into ``out_dir``; resume what a killed run left (module doc).

    ``loaded``: a :class:`camjax.checkpoints.Loaded`. ``spec``: the maps and boxes
    (``top_k`` capped at the classes; ``class_ids``: maps of these classes for every image
    instead of the top-k; ``map_resolution`` and ``num_boxes`` are the run's own).
    ``options``: :class:`RunOptions` (``None``: the defaults, as for ``spec``). Returns a
    summary: ``num_images`` (records written by this call), ``skipped`` (``(path,
    reason)`` by this call), ``complete``, ``shards_done``, ``out``, ``moved_aside``
    (``(shard, reason, folder)`` of finished shards found damaged, moved to ``corrupt/``
    and redone).

    Raises :class:`OutputBusy` when another extraction is writing to ``out_dir`` (see
    :mod:`camjax.extract.lock`), :class:`ExtractionStopped` (one line: the file, the
    shards kept) when the disk, quota or file size limit is full.
    """
    import jax

    spec, o = spec or LocalizeSpec(), options or RunOptions()
    names, s = loaded.class_names, int(loaded.image_size)
    k = min(spec.top_k, len(names))
    ids = spec.class_ids
    if ids is not None:
        if min(ids) < 0 or max(ids) >= len(names):
            raise ValueError(f"class ids must lie in [0, {len(names)}), got {list(ids)}")
        k = len(ids)
    if o.overlays > k:
        raise ValueError(f"overlays ({o.overlays}) cannot exceed top_k ({k})")
    spec = spec.replace(top_k=k)
    pi = jax.process_index() if o.process_index is None else int(o.process_index)
    pc = jax.process_count() if o.process_count is None else int(o.process_count)
    if o.overwrite and pc > 1:
        raise ValueError("--overwrite with several processes: clear --out before starting them")

    if o.tfds is not None:
        from camjax.extract import tfds_source

        if list(inputs) or list(o.lists):
            raise ValueError("give files/folders/lists or --tfds, not both")
        entries = [(key, None) for key in tfds_source.keys(o.tfds, o.data_dir)]
    else:
        entries = list_inputs(list(inputs), recursive=o.recursive, lists=o.lists).entries
    if not entries:
        raise FileNotFoundError(f"no image files in {list(inputs) + list(o.lists)}")
    num_shards = math.ceil(len(entries) / o.shard_size)
    settings = {
        "model": o.model_name or loaded.checkpoint_name,
        "checkpoint": loaded.checkpoint_name,
        "method": spec.method,
        "layer": "default" if spec.layer is None else str(spec.layer),
        "class_ids": None if ids is None else list(ids),
        "threshold": spec.threshold,
        "map_normalization": spec.normalization,
        "input_normalization": loaded.normalization,
        "image_size": s,
        "resize": RESIZE,
        "top_k": k,
        "maps": o.maps,
        "maps_dtype": o.maps_dtype if o.maps != "none" else None,
        "overlays": o.overlays,
        "num_classes": len(names),
        "camjax_version": _version(),
        "tfds": o.tfds,
    }
    manifest = {
        "format": FORMAT,
        "settings": settings,
        "inputs": {"count": len(entries), "sha256": inputs_fingerprint([p for p, _ in entries])},
        "shard_size": o.shard_size,
        "num_shards": num_shards,
        "class_names": list(names),
    }
    store = Store(out_dir)
    ours = [j for j in range(num_shards) if j % pc == pi]
    try:
        with OutputLock(out_dir, pi, pc):  # OutputBusy at once if another run writes here
            store.open(manifest, overwrite=o.overwrite)
            moved = _move_damaged(store, manifest, ours)
            todo = [j for j in ours if not store.done(j)]
            summary = _run(store, manifest, todo, loaded, entries, spec, o)
    except OSError as e:
        if no_room(e) is None:
            raise
        why = str(e)
        if not isinstance(e, NoRoom):  # a folder or the lock file made, say: no room either
            why = f"cannot write {e.filename}: {e.strerror}"
        done = sum(store.done(j) for j in range(num_shards))
        raise ExtractionStopped(
            f"{why}; {done} of {num_shards} shards are finished and kept in {out_dir}; "
            "make room (disk space, quota, file size limit) and run the same command again"
        ) from e
    summary["moved_aside"] = moved
    return summary


def _move_damaged(store: Store, manifest: dict[str, Any], shards: list[int]) -> list:
    """Verify finished ``shards`` (sizes, then sha256); move damaged ones to ``corrupt/``
    so they are redone. Returns ``(shard name, reason, where it went)`` of each."""
    moved = []
    for j in shards:
        if not store.done(j):
            continue
        why = store.check(j)
        if why is not None:
            dest = store.move_aside(j)
            moved.append((shard_name(j), why, dest))
    if moved:
        store.mark_incomplete(manifest)
    return moved


def _shard_len(j: int, shard_size: int, n: int) -> int:
    return min((j + 1) * shard_size, n) - j * shard_size


def _work_items(mine: list[int], entries: list, o: RunOptions):
    """``(shard, index, path, listing's reason, decoded TFDS image or None)`` in order."""
    for j in mine:
        a = j * o.shard_size
        b = a + _shard_len(j, o.shard_size, len(entries))
        if o.tfds is None:
            yield from ((j, i, *entries[i], None) for i in range(a, b))
        else:
            from camjax.extract import tfds_source

            arrays = tfds_source.images(o.tfds, o.data_dir, a, b)
            yield from (
                (j, i, entries[i][0], None, x) for i, x in zip(range(a, b), arrays, strict=True)
            )


def _decode(item, s: int, max_pixels: int, budget: images_lib.PixelBudget):
    _, _, path, why, arr = item
    if why is not None:
        raise _Listed(why)
    if arr is not None:  # a TFDS example, decoded already
        return images_lib.resize_array(arr, s, max_pixels=max_pixels)
    return images_lib.read_image(path, s, max_pixels=max_pixels, budget=budget)


def _run(store: Store, manifest: dict[str, Any], mine: list[int], loaded: Any, entries: list,
         spec: LocalizeSpec, o: RunOptions) -> dict[str, Any]:  # fmt: skip
    """Extract shards ``mine`` (extract_to's checked arguments); returns the summary."""
    from tqdm import tqdm

    out_dir, num_shards = store.out, manifest["num_shards"]
    if not mine:  # nothing left for this process: no model program to build
        final = store.finish(num_shards, manifest)
        return {"num_images": 0, "skipped": [], "out": out_dir, "shards_done": 0,
                "complete": final is not None,
                "num_records": final["num_records"] if final else None}  # fmt: skip

    from camjax.extract.devices import make_step

    s = int(loaded.image_size)
    keep = o.maps if o.maps != "none" or not o.overlays else "feature"  # overlays need maps
    step, ndev = make_step(loaded.model, loaded.variables, spec, maps=keep, devices=o.devices)
    bsz = -(-o.batch_size // ndev) * ndev  # a whole number of images per device
    threads = o.threads or min(8, (os.cpu_count() or 2) + 1)
    decode = functools.partial(
        _decode, s=s, max_pixels=o.max_pixels, budget=images_lib.PixelBudget(o.max_pixels)
    )
    total = sum(_shard_len(j, o.shard_size, len(entries)) for j in mine)
    shards = {j: _Shard(_shard_len(j, o.shard_size, len(entries))) for j in mine}
    for j in mine:
        store.begin_shard(j)
    summary: dict[str, Any] = {"num_images": 0, "skipped": [], "out": out_dir}
    writer = ShardWriter(store, loaded, manifest["settings"], o)
    bar = tqdm(total=total, unit="img", disable=not o.progress, desc="extract")
    pending = None  # (rows meta, device outputs) of the batch in flight
    rows: list = []

    def flush(batch_rows):
        """Dispatch a batch; return its (meta, outputs)."""
        x = np.zeros((bsz, s, s, 3), np.float32)
        for r, (_, _, _, (img, _)) in enumerate(batch_rows):
            x[r] = images_lib.normalize(img, loaded.normalization)
        _check_inputs(x, loaded.normalization)
        return batch_rows, step(x)

    def collect(done_batch):
        meta, out = done_batch
        out = step.finish(out, len(meta))
        if "maps" in out:  # held until the shard is written: keep them as stored
            out["maps"] = out["maps"].astype(o.maps_dtype)
        for r, (j, i, path, (_, hw)) in enumerate(meta):
            shards[j].rows.append((i, path, hw, {key: v[r] for key, v in out.items()}))
            maybe_commit(j)
        bar.update(len(meta))

    def maybe_commit(j):
        if shards[j].full():
            shard = shards.pop(j)
            writer.commit(j, shard.rows, shard.skipped)
            summary["shards_done"] = summary.get("shards_done", 0) + 1

    try:
        window = max(2 * bsz, 2 * threads)
        work = _work_items(mine, entries, o)
        for (j, i, path, *_), result, err in ordered_map(decode, work, threads=threads,
                                                        window=window):  # fmt: skip
            if err is not None:
                why = (
                    str(err)
                    if isinstance(err, _Listed | images_lib.TooLarge)
                    else (f"{type(err).__name__}: {err}")
                )
                shards[j].skipped.append((i, path, why))
                summary["skipped"].append((path, why))
                bar.update(1)
                maybe_commit(j)
                continue
            rows.append((j, i, path, result))
            if len(rows) == bsz:
                nxt = flush(rows)
                rows = []
                if pending is not None:
                    collect(pending)
                pending = nxt
        if rows:
            nxt = flush(rows)
            if pending is not None:
                collect(pending)
            pending = nxt
        if pending is not None:
            collect(pending)
            pending = None
    finally:
        bar.close()
    summary["num_images"] = writer.num_records
    final = store.finish(num_shards, manifest)
    summary["complete"] = final is not None
    summary["num_records"] = final["num_records"] if final else None
    return summary


__all__ = ["MAP_MODES", "ExtractionStopped", "OutputBusy", "RunOptions", "extract_to"]
