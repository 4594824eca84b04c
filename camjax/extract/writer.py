"""A full shard's rows turned into its files: records, arrays, overlays (used by
:mod:`camjax.extract.run`; the layout is :mod:`camjax.extract.store`'s)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from camjax.evaluation.geometry import rescale_boxes
from camjax.extract.store import Store, atomic_write, shard_name
from camjax.files import images as images_lib


class ShardWriter:
    """Turns a full shard's rows into its files (records, arrays, overlays)."""

    def __init__(self, store: Store, loaded: Any, settings: dict[str, Any], options: Any):
        """``settings``: the manifest's; ``options``: the run's ``RunOptions``."""
        self.store, self.names, self.o = store, loaded.class_names, options
        self.s, self.k = settings["image_size"], settings["top_k"]
        self.tag = {key: settings[key] for key in ("model", "method", "layer", "threshold")}
        self.num_records = 0

    def commit(self, j: int, rows: list, skipped: list) -> None:
        """Write shard ``j`` from its ``(index, path, hw, outputs)`` rows and
        ``(index, path, reason)`` skipped inputs."""
        rows = sorted(rows, key=lambda r: r[0])
        skipped = sorted(skipped, key=lambda r: r[0])
        records, arrays = [], None
        if rows:
            arrays, maps = self._arrays(rows)
            for r, (i, path, hw, _) in enumerate(rows):
                records.append(self._record(j, r, i, path, hw, arrays))
            if self.o.overlays:
                self._overlays(j, rows, arrays, maps)
        self.store.commit_shard(j, records, arrays, [(p, why) for _, p, why in skipped])
        self.num_records += len(records)

    def _arrays(self, rows) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        s = self.s
        sizes = np.asarray([hw for _, _, hw, _ in rows], np.int32)
        boxes = np.stack([o["boxes"] for *_, o in rows]).astype(np.int32)
        orig = np.stack([rescale_boxes(b, (s, s), hw) for b, hw in zip(boxes, sizes, strict=True)])
        arrays = {
            "index": np.asarray([i for i, *_ in rows], np.int64),
            "paths": np.asarray([p for _, p, _, _ in rows], dtype=str),
            "orig_size": sizes,
            "class_ids": np.stack([o["class_ids"] for *_, o in rows]).astype(np.int32),
            "probs": np.stack([o["probs"] for *_, o in rows]).astype(np.float32),
            "boxes": boxes,
            "boxes_original": orig.astype(np.int32),
            "input_size": np.asarray([s, s], np.int32),
            "class_names": np.asarray(self.names, dtype=str),
        }
        maps = None
        if self.o.maps != "none" or self.o.overlays:
            maps = np.stack([o["maps"] for *_, o in rows])
            if self.o.maps != "none":
                arrays["maps"] = maps.astype(self.o.maps_dtype)
        return arrays, maps

    def _record(self, j, r, i, path, hw, arrays) -> str:
        top = [
            {
                "rank": n + 1,
                "class_id": int(arrays["class_ids"][r, n]),
                "class_name": self.names[int(arrays["class_ids"][r, n])],
                "prob": round(float(arrays["probs"][r, n]), 6),
                "box": [int(v) for v in arrays["boxes_original"][r, n]],
            }
            for n in range(self.k)
        ]
        rec = {"index": i, "path": path, "height": int(hw[0]), "width": int(hw[1]),
               "shard": j, "row": r, "top_k": top, **self.tag}  # fmt: skip
        return json.dumps(rec)

    def _overlays(self, j, rows, arrays, maps) -> None:
        from PIL import Image

        from camjax.extract.reader import resize_map
        from camjax.overlay import labelled_panels

        folder = self.store.path("overlays", shard_name(j))
        os.makedirs(folder, exist_ok=True)
        n = self.o.overlays
        for r, (i, path, _, _) in enumerate(rows):
            try:
                img, _ = images_lib.read_image(
                    path, self.o.overlay_size, max_pixels=self.o.max_pixels, keep_aspect=True
                )
            except Exception:  # read once already; a file changed since is not fatal
                continue
            h, w = img.shape[:2]
            cams = [resize_map(maps[r, m].astype(np.float32), (h, w)) for m in range(n)]
            boxes = rescale_boxes(arrays["boxes"][r, :n], (self.s, self.s), (h, w))
            labels = [
                f"{m + 1}. {self.names[int(arrays['class_ids'][r, m])]} "
                f"{float(arrays['probs'][r, m]):.2f}"
                for m in range(n)
            ]
            panel = labelled_panels(img, cams, boxes, labels)
            stem = os.path.splitext(os.path.basename(path))[0][:60]
            stem = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in stem)
            atomic_write(os.path.join(folder, f"{i:08d}_{stem}.png"), _png(Image.fromarray(panel)))


def _png(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["ShardWriter"]
