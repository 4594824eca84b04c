"""One process's endless training stream: the decoded in-memory cache, epochs, read-ahead.

Both forms keep the contract of ``camjax.data.pipeline``: stream position ``p = e * N + i``
is example ``i`` of epoch ``e`` (``N`` examples in this process's slice), every example
appears once per epoch, it is augmented with the stateless seed ``(aug_seed, p)``, and
batch ``k`` is positions ``[k * B, (k + 1) * B)``, so batch ``k`` depends only on
(seed, k) and a run resumed at step ``k`` continues the same stream.

- Cached (the decoded slice fits ``data.cache_decoded_mb``): the slice is read once in a
  fixed order and decoded into uint8 arrays held in memory. Position ``p`` takes example
  ``index_shuffle(i, (key, e), N - 1)``, a seeded permutation of epoch ``e`` computed per
  index, so there is no shuffle buffer to fill, resuming skips nothing, and an epoch
  boundary is just the next position: one tf.data pipeline with one prefetch.
- Streamed (otherwise): each epoch re-reads the records (file order and shuffle buffer
  seeded per epoch) and decodes after skipping. Epochs are chained inside one tf.data
  pipeline (chunks of several epochs) whose prefetch keeps batches ready, so opening the
  next epoch (file reads, shuffle buffer fill) overlaps the consumer's work on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

# One decoded example in memory: uint8 pixels; the label and boxes are small beside them.
CHANNELS = 3


def decoded_size(image_shape, num_examples: int, has_masks: bool) -> int | None:
    """Bytes of ``num_examples`` decoded images (uint8, 3 channels) and masks (uint8, one
    per image pixel), or None when the image side is not fixed (``None`` in the shape)."""
    if image_shape is None or len(image_shape) < 2:
        return None
    h, w = image_shape[0], image_shape[1]
    if h is None or w is None:
        return None
    per_example = int(h) * int(w) * (CHANNELS + (1 if has_masks else 0))
    return per_example * int(num_examples)


def fits(size: int | None, limit_mb: float) -> bool:
    """Whether a decoded split of ``size`` bytes goes in memory (``limit_mb`` 0: never)."""
    return size is not None and limit_mb > 0 and size <= limit_mb * 2**20


def load(ds: tf.data.Dataset, n: int, side: tuple[int, int], has_masks: bool) -> dict:
    """The ``n`` decoded examples of ``ds``, in its order, as tensors: ``image [n, h, w,
    3]``, ``label [n]``, ``boxes [m, 4]`` (all boxes, example by example), ``box_splits
    [n + 1]`` (example ``j``'s boxes are ``boxes[box_splits[j]:box_splits[j + 1]]``) and,
    with masks, ``mask [n, h, w]``; ``side = (h, w)``, the declared image side.
    Batched inside TensorFlow: one copy in memory."""
    h, w = side

    def fixed(ex):
        ex = dict(ex, image=tf.ensure_shape(ex["image"], [h, w, CHANNELS]))
        if has_masks:
            ex["mask"] = tf.ensure_shape(ex["mask"], [h, w])
        return ex

    try:  # n + 1: a longer slice would show
        whole = ds.map(fixed).ragged_batch(n + 1).get_single_element()
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(
            f"a decoded image or mask is not {h}x{w}, the declared image side; "
            f"set data.cache_decoded_mb = 0 ({e.message.splitlines()[0]})"
        ) from None
    got = int(whole["label"].shape[0])
    if got != n:
        raise ValueError(f"read {got} examples for the cache, expected {n}")
    out = {key: whole[key] for key in ("image", "label", "mask") if key in whole}
    boxes = whole["boxes"]
    if isinstance(boxes, tf.RaggedTensor):
        out["boxes"] = tf.reshape(tf.cast(boxes.flat_values, tf.float32), [-1, 4])
        out["box_splits"] = tf.cast(boxes.row_splits, tf.int64)
    else:  # every example has the same number of boxes
        k = int(boxes.shape[1])
        out["boxes"] = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        out["box_splits"] = tf.range(n + 1, dtype=tf.int64) * k
    return out


def cached(
    arrays: dict[str, tf.Tensor],
    *,
    key: int,
    start: int,
    batch: int,
    augment: Callable,
    options: tf.data.Options,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of the cached stream from position ``start`` (module docstring).

    ``key``: the permutation seed (epoch ``e`` permutes with ``(key, e)``);
    ``augment(position, example)`` as for the streamed form.
    """
    n = int(arrays["label"].shape[0])
    t = arrays
    last = tf.constant(n - 1, tf.int64)
    key_t = tf.constant(key, tf.int64)

    def example(pos):
        epoch, i = pos // n, pos % n
        j = tf.random.experimental.index_shuffle(i, tf.stack([key_t, epoch]), last)
        ex = {
            "image": tf.gather(t["image"], j),
            "label": tf.gather(t["label"], j),
            "boxes": t["boxes"][t["box_splits"][j] : t["box_splits"][j + 1]],
        }
        if "mask" in t:
            ex["mask"] = tf.gather(t["mask"], j)
        return augment(pos, ex)

    ds = tf.data.Dataset.range(start, 2**62)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True)
    return ds.prefetch(4).with_options(options).as_numpy_iterator()


def epoch_pieces(
    read: Callable[[int], tf.data.Dataset],
    *,
    n: int,
    pos: int,
    batch: int,
    augment: Callable,
    buffer: int,
    shuffle_seed: Callable[[int], int],
    options: tf.data.Options,
    ahead: int,
    epochs_per_chunk: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """Streamed form: batches from position ``pos``, cut at multiples of ``batch``.

    ``read(epoch)``: the slice's records in epoch ``epoch``'s file order;
    ``shuffle_seed(epoch)``: that epoch's shuffle-buffer seed. Epochs are chained in
    chunks of ``epochs_per_chunk`` inside one tf.data pipeline whose prefetch keeps
    ``ahead`` batches ready, so the next epoch opens (file reads, buffer fill) while the
    consumer still has batches of the current one.
    """
    epoch, offset = divmod(pos, n)
    while True:
        ds = None
        for e in range(epoch, epoch + epochs_per_chunk):
            d = read(e).shuffle(buffer, seed=shuffle_seed(e), reshuffle_each_iteration=False)
            d = d.enumerate().map(lambda i, ex, base=e * n: (i + base, ex))
            ds = d.skip(offset) if ds is None else ds.concatenate(d)  # raw: not decoded yet
        start = epoch * n + offset
        head = (-start) % batch  # examples completing the previous chunk's last batch
        parts = []
        if head:
            parts.append(ds.take(head))
            ds = ds.skip(head)
        parts.append(ds)
        for part in parts:
            part = part.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
            yield from part.prefetch(ahead).with_options(options).as_numpy_iterator()
        epoch, offset = epoch + epochs_per_chunk, 0


def rebatch(pieces: Iterable[dict], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Join pieces shorter than ``batch`` (epoch ends) into full batches."""
    carry = None
    for piece in pieces:
        if carry is None and len(piece["label"]) == batch:
            yield piece
            continue
        carry = piece if carry is None else {k: np.concatenate([carry[k], piece[k]]) for k in carry}
        if len(carry["label"]) >= batch:
            if len(carry["label"]) > batch:
                raise AssertionError("pieces must be cut at multiples of the batch size")
            yield carry
            carry = None
