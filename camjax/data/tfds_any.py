"""``tfds``: any TFDS data set by name, given which features hold the label, boxes, mask.

``data.tfds``: ``name`` (a TFDS name, with config/version if wanted, e.g.
``stanford_dogs`` or ``caltech_birds2011:0.1.1``), ``image_key`` (default ``image``),
``label_key`` (a scalar ``ClassLabel``; default ``label``), ``boxes_key`` (a ``BBoxFeature``
or a ``Sequence`` of them, e.g. ``bbox`` or ``objects/bbox``; None: no boxes),
``mask_key`` (an image feature: 0 background, any other value foreground; None: no
masks). Nested features are named with ``/`` (a name that itself holds ``/``, such as
``image/filename``, is matched whole first). TFDS boxes are normalised ``(ymin, xmin,
ymax, xmax)`` with continuous edges, the pipeline's own convention, so they pass through
unchanged. Class names come from the label feature. Splits are the data set's
(``data.train_split``, ``data.eval_split``). A data set TFDS can download is prepared in
``data.data_dir`` on first use.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data.source import Source

# (config key, default feature): what the pipeline needs from an example.
ROLES = (("image", "image"), ("label", "label"), ("boxes", None), ("mask", None))


def _tc(data_cfg):
    tc = data_cfg.get("tfds")
    if tc is None or not tc.get("name"):
        raise ValueError("data.name='tfds' needs data.tfds.name (a TFDS name, e.g. stanford_dogs)")
    return tc


def _path(features, key: str, what: str, name: str) -> tuple[list[str], object]:
    """``key`` split into feature names, and the feature it names."""
    parts, node, rest = [], features, key
    while rest:
        if isinstance(node, tfds.features.Sequence):
            node = node.feature
        keys = list(node.keys()) if hasattr(node, "keys") else []
        head = rest if rest in keys else rest.split("/")[0]
        if head not in keys:
            top = ", ".join(sorted(features.keys()))
            raise ValueError(f"{name} has no feature {key!r} (data.tfds.{what}); top level: {top}")
        parts.append(head)
        node, rest = node[head], rest[len(head) + 1 :]
    return parts, node


def _resolve(data_cfg, features) -> dict[str, list[str] | None]:
    """Feature paths of image, label, boxes, mask (None where not configured), checked."""
    tc = _tc(data_cfg)
    out = {}
    for role, default in ROLES:
        key = tc.get(f"{role}_key") or default
        if not key:
            out[role] = None
            continue
        out[role], feature = _path(features, key, f"{role}_key", tc.name)
        if isinstance(feature, tfds.features.Sequence) and role == "boxes":
            feature = feature.feature
        want = {
            "label": tfds.features.ClassLabel,
            "boxes": tfds.features.BBoxFeature,
            "image": tfds.features.Image,
            "mask": tfds.features.Image,
        }[role]
        if not isinstance(feature, want):
            raise ValueError(
                f"{tc.name}: data.tfds.{role}_key {key!r} is a {type(feature).__name__}, "
                f"not a {want.__name__}"
            )
    return out


def identity(data_cfg, b: TfdsBuilder) -> dict:
    """What a training checkpoint records of the data set (``checkpoint.fingerprint``):
    the class names in label order, the split rule (the training split and the feature
    keys) and the data set's identity (TFDS full name with version, examples per split)."""
    tc = _tc(data_cfg)
    sizes = ", ".join(f"{k} {int(v.num_examples)}" for k, v in sorted(b.info.splits.items()))
    return {
        "data_classes": list(b.class_names),
        "data_split": {
            "train_split": str(data_cfg.train_split),
            **{f"{role}_key": tc.get(f"{role}_key") or default for role, default in ROLES},
        },
        "data_files": f"{b.info.full_name}: {sizes}",
    }


def _get(ex, parts: list[str]):
    for part in parts:
        ex = ex[part]
    return ex


def _nested(parts: list[str], value) -> dict:
    for part in reversed(parts):
        value = {part: value}
    return value


class TfdsBuilder:
    """A prepared TFDS builder whose ``as_dataset`` yields the common example form
    (:mod:`camjax.data.source`), images and masks still encoded."""

    def __init__(self, b, data_cfg):
        self.builder, self.info = b, b.info
        self.paths = _resolve(data_cfg, b.info.features)
        label = _path(b.info.features, "/".join(self.paths["label"]), "label_key", b.name)[1]
        self.class_names = list(label.names)

    def as_dataset(self, **kwargs):
        p = self.paths
        decoders = _nested(p["image"], tfds.decode.SkipDecoding())
        if p["mask"]:
            decoders.update(_nested(p["mask"], tfds.decode.SkipDecoding()))
        kwargs["decoders"] = decoders

        def fn(ex):
            out = {"image": _get(ex, p["image"]), "label": _get(ex, p["label"])}
            boxes = _get(ex, p["boxes"]) if p["boxes"] else tf.zeros([0, 4])
            out["boxes"] = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
            if p["mask"]:
                out["mask"] = _get(ex, p["mask"])
            return out

        ds = self.builder.as_dataset(**kwargs)
        return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def builder(data_cfg) -> TfdsBuilder:
    """The data set of ``data.tfds.name``, prepared here if TFDS can, features checked."""
    tc = _tc(data_cfg)
    try:
        b = tfds.builder(tc.name, data_dir=data_cfg.get("data_dir"))
    except Exception as e:  # DatasetNotFoundError and friends: their first line
        raise ValueError(f"data.tfds.name {tc.name!r}: {_first_line(e)}") from None
    if not b.is_prepared():
        try:
            b.download_and_prepare()
        except Exception as e:
            raise FileNotFoundError(
                f"TFDS data set {tc.name!r} is not prepared in {b.data_dir} and preparing it "
                f"failed; run `tfds build {tc.name} --data_dir=<dir>` where it can and set "
                f"data.data_dir. Cause: {_first_line(e)}"
            ) from None
    return TfdsBuilder(b, data_cfg)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def mask_values(mask: tf.Tensor) -> tf.Tensor:
    """0 background, anything else foreground (1)."""
    return tf.cast(mask > 0, tf.uint8)


SOURCE = Source(
    builder=builder,
    class_names=lambda data_cfg, b: list(b.class_names),
    identity=identity,
    standardize=lambda ds, data_cfg, split: ds,  # TfdsBuilder.as_dataset did it
    decoders=dict,  # TfdsBuilder.as_dataset sets them from data_cfg
    has_masks=lambda data_cfg: bool(_tc(data_cfg).get("mask_key")),
    image_key=lambda data_cfg: _tc(data_cfg).image_key,
    mask_values=mask_values,
)
