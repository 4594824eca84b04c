"""Image preprocessing in tf.data: the paper's crops, eval resizing, box geometry.

Geometry convention. Inside the pipeline boxes are *normalised continuous* boxes
``[ymin, xmin, ymax, xmax]`` (TFDS ``BBoxFeature`` layout): pixel ``i`` of an image of
side ``n`` covers ``[i/n, (i+1)/n)``, so the inclusive pixel box ``(x0, .., x1)`` is
``xmin = x0 / W``, ``xmax = (x1 + 1) / W``. Crops and resizes are affine maps of these
numbers. At the end they become inclusive pixel corners at the model input side ``S`` by
the pixel-centre rule: pixel ``j`` is inside iff its centre ``j + 0.5`` lies in
``[xmin * S, xmax * S)``, i.e. ``x0 = ceil(xmin*S - 0.5)``, ``x1 = ceil(xmax*S - 0.5) - 1``.
That is exactly the set of output pixels that a nearest-neighbour resize (half-pixel
centres) takes from inside the box, and the set where a bilinear resize (half-pixel
centres, no antialiasing) of a 0/1 box image exceeds 0.5, so a box drawn into the image
still frames the same pixels after preprocessing (tests/test_data_preprocess.py).

Training (Zhou et al. 2016 released GoogLeNet-CAM solver; Caffe ImageNet recipe): resize
to ``S * 256 / 224`` then a random ``S x S`` crop and a horizontal mirror ("crop_flip");
or the Inception random-resized crop (area 8%-100%, aspect 3/4-4/3; Szegedy et al. 2015)
("random_resized_crop"); or no augmentation ("none" = the eval resize). Evaluation: resize
the whole image to ``S x S``, antialiased when shrinking (as the WSOL benchmark of Choe
et al. 2020 does through PIL). All
randomness is stateless, seeded by a ``[2]`` int seed given per example, so a pipeline is
a pure function of (seed, example position).
"""

from __future__ import annotations

import tensorflow as tf

from camjax.files.images import NORMALIZATIONS


def normalize(image: tf.Tensor, mode: str) -> tf.Tensor:
    """Map a ``[0, 255]`` image to model input units by ``NORMALIZATIONS[mode]``
    (:data:`camjax.files.images.NORMALIZATIONS`, the table the numpy path uses)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; known: {', '.join(NORMALIZATIONS)}")
    scale, mean, std = NORMALIZATIONS[mode]
    return (tf.cast(image, tf.float32) / scale - tf.constant(mean)) / tf.constant(std)


def pixel_boxes(boxes: tf.Tensor, size: int) -> tf.Tensor:
    """Normalised ``[n, 4]`` (ymin, xmin, ymax, xmax) -> int32 inclusive (x0, y0, x1, y1).

    Pixel-centre rule (module docstring); a box thinner than one output pixel keeps the
    one pixel its start falls in, so no ground truth vanishes.
    """
    s = float(size)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    x0 = tf.math.ceil(xmin * s - 0.5)
    y0 = tf.math.ceil(ymin * s - 0.5)
    x1 = tf.math.ceil(xmax * s - 0.5) - 1.0
    y1 = tf.math.ceil(ymax * s - 0.5) - 1.0
    x0 = tf.clip_by_value(x0, 0.0, s - 1.0)
    y0 = tf.clip_by_value(y0, 0.0, s - 1.0)
    x1 = tf.clip_by_value(tf.maximum(x1, x0), 0.0, s - 1.0)
    y1 = tf.clip_by_value(tf.maximum(y1, y0), 0.0, s - 1.0)
    return tf.cast(tf.stack([x0, y0, x1, y1], axis=-1), tf.int32)


def original_boxes(boxes: tf.Tensor, hw: tf.Tensor) -> tf.Tensor:
    """Normalised boxes -> int32 inclusive pixel corners in an image of ``hw = (h, w)``
    (the pixel-centre rule of :func:`pixel_boxes` per axis; exact for boxes that came
    from that image's pixels)."""
    h, w = tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    x0 = tf.clip_by_value(tf.math.ceil(xmin * w - 0.5), 0.0, w - 1.0)
    y0 = tf.clip_by_value(tf.math.ceil(ymin * h - 0.5), 0.0, h - 1.0)
    x1 = tf.clip_by_value(tf.maximum(tf.math.ceil(xmax * w - 0.5) - 1.0, x0), 0.0, w - 1.0)
    y1 = tf.clip_by_value(tf.maximum(tf.math.ceil(ymax * h - 0.5) - 1.0, y0), 0.0, h - 1.0)
    return tf.cast(tf.stack([x0, y0, x1, y1], axis=-1), tf.int32)


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes in a crop ``window`` (normalised ymin, xmin, ymax, xmax of the crop).

    ``b' = (b - w0) / (w1 - w0)`` clipped to [0, 1]; a box is kept iff some of its area
    lies inside the window.
    """
    wy0, wx0, wy1, wx1 = tf.unstack(window)
    scale = tf.stack([wy1 - wy0, wx1 - wx0, wy1 - wy0, wx1 - wx0])
    shifted = (boxes - tf.stack([wy0, wx0, wy0, wx0])) / scale
    clipped = tf.clip_by_value(shifted, 0.0, 1.0)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def _resize(image: tf.Tensor, size, method: str, antialias: bool = False) -> tf.Tensor:
    # antialias=False: classic (Caffe/OpenCV INTER_LINEAR) resampling, which is what
    # makes the 0.5-threshold box identity of the module docstring exact. antialias=True
    # (evaluation): when shrinking, the triangle filter is widened by the scale, as PIL's
    # bilinear resize (torchvision's Resize on PIL images, the WSOL benchmark's) does.
    return tf.image.resize(image, size, method=method, antialias=antialias)


def resize_mask(mask: tf.Tensor, size) -> tf.Tensor:
    """Nearest-neighbour resize of a ``[h, w]`` uint8 mask (labels are not blended)."""
    return tf.cast(_resize(mask[..., None], size, "nearest")[..., 0], tf.uint8)


def flip(image: tf.Tensor, boxes_px: tf.Tensor, mask: tf.Tensor | None, size: int):
    """Horizontal mirror at output side ``size``: ``x -> size - 1 - x`` (exact, in pixels)."""
    image = tf.reverse(image, axis=[1])
    x0, y0, x1, y1 = tf.unstack(boxes_px, axis=-1)
    boxes_px = tf.stack([size - 1 - x1, y0, size - 1 - x0, y1], axis=-1)
    if mask is not None:
        mask = tf.reverse(mask, axis=[1])
    return image, boxes_px, mask


def decode(image: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG/PNG/...) or a decoded tensor -> uint8 ``[h, w, 3]``."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image
    image = tf.cast(image, tf.uint8)
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """A decoded ``[h, w, c]`` image turned by its EXIF ``orientation`` (1..8) as PIL's
    ``ImageOps.exif_transpose`` does: 2 mirror, 3 turn 180, 4 flip, 5 transpose, 6 turn
    90 clockwise, 7 transverse, 8 turn 90 counter-clockwise; other values: unchanged."""
    image = tf.convert_to_tensor(image)

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,
        lambda: tf.reverse(image, [1]),
        lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]),
        lambda: transpose(image),
        lambda: tf.reverse(transpose(image), [1]),
        lambda: tf.reverse(transpose(image), [0, 1]),
        lambda: tf.reverse(transpose(image), [0]),
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    out = tf.switch_case(tf.cast(index, tf.int32), branches)
    out.set_shape([None, None, image.shape[-1]])
    return out


def eval_resize(image, boxes, mask, size: int, antialias: bool = True):
    """Whole image -> ``size x size``; normalised boxes are unchanged by a full resize.

    Bilinear, antialiased when shrinking (the WSOL benchmark resizes PIL images, whose
    bilinear filter widens with the scale; without it a 500-pixel photo shrunk to 224
    aliases). Enlarging is plain bilinear either way. The boxes follow the pixel-centre
    rule of the module docstring whatever the filter.
    """
    img = _resize(decode(image), (size, size), "bilinear", antialias)
    m = None if mask is None else resize_mask(mask, (size, size))
    return img, pixel_boxes(boxes, size), tf.ones_like(boxes[:, 0], tf.bool), m


def crop_flip(image, boxes, mask, size: int, seed: tf.Tensor):
    """Paper training crop: resize to ``round(size * 256 / 224)``, random crop, mirror."""
    big = int(round(size * 256 / 224))
    img = _resize(decode(image), (big, big), "bilinear")
    seeds = tf.random.experimental.stateless_split(seed, 2)
    off = tf.random.stateless_uniform([2], seeds[0], 0, big - size + 1, dtype=tf.int32)
    img = img[off[0] : off[0] + size, off[1] : off[1] + size]
    m = None
    if mask is not None:
        m = resize_mask(mask, (big, big))[off[0] : off[0] + size, off[1] : off[1] + size]
    o = tf.cast(off, tf.float32) / big
    window = tf.stack([o[0], o[1], o[0] + size / big, o[1] + size / big])
    nb, keep = crop_boxes(boxes, window)
    px = pixel_boxes(nb, size)
    return _maybe_flip(img, px, keep, m, size, seeds[1])


def _maybe_flip(img, px, keep, m, size, seed):
    do_flip = tf.random.stateless_uniform([], seed) < 0.5
    fi, fb, fm = flip(img, px, m, size)
    img = tf.where(do_flip, fi, img)
    px = tf.where(do_flip, fb, px)
    if m is not None:
        m = tf.where(do_flip, fm, m)
    return img, px, keep, m


def random_resized_crop(
    image, boxes, mask, size: int, seed: tf.Tensor, area=(0.08, 1.0), aspect=(3 / 4, 4 / 3)
):
    """Inception crop (area ``area`` of the image, aspect ``aspect``), resize, mirror.

    JPEG bytes are decoded only inside the crop window (``decode_and_crop_jpeg``).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if image.dtype == tf.string:
        shape = tf.cond(
            tf.io.is_jpeg(image),
            lambda: tf.io.extract_jpeg_shape(image),
            lambda: tf.shape(decode(image), out_type=tf.int32),
        )
    else:
        shape = tf.shape(image, out_type=tf.int32)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=aspect,
        area_range=area,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    oy, ox = begin[0], begin[1]
    ch, cw = crop_size[0], crop_size[1]
    if image.dtype == tf.string:
        window_px = tf.stack([oy, ox, ch, cw])
        img = tf.cond(
            tf.io.is_jpeg(image),
            lambda: tf.io.decode_and_crop_jpeg(image, window_px, channels=3),
            lambda: decode(image)[oy : oy + ch, ox : ox + cw],
        )
        img.set_shape([None, None, 3])
    else:
        img = decode(image)[oy : oy + ch, ox : ox + cw]
    img = _resize(img, (size, size), "bilinear")
    m = None
    if mask is not None:
        m = resize_mask(mask[oy : oy + ch, ox : ox + cw], (size, size))
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    fy, fx, fh, fw = (tf.cast(v, tf.float32) for v in (oy, ox, ch, cw))
    window = tf.stack([fy / h, fx / w, (fy + fh) / h, (fx + fw) / w])
    nb, keep = crop_boxes(boxes, window)
    return _maybe_flip(img, pixel_boxes(nb, size), keep, m, size, seeds[1])


def no_augment(image, boxes, mask, size: int, seed: tf.Tensor):
    """Training without augmentation: the eval resize."""
    del seed
    return eval_resize(image, boxes, mask, size)


# data_cfg.train_augment -> fn(image, boxes, mask, size, seed) -> (img, px, keep, mask).
TRAIN_AUGMENTS = {
    "crop_flip": crop_flip,
    "random_resized_crop": random_resized_crop,
    "none": no_augment,
}


def finalize(img, px, keep, mask, label, *, size: int, max_boxes: int, normalization: str):
    """Normalise, pad boxes to ``max_boxes`` (dropping ones outside the crop first)."""
    px = tf.boolean_mask(px, keep)[:max_boxes]
    n = tf.shape(px)[0]
    out = {
        "image": tf.ensure_shape(normalize(img, normalization), [size, size, 3]),
        "label": tf.cast(label, tf.int32),
        "bboxes": tf.ensure_shape(tf.pad(px, [[0, max_boxes - n], [0, 0]]), [max_boxes, 4]),
        "bbox_valid": tf.ensure_shape(tf.range(max_boxes) < n, [max_boxes]),
    }
    if mask is not None:
        out["mask"] = tf.ensure_shape(tf.cast(mask, tf.uint8), [size, size])
    return out
