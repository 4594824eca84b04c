"""``tfds``: any TFDS data set by name, given which features hold the label, boxes, mask.

``data.tfds``: ``name`` (a TFDS name, with config/version if wanted, e.g.
``stanford_dogs`` or ``caltech_birds2011:0.1.1``), ``image_key`` (default ``image``),
``label_key`` (a scalar ``ClassLabel``; default ``label``), ``boxes_key`` (a ``BBoxFeature``
or a ``Sequence`` of them, e.g. ``bbox`` or ``objects/bbox``; None: no boxes),
``mask_key`` (an image feature: 0 background, any other value foreground; None: no
masks). Nested features are named with ``/``. TFDS boxes are normalised
``(ymin, xmin, ymax, xmax)`` with continuous edges, the pipeline's own convention, so
they are passed through unchanged. Class names come from the label feature. Splits are
the data set's (``data.train_split``, ``data.eval_split``). The data set is prepared in
``data.data_dir`` on first use if TFDS can download it.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data.source import Source


def _tc(data_cfg):
    tc = data_cfg.get("tfds")
    if tc is None or not tc.get("name"):
        raise ValueError(
            "data.name='tfds' needs data.tfds.name (a TFDS data set, e.g. stanford_dogs)"
        )
    return tc


def _feature(features, key: str, what: str, name: str):
    node = features
    for part in key.split("/"):
        if isinstance(node, tfds.features.Sequence):
            node = node.feature
        try:
            node = node[part]
        except (KeyError, TypeError):
            keys = ", ".join(sorted(features.keys()))
            raise ValueError(
                f"{name} has no feature {key!r} for data.tfds.{what}; top-level: {keys}"
            ) from None
    return node


def _check(b, tc) -> None:
    """The configured features exist and have the right kinds (one-line errors)."""
    f = b.info.features
    name = tc.name
    _feature(f, tc.get("image_key") or "image", "image_key", name)
    label = _feature(f, tc.get("label_key") or "label", "label_key", name)
    if not isinstance(label, tfds.features.ClassLabel):
        raise ValueError(
            f"{name}: data.tfds.label_key {tc.label_key!r} is not a ClassLabel feature"
        )
    if tc.get("boxes_key"):
        boxes = _feature(f, tc.boxes_key, "boxes_key", name)
        if isinstance(boxes, tfds.features.Sequence):
            boxes = boxes.feature
        if not isinstance(boxes, tfds.features.BBoxFeature):
            raise ValueError(f"{name}: data.tfds.boxes_key {tc.boxes_key!r} is not a BBoxFeature")


def builder(data_cfg):
    """Prepared builder of ``data.tfds.name`` (prepared here if TFDS can)."""
    tc = _tc(data_cfg)
    try:
        b = tfds.builder(tc.name, data_dir=data_cfg.get("data_dir"))
    except Exception as e:  # DatasetNotFoundError and friends: one line
        raise ValueError(f"data.tfds.name {tc.name!r}: {str(e).splitlines()[0]}") from None
    if not b.is_prepared():
        try:
            b.download_and_prepare()
        except Exception as e:
            raise FileNotFoundError(
                f"TFDS data set {tc.name!r} is not prepared in {b.data_dir} and preparing it "
                f"failed; run `tfds build {tc.name} --data_dir=<dir>` where it can, and set "
                f"data.data_dir. Cause: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from None
    _check(b, tc)
    return _Builder(b, decoders(data_cfg))


class _Builder:
    """A TFDS builder whose ``as_dataset`` keeps the configured image and mask encoded
    (the pipeline asks the source for decoders without its config)."""

    def __init__(self, b, decoders: dict):
        self.builder, self.info, self._decoders = b, b.info, decoders

    def as_dataset(self, **kwargs):
        kwargs["decoders"] = self._decoders
        return self.builder.as_dataset(**kwargs)


def class_names(data_cfg, b) -> list[str]:
    tc = _tc(data_cfg)
    return list(
        _feature(b.info.features, tc.get("label_key") or "label", "label_key", tc.name).names
    )


def _get(ex, key: str):
    for part in key.split("/"):
        ex = ex[part]
    return ex


def _nested(key: str, value) -> dict:
    out = value
    for part in reversed(key.split("/")):
        out = {part: out}
    return out


def decoders(data_cfg) -> dict:
    """Images and masks stay encoded until the pipeline has skipped what it skips."""
    tc = _tc(data_cfg)
    out = _nested(tc.get("image_key") or "image", tfds.decode.SkipDecoding())
    if tc.get("mask_key"):
        out.update(_nested(tc.mask_key, tfds.decode.SkipDecoding()))
    return out


def standardize(ds: tf.data.Dataset, data_cfg, split: str) -> tf.data.Dataset:
    del split
    tc = _tc(data_cfg)
    image_key, label_key = tc.get("image_key") or "image", tc.get("label_key") or "label"
    boxes_key, mask_key = tc.get("boxes_key"), tc.get("mask_key")

    def fn(ex):
        out = {"image": _get(ex, image_key), "label": _get(ex, label_key)}
        if boxes_key:
            out["boxes"] = tf.reshape(tf.cast(_get(ex, boxes_key), tf.float32), [-1, 4])
        else:
            out["boxes"] = tf.zeros([0, 4], tf.float32)
        if mask_key:
            out["mask"] = _get(ex, mask_key)
        return out

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def mask_values(mask: tf.Tensor) -> tf.Tensor:
    """0 background, anything else foreground (1)."""
    return tf.cast(mask > 0, tf.uint8)


SOURCE = Source(
    builder=builder,
    class_names=class_names,
    standardize=standardize,
    decoders=dict,  # _Builder applies decoders(data_cfg)
    has_masks=lambda data_cfg: bool(_tc(data_cfg).get("mask_key")),
    mask_values=mask_values,
)
