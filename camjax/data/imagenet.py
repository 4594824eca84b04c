"""ILSVRC2012 (ImageNet-1k) through TFDS ``imagenet2012``, plus validation boxes.

TFDS prepares ``imagenet2012`` from the two archives in its manual directory and carries
no boxes; the validation boxes come from the ILSVRC2012 annotation XML folder
(``ILSVRC2012_bbox_val_v3.tgz`` extracted: ``ILSVRC2012_val_00000001.xml``, ...) or from
the CSV of the same content (``LOC_val_solution.csv``: ``ImageId,PredictionString`` with
``wnid x0 y0 x1 y1`` repeated), joined to the images by file name. Box numbers are taken
as inclusive pixel corners, as the WSOL benchmark code (Choe et al. 2020) does.

Class names: ``imagenet_classes.txt`` (line i = label i = the i-th WordNet id in sorted
order, which is the TFDS ``imagenet2012`` label order; ``wnid<TAB>lemmas``), generated from
``timm/data/_info/imagenet_synsets.txt`` and ``imagenet_synset_to_lemma.txt`` of the timm
1.0.31 wheel (Apache-2.0); the file was checked against TFDS's ``labels.txt``.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import logging
import os
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data.source import Source

MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_BOXES_HELP = (
    "set data.val_boxes to the folder of ILSVRC2012 validation box XML files "
    "(ILSVRC2012_bbox_val_v3.tgz extracted, e.g. <folder>/ILSVRC2012_val_00000001.xml) or to "
    "LOC_val_solution.csv (columns ImageId,PredictionString)"
)


@functools.cache
def class_table() -> tuple[tuple[str, str], ...]:
    """``((wnid, lemmas), ...)`` in label order, 1000 entries."""
    text = importlib.resources.files("camjax.data").joinpath("imagenet_classes.txt").read_text()
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line)
    if len(rows) != 1000:
        raise RuntimeError(f"imagenet_classes.txt has {len(rows)} lines, expected 1000")
    return rows


def class_names(data_cfg=None, builder=None) -> list[str]:
    """The 1000 lemma strings, e.g. ``names[0] == "tench, Tinca tinca"``."""
    del data_cfg, builder
    return [name for _, name in class_table()]


def _manual_dir(data_cfg) -> str:
    if data_cfg.get("manual_dir"):
        return os.path.expanduser(data_cfg.manual_dir)
    data_dir = data_cfg.get("data_dir") or os.path.join("~", "tensorflow_datasets")
    return os.path.join(os.path.expanduser(data_dir), "downloads", "manual")


def builder(data_cfg):
    """Prepared ``imagenet2012`` builder; prepares from the manual archives if needed."""
    b = tfds.builder("imagenet2012", data_dir=data_cfg.get("data_dir"))
    if b.is_prepared():
        return b
    manual = _manual_dir(data_cfg)
    try:
        b.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)
        )
    except Exception as e:
        status = ", ".join(
            f"{f} ({'found' if os.path.exists(os.path.join(manual, f)) else 'MISSING'})"
            for f in MANUAL_FILES
        )
        raise FileNotFoundError(
            f"ImageNet (imagenet2012) is not prepared in {b.data_dir} and preparing it failed. "
            f"Put {' and '.join(MANUAL_FILES)} (from image-net.org) in {manual} "
            f"(data.manual_dir), or point data.data_dir at a prepared TFDS folder. "
            f"Status: {status}. Cause: {e}"
        ) from e
    return b


def _parse_xml(path: str) -> list[tuple[int, int, int, int]]:
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        out.append(tuple(int(float(bb.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return out


def read_val_boxes(path: str) -> dict[str, list[tuple[int, int, int, int]]]:
    """``{file stem: [(x0, y0, x1, y1), ...]}`` from an XML folder or the CSV."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".xml"))
        if not names:
            raise FileNotFoundError(f"no .xml files in {path}; {_BOXES_HELP}")
        return {os.path.splitext(n)[0]: _parse_xml(os.path.join(path, n)) for n in names}
    if os.path.isfile(path):
        out = {}
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(
                reader.fieldnames
            ):
                raise ValueError(f"{path}: no ImageId,PredictionString columns; {_BOXES_HELP}")
            for row in reader:
                parts = row["PredictionString"].split()
                if len(parts) % 5:
                    raise ValueError(f"{path}: bad PredictionString for {row['ImageId']}")
                out[row["ImageId"]] = [
                    tuple(int(float(v)) for v in parts[i + 1 : i + 5])
                    for i in range(0, len(parts), 5)
                ]
        return out
    raise FileNotFoundError(f"ImageNet validation boxes not found at {path!r}; {_BOXES_HELP}")


def _image_shape(image: tf.Tensor) -> tf.Tensor:
    return tf.cond(
        tf.io.is_jpeg(image),
        lambda: tf.io.extract_jpeg_shape(image),
        lambda: tf.shape(tf.io.decode_image(image, channels=3, expand_animations=False)),
    )[:2]


def _box_lookup(boxes_by_stem, max_boxes: int):
    """Static hash table stem -> row, plus the flat boxes and row splits."""
    stems = sorted(boxes_by_stem)
    counts = np.array([len(boxes_by_stem[s]) for s in stems], np.int64)
    over = int((counts > max_boxes).sum())
    if over:
        logging.warning(
            "%d ImageNet validation images have more than max_boxes=%d boxes; the extra "
            "boxes are dropped (raise data.max_boxes to keep them)",
            over,
            max_boxes,
        )
    flat = np.array([b for s in stems for b in boxes_by_stem[s]], np.float32).reshape(-1, 4)
    splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(stems), tf.range(len(stems), dtype=tf.int64)
        ),
        default_value=-1,
    )
    return table, tf.constant(flat), tf.constant(splits)


def standardize(ds: tf.data.Dataset, data_cfg, split: str) -> tf.data.Dataset:
    """Common form; validation examples get their boxes, other splits none."""
    if split.startswith("validation"):
        if not data_cfg.get("val_boxes"):
            raise FileNotFoundError(f"ImageNet validation boxes are not configured: {_BOXES_HELP}")
        table, flat, splits = _box_lookup(read_val_boxes(data_cfg.val_boxes), data_cfg.max_boxes)

        def fn(ex):
            name = tf.strings.split(ex["file_name"], "/")[-1]
            stem = tf.strings.regex_replace(name, r"\.[^.]*$", "")
            row = table.lookup(stem)
            check = tf.debugging.Assert(row >= 0, ["no validation box for", ex["file_name"]])
            with tf.control_dependencies([check]):
                px = flat[splits[row] : splits[row + 1]]
            hw = tf.cast(_image_shape(ex["image"]), tf.float32)
            h, w = hw[0], hw[1]
            x0, y0, x1, y1 = tf.unstack(px, num=4, axis=-1)
            boxes = tf.stack([y0 / h, x0 / w, (y1 + 1) / h, (x1 + 1) / w], axis=-1)
            # The devkit's image number (ILSVRC2012_val_00000036 -> 36), for eval.blacklist.
            number = tf.strings.to_number(tf.strings.regex_replace(stem, r"^.*_", ""), tf.int32)
            return {"image": ex["image"], "label": ex["label"], "boxes": boxes, "image_id": number}

    else:

        def fn(ex):
            return {"image": ex["image"], "label": ex["label"], "boxes": tf.zeros([0, 4])}

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


SOURCE = Source(
    builder=builder,
    class_names=class_names,
    standardize=standardize,
    decoders=lambda: {"image": tfds.decode.SkipDecoding()},
    has_masks=False,
)
