"""Training and evaluation iterators over TFDS data sets (tf.data on the CPU only).

Order as a pure function of (seed, step), so a killed run resumes exactly: the examples
of this process form epochs of ``N`` examples; example ``i`` of epoch ``e`` sits at
stream position ``e * N + i`` and is augmented with the stateless seed ``(seed, process,
e * N + i)``. Batches are consecutive runs of ``B`` examples of this endless stream, so
batch ``k`` starts at position ``k * B`` and resuming at ``start_step`` starts there; a
batch that straddles two epochs takes its head from the end of one and its tail from the
start of the next. Which example is at which position (``camjax.data.stream``): when the
decoded slice fits ``data.cache_decoded_mb`` it is read once in a fixed order, decoded
and held in memory, and epoch ``e`` is a permutation seeded by ``(seed, process, e)``;
otherwise epoch ``e`` reads the files in an order and shuffles with a buffer, both seeded
by ``(seed, process, e)``, and a resumed epoch skips records *before* decoding.

Multi-host: process ``p`` of ``P`` reads ``tfds.split_for_jax_process`` (even slices of
the split) and gets batches of ``global_batch_size // P``. Evaluation pads every process
to the same number of batches (the largest slice's), marking padding ``valid=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data import cub, image_folder, imagenet, preprocess, shapes, stream, tfds_any
from camjax.data.source import Source


def keep_tensorflow_on_host() -> None:
    """Hide GPUs and TPUs from TensorFlow, which only decodes input here: otherwise it would
    take accelerator memory that JAX needs. Called when a pipeline is built (never at
    import); a no-op once TensorFlow has initialised its devices."""
    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass


# Training batches the streamed form keeps ready (tf.data prefetch): up to 16, so that
# opening the next epoch's files does not starve the step, within 64 MiB.
READ_AHEAD_BATCHES = 16
READ_AHEAD_BYTES = 64 * 2**20

# data_cfg.name -> Source.
SOURCES: dict[str, Source] = {
    "camjax_shapes": shapes.SOURCE,
    "imagenet2012": imagenet.SOURCE,
    "caltech_birds2011": cub.SOURCE,
    "folder": image_folder.SOURCE,
    "tfds": tfds_any.SOURCE,
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int
    num_examples: dict[str, int]
    has_masks: bool
    # Image files left out because TensorFlow cannot decode them: (path, reason).
    skipped: tuple[tuple[str, str], ...] = ()
    # The data's fingerprint fields for training checkpoints (Source.identity), or None.
    identity: dict | None = None


def source_of(data_cfg) -> Source:
    if data_cfg.name not in SOURCES:
        raise ValueError(f"unknown data set {data_cfg.name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[data_cfg.name]


def has_masks(src: Source, data_cfg) -> bool:
    """``Source.has_masks``, a bool or (for configurable sources) a function of data_cfg."""
    return bool(src.has_masks(data_cfg) if callable(src.has_masks) else src.has_masks)


def info(data_cfg) -> DatasetInfo:
    """Classes, input side, examples per split, whether masks exist (prepares if needed)."""
    keep_tensorflow_on_host()
    src = source_of(data_cfg)
    b = src.builder(data_cfg)
    sizes = src.split_sizes(data_cfg)
    if sizes is None:
        sizes = {name: int(s.num_examples) for name, s in b.info.splits.items()}
    names = tuple(src.class_names(data_cfg, b))
    masks = has_masks(src, data_cfg)
    skipped = tuple(tuple(x) for x in getattr(b, "skipped", ()))
    identity = src.identity(data_cfg, b)
    return DatasetInfo(
        len(names), names, int(data_cfg.image_size), dict(sizes), masks, skipped, identity
    )


def process_layout(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # only when the caller leaves the process layout to JAX

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return int(process_index), int(process_count)


def local_batch(global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be a positive multiple of the "
            f"process count {process_count}"
        )
    return global_batch_size // process_count


def _seed(*parts: int) -> int:
    """A 31-bit seed mixed from integers (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


def deterministic_options() -> tf.data.Options:
    o = tf.data.Options()
    o.deterministic = True
    return o


def read_split(src, b, data_cfg, split, pi, pc, shuffle_seed=None) -> tf.data.Dataset:
    """This process's slice of ``split`` in common form (files shuffled if seeded)."""
    available = set(b.info.splits.keys())
    if available and split.split("[")[0] not in available:  # "validation[:10%]" slices too
        raise ValueError(f"{data_cfg.name} has no split {split!r}; splits: {sorted(available)}")
    sub = tfds.split_for_jax_process(split, process_index=pi, process_count=pc)
    read_config = tfds.ReadConfig(
        options=deterministic_options(),
        shuffle_seed=shuffle_seed,
        # Every iterator of this dataset (the head and the rest of an epoch) must see
        # the same file order; TF reshuffles per iterator by default.
        shuffle_reshuffle_each_iteration=False,
        interleave_cycle_length=16,
        interleave_block_length=1,
        # No TFDS auto-cache: every dataset here is iterated once, often partly (an epoch's
        # head, a resumed epoch, evaluation's max_batches), which leaves a cache half-filled.
        try_autocache=False,
    )
    ds = b.as_dataset(
        split=sub,
        shuffle_files=shuffle_seed is not None,
        read_config=read_config,
        decoders=src.decoders(),
    )
    return src.standardize(ds, data_cfg, split)


def count_examples(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n < 0:  # unknown: count once
        n = int(ds.reduce(np.int64(0), lambda c, _: c + 1))
    return n


def mask_pixels(mask: tf.Tensor) -> tf.Tensor:
    """Encoded PNG or decoded ``[h, w(, 1)]`` mask -> uint8 ``[h, w]``."""
    if mask.dtype == tf.string:
        mask = tf.io.decode_png(mask, channels=1)
    mask = tf.cast(mask, tf.uint8)
    if mask.shape.rank == 3:
        mask = mask[..., 0]
    return mask


def decode_mask(src: Source, mask: tf.Tensor) -> tf.Tensor:
    return src.mask_values(mask_pixels(mask))


def _train_map(src: Source, data_cfg, aug_seed: int):
    augment = preprocess.TRAIN_AUGMENTS.get(data_cfg.train_augment)
    if augment is None:
        raise ValueError(
            f"unknown train_augment {data_cfg.train_augment!r}; known: "
            f"{', '.join(preprocess.TRAIN_AUGMENTS)}"
        )
    size = int(data_cfg.image_size)

    def fn(position, ex):
        seed = tf.stack([tf.constant(aug_seed, tf.int64), position])
        mask = decode_mask(src, ex["mask"]) if has_masks(src, data_cfg) else None

        def run(image):
            out = augment(image, ex["boxes"], mask, size, seed)
            return out if mask is not None else out[:3]

        if "orientation" in ex:  # stored turned: augment the upright pixels
            # Images stored upright keep the encoded path (e.g. decode_and_crop_jpeg).
            out = tf.cond(
                ex["orientation"] > 1, lambda: run(upright_image(ex)), lambda: run(ex["image"])
            )
        else:
            out = run(ex["image"])
        img, px, keep, m = (*out, None) if mask is None else out
        return preprocess.finalize(
            img,
            px,
            keep,
            m,
            ex["label"],
            size=size,
            max_boxes=int(data_cfg.max_boxes),
            normalization=data_cfg.normalization,
        )

    return fn


def train_iterator(
    data_cfg,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches for this process; batch ``k`` depends only on (seed, k).

    Yields dicts of numpy arrays ``image, label, bboxes, bbox_valid[, mask]`` with leading
    axis ``global_batch_size // process_count``. The decoded slice is held in memory when
    it fits ``data_cfg.cache_decoded_mb`` (``camjax.data.stream``).
    """
    keep_tensorflow_on_host()
    pi, pc = process_layout(process_index, process_count)
    batch = local_batch(global_batch_size, pc)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    src = source_of(data_cfg)
    b = src.builder(data_cfg)
    split = data_cfg.train_split
    n = count_examples(read_split(src, b, data_cfg, split, pi, pc))
    if n == 0:
        raise ValueError(f"process {pi} of {pc} has no examples in {data_cfg.name}:{split}")
    augment = _train_map(src, data_cfg, _seed(seed, pi, 1))
    pos = start_step * batch
    if cache_size(src, b, data_cfg, n) is not None:
        masks = has_masks(src, data_cfg)
        ds = read_split(src, b, data_cfg, split, pi, pc)  # fixed order: no file shuffling
        ds = ds.map(_cache_decode(masks), num_parallel_calls=tf.data.AUTOTUNE)
        side = _image_shape(b, data_cfg)[:2]
        arrays = stream.load(ds.with_options(deterministic_options()), n, side, masks)
        key = _seed(seed, pi, 3)
        return stream.cached(
            arrays,
            key=key,
            start=pos,
            batch=batch,
            augment=augment,
            options=deterministic_options(),
        )
    pieces = stream.epoch_pieces(
        lambda epoch: read_split(
            src, b, data_cfg, split, pi, pc, shuffle_seed=_seed(seed, pi, 2, epoch)
        ),
        n=n,
        pos=pos,
        batch=batch,
        augment=augment,
        buffer=max(1, int(data_cfg.shuffle_buffer)),
        shuffle_seed=lambda epoch: _seed(seed, pi, 3, epoch),
        options=deterministic_options(),
        ahead=_ahead(data_cfg, src, batch),
    )
    return stream.rebatch(pieces, batch)


def _ahead(data_cfg, src: Source, batch: int) -> int:
    """Batches to prefetch: ``READ_AHEAD_BATCHES`` within ``READ_AHEAD_BYTES``, at least 2."""
    side = int(data_cfg.image_size)
    per_example = side * side * (3 * 4 + (1 if has_masks(src, data_cfg) else 0))
    return max(2, min(READ_AHEAD_BATCHES, READ_AHEAD_BYTES // (batch * per_example)))


def _image_shape(b, data_cfg) -> tuple | None:
    """The declared shape of the image feature (None where it is not a TFDS feature)."""
    key = source_of(data_cfg).image_key(data_cfg)
    try:
        node = b.info.features
        for part in key.split("/"):
            node = node[part]
        return tuple(node.shape)
    except (AttributeError, KeyError, TypeError):
        return None


def cache_size(src: Source, b, data_cfg, n: int) -> int | None:
    """Bytes of the decoded train slice of ``n`` examples if it is held in memory: the
    image feature declares a fixed side and the size is within ``cache_decoded_mb``;
    None otherwise (each epoch reads and decodes the records again)."""
    size = stream.decoded_size(_image_shape(b, data_cfg), n, has_masks(src, data_cfg))
    limit = float(data_cfg.get("cache_decoded_mb", 0))
    return size if stream.fits(size, limit) else None


def upright_image(ex: dict) -> tf.Tensor:
    """The example's decoded image, turned upright by its EXIF ``orientation`` if any."""
    image = preprocess.decode(ex["image"])
    return preprocess.upright(image, ex["orientation"]) if "orientation" in ex else image


def _cache_decode(masks: bool):
    """Common-form example -> decoded uint8 image (and mask pixels; the source's mask
    values are applied by the train map, once)."""

    def fn(ex):
        out = {"image": upright_image(ex), "label": ex["label"], "boxes": ex["boxes"]}
        if masks:
            out["mask"] = mask_pixels(ex["mask"])
        return out

    return fn
