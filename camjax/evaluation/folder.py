"""Batch extraction over a folder of images: the work behind ``camjax extract``.

Images are read, resized and normalised by ``camjax.data.folder_iterator`` (unreadable
files are skipped there), classified and mapped by the jitted ``camjax.extract`` a batch
at a time, and written out as they come: maps go to a memory-mapped temporary file, so
memory stays flat however many images there are; ``cams.npz`` and ``predictions.jsonl``
appear (atomically) only at the end.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from camjax.evaluation.geometry import rescale_boxes
from camjax.evaluation.loading import Loaded
from camjax.evaluation.report import atomic_write


def _write_overlay(path: str, src: str, cam_map: np.ndarray, box: np.ndarray, title: str):
    """The top-1 map over the original image at its own size, with its box (green)."""
    from PIL import Image, ImageDraw

    from camjax.data.folder import read_rgb  # the pixels the model saw (EXIF-rotated)
    from camjax.overlay import overlay

    rgb = read_rgb(src)
    width = max(2, min(rgb.shape[:2]) // 150)
    out = Image.fromarray(overlay(rgb, cam_map, boxes=np.asarray(box)[None], box_width=width))
    ImageDraw.Draw(out).text((4, 4), title, fill=(255, 255, 255))
    buf = io.BytesIO()
    out.save(buf, format="png")
    atomic_write(path, buf.getvalue())


def _record(path: str, size, ids, probs, boxes_orig, class_names) -> str:
    """One JSON Lines record: the image's top-k classes with boxes in original pixels."""
    top = [
        {
            "rank": j + 1,
            "class_id": int(ids[j]),
            "class_name": class_names[int(ids[j])],
            "prob": round(float(probs[j]), 6),
            "box": [int(v) for v in boxes_orig[j]],
        }
        for j in range(len(ids))
    ]
    return json.dumps({"path": path, "height": int(size[0]), "width": int(size[1]), "top_k": top})


class _Outputs:
    """Rows gathered during the pass; maps go to a memory-mapped temporary file."""

    KEYS = ("paths", "orig_size", "class_ids", "probs", "boxes", "boxes_original")

    def __init__(self, out_dir: str, capacity: int, map_shape: tuple, maps_dtype: str | None):
        self.rows: dict[str, list] = {key: [] for key in self.KEYS}
        self.lines: list[str] = []
        self.maps_tmp = os.path.join(out_dir, ".maps.tmp.npy")
        self.maps = None
        if maps_dtype:
            self.maps = np.lib.format.open_memmap(
                self.maps_tmp, mode="w+", dtype=maps_dtype, shape=(capacity, *map_shape)
            )

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, line: str, maps: np.ndarray, **row) -> None:
        if self.maps is not None:
            self.maps[len(self.lines)] = maps
        self.lines.append(line)
        for key in self.KEYS:
            self.rows[key].append(row[key])

    def write(self, out_dir: str, class_names: list[str]) -> dict[str, str | None]:
        jsonl = os.path.join(out_dir, "predictions.jsonl")
        atomic_write(jsonl, "".join(line + "\n" for line in self.lines))
        if not self.lines:
            return {"jsonl": jsonl, "npz": None}
        arrays = {
            key: np.stack(v) if key != "paths" else np.asarray(v) for key, v in self.rows.items()
        }
        arrays["class_names"] = np.asarray(class_names)
        if self.maps is not None:
            arrays["maps"] = self.maps[: len(self.lines)]
        npz = os.path.join(out_dir, "cams.npz")
        tmp = os.path.join(out_dir, ".cams.tmp.npz")
        np.savez(tmp, **arrays)  # streams the memory-mapped maps in chunks
        os.replace(tmp, npz)
        return {"jsonl": jsonl, "npz": npz}

    def close(self) -> None:
        self.maps = None
        if os.path.exists(self.maps_tmp):
            os.unlink(self.maps_tmp)


def extract_folder(
    loaded: Loaded,
    inputs: Sequence[str],
    out_dir: str,
    *,
    top_k: int = 5,
    method: str = "cam",
    threshold: float = 0.2,
    batch_size: int = 16,
    overlays: bool = False,
    maps_dtype: str | None = "float16",
    progress: bool = True,
) -> dict[str, Any]:
    """Extract maps, classes and boxes for every readable image in ``inputs``.

    ``inputs``: files, folders (their image files) and globs, as
    ``camjax.data.folder.list_images`` reads them. Returns a summary: ``num_images``,
    ``skipped`` (``(path, reason)`` of each unreadable file), and the paths of
    ``npz``, ``jsonl`` and the ``overlays`` folder. ``cams.npz`` holds ``paths [N]``,
    ``orig_size [N, 2]`` (height, width), ``class_ids``/``probs [N, k]``, ``boxes [N, k, 4]``
    (model-input pixels), ``boxes_original [N, k, 4]`` (original pixels, see
    :mod:`camjax.evaluation.geometry`), ``class_names [C]`` and ``maps [N, k, S, S]`` in
    [0, 1] (unless ``maps_dtype`` is None).
    """
    from tqdm import tqdm

    from camjax import data
    from camjax.data.folder import list_images
    from camjax.extraction import extract

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = list_images(list(inputs))
    if not files:
        raise FileNotFoundError(f"no image files in {list(inputs)}")
    k, s, names = min(int(top_k), len(loaded.class_names)), loaded.image_size, loaded.class_names
    os.makedirs(out_dir, exist_ok=True)
    overlay_dir = os.path.join(out_dir, "overlays")
    if overlays:
        os.makedirs(overlay_dir, exist_ok=True)
    batches = data.folder_iterator(
        files, image_size=s, normalization=loaded.normalization, batch_size=batch_size
    )
    outputs = _Outputs(out_dir, len(files), (k, s, s), maps_dtype)
    bar = tqdm(total=len(files), unit="img", disable=not progress, desc="extract")
    try:
        for batch in batches:
            valid = np.asarray(batch["valid"], bool)
            if not valid.any():
                continue
            out = extract(
                loaded.model, loaded.variables, batch["image"], k, method=method,
                threshold=threshold,
            )  # fmt: skip
            out = {key: np.asarray(v)[valid] for key, v in out.items()}
            paths = [str(p) for p in np.asarray(batch["path"])[valid]]
            sizes = np.asarray(batch["orig_size"])[valid].astype(np.int32)
            for i, path in enumerate(paths):
                ids, probs = out["class_ids"][i], out["probs"][i].astype(np.float32)
                box_orig = rescale_boxes(out["boxes"][i], (s, s), sizes[i])
                if overlays:
                    stem = os.path.splitext(os.path.basename(path))[0]
                    _write_overlay(
                        os.path.join(overlay_dir, f"{len(outputs):06d}_{stem}.png"),
                        path, out["maps"][i][0], box_orig[0],
                        f"{names[int(ids[0])]} ({probs[0]:.2f})",
                    )  # fmt: skip
                outputs.add(
                    _record(path, sizes[i], ids, probs, box_orig, names),
                    out["maps"][i],
                    paths=path, orig_size=sizes[i], class_ids=ids.astype(np.int32),
                    probs=probs, boxes=out["boxes"][i].astype(np.int32),
                    boxes_original=box_orig,
                )  # fmt: skip
            bar.update(len(paths))
        bar.update(len(files) - bar.n)
        skipped = list(batches.skipped)  # (path, reason), filled by the folder iterator
        atomic_write(
            os.path.join(out_dir, "skipped.txt"), "".join(f"{p}\t{why}\n" for p, why in skipped)
        )
        summary: dict[str, Any] = {"num_images": len(outputs), "skipped": skipped}
        summary.update(outputs.write(out_dir, names))
    finally:
        bar.close()
        outputs.close()
    summary["overlays"] = overlay_dir if overlays else None
    return summary
