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
    :mod:`camjax.evaluation.geometry`) and ``maps [N, k, S, S]`` in [0, 1].
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
    k = min(int(top_k), len(loaded.class_names))
    s = loaded.image_size
    os.makedirs(out_dir, exist_ok=True)
    overlay_dir = os.path.join(out_dir, "overlays")
    if overlays:
        os.makedirs(overlay_dir, exist_ok=True)
    maps_tmp = os.path.join(out_dir, ".maps.tmp.npy")
    maps_mm = None
    if maps_dtype:
        maps_mm = np.lib.format.open_memmap(
            maps_tmp, mode="w+", dtype=maps_dtype, shape=(len(files), k, s, s)
        )
    rows: dict[str, list] = {key: [] for key in ("paths", "orig_size", "class_ids", "probs")}
    rows.update(boxes=[], boxes_original=[])
    lines: list[str] = []
    n = 0
    batches = data.folder_iterator(
        files, image_size=s, normalization=loaded.normalization, batch_size=batch_size
    )
    bar = tqdm(total=len(files), unit="img", disable=not progress, desc="extract")
    try:
        for batch in batches:
            valid = np.asarray(batch["valid"], bool)
            if not valid.any():
                continue
            out = extract(
                loaded.model,
                loaded.variables,
                batch["image"],
                k,
                method=method,
                threshold=threshold,
            )
            out = {key: np.asarray(v)[valid] for key, v in out.items()}
            paths = [
                str(p.decode() if isinstance(p, bytes) else p)
                for p in np.asarray(batch["path"])[valid]
            ]
            sizes = np.asarray(batch["orig_size"])[valid].astype(np.int32)
            for i, path in enumerate(paths):
                box_orig = rescale_boxes(out["boxes"][i], (s, s), sizes[i])
                ids = out["class_ids"][i]
                lines.append(
                    json.dumps(
                        {
                            "path": path,
                            "height": int(sizes[i][0]),
                            "width": int(sizes[i][1]),
                            "top_k": [
                                {
                                    "rank": j + 1,
                                    "class_id": int(ids[j]),
                                    "class_name": loaded.class_names[int(ids[j])],
                                    "prob": round(float(out["probs"][i][j]), 6),
                                    "box": [int(v) for v in box_orig[j]],
                                }
                                for j in range(k)
                            ],
                        }
                    )
                )
                rows["paths"].append(path)
                rows["orig_size"].append(sizes[i])
                rows["class_ids"].append(ids)
                rows["probs"].append(out["probs"][i])
                rows["boxes"].append(out["boxes"][i])
                rows["boxes_original"].append(box_orig)
                if maps_mm is not None:
                    maps_mm[n] = out["maps"][i]
                if overlays:
                    stem = os.path.splitext(os.path.basename(path))[0]
                    _write_overlay(
                        os.path.join(overlay_dir, f"{n:06d}_{stem}.png"),
                        path,
                        out["maps"][i][0],
                        box_orig[0],
                        f"{loaded.class_names[int(ids[0])]} ({out['probs'][i][0]:.2f})",
                    )
                n += 1
            bar.update(len(paths))
        bar.update(len(files) - bar.n)
    finally:
        bar.close()
    skipped = list(batches.skipped)  # (path, reason), filled by the folder iterator
    atomic_write(
        os.path.join(out_dir, "skipped.txt"), "".join(f"{p}\t{why}\n" for p, why in skipped)
    )
    summary: dict[str, Any] = {"num_images": n, "skipped": skipped, "npz": None}
    jsonl = os.path.join(out_dir, "predictions.jsonl")
    atomic_write(jsonl, "".join(line + "\n" for line in lines))
    summary["jsonl"] = jsonl
    if n:
        arrays = {
            "paths": np.asarray(rows["paths"]),
            "orig_size": np.stack(rows["orig_size"]),
            "class_ids": np.stack(rows["class_ids"]).astype(np.int32),
            "probs": np.stack(rows["probs"]).astype(np.float32),
            "boxes": np.stack(rows["boxes"]).astype(np.int32),
            "boxes_original": np.stack(rows["boxes_original"]).astype(np.int32),
            "class_names": np.asarray(loaded.class_names),
        }
        if maps_mm is not None:
            arrays["maps"] = maps_mm[:n]
        npz = os.path.join(out_dir, "cams.npz")
        tmp = os.path.join(out_dir, ".cams.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, npz)
        summary["npz"] = npz
    del maps_mm
    if os.path.exists(maps_tmp):
        os.unlink(maps_tmp)
    if overlays:
        summary["overlays"] = overlay_dir
    return summary
