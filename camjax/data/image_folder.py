"""``folder``: a user's labelled photos, one sub-folder per class, optional boxes and masks.

Layouts (``data.folder.root``), the torchvision / TFDS ImageFolder ones:

- ``root/<class>/<image>``: one split, divided into ``train`` and ``validation`` per class
  (``val_fraction`` of each class's images, chosen by ``split_seed``);
- ``root/<split>/<class>/<image>`` (e.g. ``train``, ``validation``, ``test``): the split
  folders as they are. A root whose sub-folders hold image files is the first layout, one
  whose sub-folders hold only folders the second;
- ``root/<image>`` with a box file: each image's class is the class of its boxes (every
  image needs boxes, all of one class), divided as the first layout.

Class names are the class folder names (or the box file's classes), sorted (label ``i`` =
``i``-th name), over all splits. Images: ``.jpg .jpeg .png .bmp .gif`` (what TensorFlow
decodes), searched recursively inside a class folder. Other files are ignored.

Orientation: one rule for training, evaluation and extraction. The EXIF orientation is
applied (as PIL's ``ImageOps.exif_transpose`` and :mod:`camjax.files.images` do): the
index reads each image's header (:mod:`camjax.data.headers`) and the pipeline rotates
or mirrors the decoded pixels upright. Boxes and masks are in the upright frame: a box
drawn on the photo as a viewer shows it, a mask the upright image's size.

Bad files: an image file TensorFlow could not decode (a text file named ``.jpg``, an
empty or truncated file) is found when the folder is indexed, left out, logged and
listed in ``FolderBuilder.skipped`` (``DatasetInfo.skipped``; training writes the list to
``<workdir>/skipped_images.tsv``), with its boxes. A class left without images is an
error.

Boxes (``data.folder.boxes``): a box file read by :mod:`camjax.data.box_files`. A box's
image reference matches an image by its path relative to ``root`` or to its split folder,
or by its file name, each with or without the extension; it must match exactly one image.
A box naming a class that is not a class folder is an error; a box of another known class
than its image's is dropped (the ground truth of an image is the boxes of its class); a
box without a class belongs to its image. Images without boxes have none.

Masks (``data.folder.masks``): ``<masks>/<image path relative to root, extension
.png>``, the image's size, 0 background and any other value foreground.

Examples are stored per split in an order shuffled once by ``split_seed`` (so the even
per-process slices of ``tfds.split_for_jax_process`` mix the classes); "file shuffling"
of the pipeline permutes the examples by its seed. Order, sharding and resumption are
the pipeline's (:mod:`camjax.data.pipeline`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import types

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from camjax.data import box_files, headers
from camjax.data import folder_layout as layout
from camjax.data.source import Source

EXTENSIONS = layout.EXTENSIONS
FLAT_SPLITS = ("train", "validation")


class FolderBuilder:
    """The index of a folder data set, read like a TFDS builder by the pipeline."""

    def __init__(self, fc, max_boxes: int):
        root = os.path.abspath(os.path.expanduser(fc.root))
        self.root = root
        self.has_masks = bool(fc.get("masks"))
        self.headers: dict[str, headers.Header] = {}
        self.skipped: list[tuple[str, str]] = []  # (path, why TensorFlow cannot decode it)
        self._skipped_base: dict[str, str] = {}
        splits = layout.split_dirs(root)
        anns = None
        if fc.get("boxes"):
            anns = box_files.read(fc.boxes, fc.get("box_format", "auto"), bool(fc.get("one_based")))
        self.val_fraction: float | None = float(fc.get("val_fraction", 0.1))
        if splits == "images":
            self.layout, candidates = "root/<image>", layout.root_images(root)
            self._read_headers(candidates, root)
            good = [p for p in candidates if p in self.headers]
            per_class = layout.classes_from_boxes(root, anns, good, self._skipped_base)
            splits = None
        elif splits is None:
            self.layout = "root/<class>/<image>"
            per_class = {c: layout.images(os.path.join(root, c)) for c in layout.subdirs(root)}
            self._read_headers([p for ps in per_class.values() for p in ps], root)
            per_class = {
                c: self._readable(ps, os.path.join(root, c)) for c, ps in per_class.items()
            }
        if splits is None:
            self.class_names = tuple(per_class)
            files = self._divide(per_class, self.val_fraction, fc)
        else:
            self.layout, self.val_fraction = "root/<split>/<class>/<image>", None
            per_split = {}
            for s, d in splits.items():
                found = {c: layout.images(os.path.join(d, c)) for c in layout.subdirs(d)}
                self._read_headers([p for ps in found.values() for p in ps], d)
                per_split[s] = {
                    c: self._readable(ps, os.path.join(d, c)) for c, ps in found.items()
                }
            self.class_names = tuple(sorted({c for v in per_split.values() for c in v}))
            label = {c: i for i, c in enumerate(self.class_names)}
            files = {
                s: [(p, label[c]) for c, ps in v.items() for p in ps] for s, v in per_split.items()
            }
        self.split_seed = int(fc.get("split_seed", 0))
        self.split_names = [s for s in files if files[s]]
        rows = []  # (path, label, split folder)
        for k, s in enumerate(self.split_names):
            order = np.random.default_rng([self.split_seed, 1, k]).permutation(len(files[s]))
            base = root if splits is None else splits[s]
            rows += [(files[s][i][0], files[s][i][1], base) for i in order]
        self.paths = [r[0] for r in rows]
        self.labels = np.array([r[1] for r in rows], np.int64)
        self.orientations = np.array([self.headers[p].orientation for p in self.paths], np.int32)
        counts = [len(files[s]) for s in self.split_names]
        self.start = dict(zip(self.split_names, np.cumsum([0, *counts])[:-1].tolist(), strict=True))
        self.info = types.SimpleNamespace(
            splits=tfds.core.SplitDict(
                [
                    tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0)
                    for s, n in zip(self.split_names, counts, strict=True)
                ]
            )
        )
        sizes = [self.headers[p].size for p in self.paths]  # upright (width, height)
        self.mask_paths = self._masks(fc.masks, sizes) if self.has_masks else [""] * len(rows)
        boxes = [[] for _ in rows]
        if anns is not None:
            boxes = self._boxes(anns, [r[2] for r in rows], sizes, max_boxes)
        self.box_splits = np.cumsum([0] + [len(b) for b in boxes]).astype(np.int64)
        self.box_flat = np.array([b for bs in boxes for b in bs], np.float32).reshape(-1, 4)

    def _read_headers(self, paths: list[str], base: str) -> None:
        """Headers of ``paths`` into ``self.headers``; the undecodable ones are skipped."""
        good, bad = headers.read_headers(paths)
        self.headers.update(good)
        for path, why in bad:
            logging.warning("skipping image %r: %s", path, why)
            self.skipped.append((path, why))
            self._skipped_base[path] = base
        if bad:
            logging.warning(
                "skipped %d of %d image files that TensorFlow cannot decode under %s",
                len(bad),
                len(paths),
                base,
            )

    def _readable(self, paths: list[str], class_dir: str) -> list[str]:
        out = [p for p in paths if p in self.headers]
        if not out:
            path, why = next((p, w) for p, w in self.skipped if p in set(paths))
            raise ValueError(
                f"class folder {class_dir!r} has no image TensorFlow can decode "
                f"({len(paths)} skipped, e.g. {os.path.basename(path)!r}: {why})"
            )
        return out

    def identity(self, train_split: str) -> dict:
        """What a training checkpoint records of this data set (``checkpoint.fingerprint``):
        the class names in label order, the split rule, and the files as a hash of their
        sorted paths relative to the root with their classes (not the root's own path, so
        a moved folder still resumes)."""
        lines = sorted(
            f"{self._rel(p)}\t{self.class_names[k]}"
            for p, k in zip(self.paths, self.labels, strict=True)
        )
        digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
        return {
            "data_classes": list(self.class_names),
            "data_split": {
                "layout": self.layout,
                "train_split": str(train_split),
                "val_fraction": self.val_fraction,
                "split_seed": self.split_seed,
            },
            "data_files": f"{len(lines)} images, sha256 {digest[:16]}",
        }

    def _divide(self, per_class, val_fraction: float, fc) -> dict[str, list]:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.folder.val_fraction must be in [0, 1), got {val_fraction}")
        seed = int(fc.get("split_seed", 0))
        out = {s: [] for s in FLAT_SPLITS}
        for label, paths in enumerate(per_class.values()):
            order = np.random.default_rng([seed, 0, label]).permutation(len(paths))
            n_val = min(int(round(val_fraction * len(paths))), len(paths) - 1)
            out["validation"] += [(paths[i], label) for i in sorted(order[:n_val])]
            out["train"] += [(paths[i], label) for i in sorted(order[n_val:])]
        return out

    def _rel(self, path: str, base: str | None = None) -> str:
        return os.path.relpath(path, base or self.root).replace(os.sep, "/")

    def _masks(self, folder: str, sizes) -> list[str]:
        folder = os.path.abspath(os.path.expanduser(folder))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"data.folder.masks {folder!r} is not a folder")
        out = []
        for p, size in zip(self.paths, sizes, strict=True):
            m = os.path.join(folder, os.path.splitext(self._rel(p))[0] + ".png")
            try:
                with Image.open(m) as im:
                    msize = im.size
            except FileNotFoundError:
                raise FileNotFoundError(f"no mask {m!r} for image {self._rel(p)!r}") from None
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read mask {m!r}: {e}") from None
            if msize != size:
                raise ValueError(
                    f"mask {m!r} is {msize[0]}x{msize[1]}, its image {size[0]}x{size[1]} "
                    "(upright, EXIF orientation applied)"
                )
            out.append(m)
        return out

    def _boxes(self, anns, bases, sizes, max_boxes: int) -> list[list[list[float]]]:
        skipped = list(self._skipped_base)
        find = layout.finder(
            self.root, self.paths + skipped, bases + [self._skipped_base[p] for p in skipped]
        )
        known = set(self.class_names)
        out = [[] for _ in self.paths]
        for a in anns:
            i = find(a)
            if i >= len(self.paths):  # an undecodable image, left out with its boxes
                continue
            if a.cls is not None and a.cls not in known:
                some = ", ".join(self.class_names[:5]) + (", ..." if len(known) > 5 else "")
                raise ValueError(f"{a.where}: class {a.cls!r} is not a class folder ({some})")
            w, h = sizes[i]
            left, top, right, bottom = a.box
            if not (0 <= left < right <= w and 0 <= top < bottom <= h):
                turned = " (upright, EXIF applied)" if self.orientations[i] > 1 else ""
                raise ValueError(
                    f"{a.where}: box edges ({left:g}, {top:g}, {right:g}, {bottom:g}) are empty "
                    f"or outside the {w}x{h}{turned} image {self._rel(self.paths[i])!r}"
                )
            if a.cls is None or a.cls == self.class_names[self.labels[i]]:
                out[i].append([top / h, left / w, bottom / h, right / w])
        over = sum(len(b) > max_boxes for b in out)
        if over:
            logging.warning(
                "%d images have more than data.max_boxes=%d boxes; the extra ones are dropped",
                over,
                max_boxes,
            )
        return out

    def rows(self, split) -> np.ndarray:
        """Global example rows of a TFDS split spec (``train``, ``train[:10%]``, an even
        process slice, ...) in order."""
        if isinstance(split, str):
            split = tfds.core.ReadInstruction.from_spec(split)
        parts = []
        for a in split.to_absolute(self.info.splits):
            n = self.info.splits[a.splitname].num_examples
            lo = a.from_ or 0
            hi = n if a.to is None else a.to
            parts.append(np.arange(self.start[a.splitname] + lo, self.start[a.splitname] + hi))
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def as_dataset(self, split, shuffle_files=False, read_config=None, decoders=None):
        """Examples of ``split`` in the common form (:mod:`camjax.data.source`)."""
        del decoders  # nothing is decoded here: the pipeline decodes after skipping
        rows = self.rows(split)
        seed = None if read_config is None else read_config.shuffle_seed
        if shuffle_files and seed is not None:
            rows = rows[np.random.default_rng(seed).permutation(len(rows))]
        paths = tf.constant(self.paths or [""], tf.string)
        masks = tf.constant(self.mask_paths or [""], tf.string)
        labels = tf.constant(self.labels if len(self.labels) else [0], tf.int64)
        flat, splits = tf.constant(self.box_flat), tf.constant(self.box_splits)
        has_masks = self.has_masks
        # Only where some image is stored turned: the pipeline then rotates it upright.
        turned = bool((self.orientations > 1).any())
        orientations = tf.constant(self.orientations if turned else [1], tf.int32)

        def fn(r):
            ex = {
                "image": tf.io.read_file(tf.gather(paths, r)),
                "label": tf.gather(labels, r),
                "boxes": flat[splits[r] : splits[r + 1]],
            }
            if has_masks:
                ex["mask"] = tf.io.read_file(tf.gather(masks, r))
            if turned:
                ex["orientation"] = tf.gather(orientations, r)
            return ex

        ds = tf.data.Dataset.from_tensor_slices(rows).map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        if read_config is not None and read_config.options is not None:
            ds = ds.with_options(read_config.options)
        return ds


_CACHE: dict = {}


def _fingerprint(fc, max_boxes: int) -> tuple:
    """Config values plus the modification times of the folders and files read, so a
    changed folder is indexed again."""
    stamps = []
    for key in ("root", "boxes", "masks"):
        top = fc.get(key)
        if top and os.path.exists(os.path.expanduser(top)):
            for dirpath, dirnames, _ in os.walk(os.path.expanduser(top), followlinks=True):
                dirnames[:] = layout.visible(dirnames)
                stamps.append(os.stat(dirpath).st_mtime_ns)
            stamps.append(os.stat(os.path.expanduser(top)).st_mtime_ns)
    return (tuple(sorted((k, str(v)) for k, v in fc.items())), max_boxes, tuple(stamps))


def builder(data_cfg) -> FolderBuilder:
    """The indexed folder of ``data_cfg.folder`` (re-indexed when the folder changes)."""
    fc = data_cfg.get("folder")
    if fc is None or not fc.get("root"):
        raise ValueError("data.name='folder' needs data.folder.root (root/<class>/<image>)")
    key = _fingerprint(fc, int(data_cfg.max_boxes))
    if key not in _CACHE:
        _CACHE.clear()  # one folder at a time: indexes can be large
        _CACHE[key] = FolderBuilder(fc, int(data_cfg.max_boxes))
    return _CACHE[key]


def mask_values(mask: tf.Tensor) -> tf.Tensor:
    """0 background, anything else foreground (1); no ignore region."""
    return tf.cast(mask > 0, tf.uint8)


SOURCE = Source(
    builder=builder,
    class_names=lambda data_cfg, b: list(b.class_names),
    identity=lambda data_cfg, b: b.identity(data_cfg.train_split),
    standardize=lambda ds, data_cfg, split: ds,
    decoders=dict,
    has_masks=lambda data_cfg: bool(data_cfg.folder.get("masks")),
    mask_values=mask_values,
)
