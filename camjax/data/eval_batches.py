"""Evaluation batches: each example of a split exactly once, in full padded batches, with
the same batch count on every process (so collective steps line up across hosts). Reading
and the process layout are those of :mod:`camjax.data.pipeline`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from camjax.data import preprocess
from camjax.data.pipeline import (
    count_examples,
    decode_mask,
    deterministic_options,
    has_masks,
    keep_tensorflow_on_host,
    local_batch,
    process_layout,
    read_split,
    source_of,
    upright_image,
)
from camjax.data.source import Source


def _eval_map(src: Source, data_cfg, size: int | None = None, original: bool = False):
    size = int(size or data_cfg.image_size)
    max_boxes = int(data_cfg.max_boxes)

    def fn(ex):
        mask = decode_mask(src, ex["mask"]) if has_masks(src, data_cfg) else None
        image = upright_image(ex)
        img, px, keep, m = preprocess.eval_resize(image, ex["boxes"], mask, size)
        out = preprocess.finalize(
            img,
            px,
            keep,
            m,
            ex["label"],
            size=size,
            max_boxes=max_boxes,
            normalization=data_cfg.normalization,
        )
        out["valid"] = tf.constant(True)
        # ILSVRC validation image number where the source has one (eval.blacklist), else -1.
        out["image_id"] = tf.cast(ex["image_id"], tf.int32) if "image_id" in ex else tf.constant(-1)
        if original:  # ten-crop evaluation scores boxes at the original image size
            hw = tf.shape(image)[:2]
            opx = preprocess.original_boxes(ex["boxes"], hw)[:max_boxes]
            n = tf.shape(opx)[0]
            out["orig_hw"] = tf.cast(hw, tf.int32)
            out["orig_bboxes"] = tf.ensure_shape(
                tf.pad(opx, [[0, max_boxes - n], [0, 0]]), [max_boxes, 4]
            )
        return out

    return fn


def empty_batch(
    batch: int, size: int, max_boxes: int, has_masks: bool, original: bool = False
) -> dict:
    """An all-padding batch (``valid`` all False) with the eval batch layout."""
    out = {
        "image": np.zeros((batch, size, size, 3), np.float32),
        "label": np.zeros((batch,), np.int32),
        "bboxes": np.zeros((batch, max_boxes, 4), np.int32),
        "bbox_valid": np.zeros((batch, max_boxes), bool),
    }
    if has_masks:
        out["mask"] = np.zeros((batch, size, size), np.uint8)
    out["valid"] = np.zeros((batch,), bool)
    out["image_id"] = np.full((batch,), -1, np.int32)
    if original:
        out["orig_hw"] = np.ones((batch, 2), np.int32)
        out["orig_bboxes"] = np.zeros((batch, max_boxes, 4), np.int32)
    return out


def eval_iterator(
    data_cfg,
    split: str,
    *,
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    size: int | None = None,
    original: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Each example of ``split`` exactly once (``valid``), in full padded batches.

    Every process yields ``ceil(max_p n_p / B)`` batches, ``n_p`` its slice's size, so
    collective steps line up across hosts. ``size``: resize side (default
    ``data_cfg.image_size``; 256 for ten-crop testing). ``original``: add ``orig_hw
    [B, 2]`` and ``orig_bboxes [B, max_boxes, 4]`` (pixels of the original image).
    """
    keep_tensorflow_on_host()
    pi, pc = process_layout(process_index, process_count)
    batch = local_batch(global_batch_size, pc)
    src = source_of(data_cfg)
    b = src.builder(data_cfg)
    counts = [count_examples(read_split(src, b, data_cfg, split, p, pc)) for p in range(pc)]
    num_batches = math.ceil(max(counts) / batch)
    ds = read_split(src, b, data_cfg, split, pi, pc)
    ds = ds.map(_eval_map(src, data_cfg, size, original), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch).prefetch(2).with_options(deterministic_options())
    masks = has_masks(src, data_cfg)
    side = int(size or data_cfg.image_size)
    pad = empty_batch(batch, side, int(data_cfg.max_boxes), masks, original)
    return _padded(ds.as_numpy_iterator(), pad, num_batches)


def _padded(batches, pad: dict, num_batches: int):
    size = len(pad["valid"])
    done = 0
    for piece in batches:
        k = len(piece["label"])
        if k < size:
            piece = {key: np.concatenate([piece[key], pad[key][k:]]) for key in pad}
        yield piece
        done += 1
    for _ in range(num_batches - done):
        yield {key: v.copy() for key, v in pad.items()}
