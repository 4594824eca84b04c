"""CUB-200-2011 through TFDS ``caltech_birds2011`` (one box and a mask per image).

TFDS stores the box normalised as ``(top/h, left/w, bottom/h, right/w)`` from CUB's
``x y width height`` (bottom = y + height), i.e. continuous edges, the convention of
``camjax.data.preprocess``. CUB's segmentation masks are soft (the average of several
annotators, 0..255); pixels >= 128 (a majority) are foreground (1), the rest
background (0); no pixel is marked ignore.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data.source import Source


def builder(data_cfg):
    """Prepared ``caltech_birds2011`` builder, or an error saying how to get one."""
    b = tfds.builder("caltech_birds2011", data_dir=data_cfg.get("data_dir"))
    if b.is_prepared():
        return b
    try:
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except Exception as e:
        raise FileNotFoundError(
            f"CUB-200-2011 (caltech_birds2011) is not prepared in {b.data_dir} and could not "
            "be downloaded here. On a machine with internet access run `tfds build "
            "caltech_birds2011 --data_dir=<dir>` and copy <dir>/caltech_birds2011 into "
            f"data.data_dir. Cause: {e}"
        ) from e
    return b


def class_names(data_cfg, builder) -> list[str]:
    """Label names from the TFDS features (TFDS gives CUB no names: "0".."199")."""
    del data_cfg
    return list(builder.info.features["label"].names)


def mask_values(mask: tf.Tensor) -> tf.Tensor:
    """Soft annotator average -> {0, 1}: ``mask >= 128``."""
    return tf.cast(mask >= 128, tf.uint8)


def standardize(ds: tf.data.Dataset, data_cfg, split: str) -> tf.data.Dataset:
    del data_cfg, split

    def fn(ex):
        return {
            "image": ex["image"],
            "label": ex["label"],
            "boxes": tf.reshape(tf.cast(ex["bbox"], tf.float32), [1, 4]),
            "mask": ex["segmentation_mask"],
        }

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


SOURCE = Source(
    builder=builder,
    class_names=class_names,
    standardize=standardize,
    decoders=lambda: {
        "image": tfds.decode.SkipDecoding(),
        "segmentation_mask": tfds.decode.SkipDecoding(),
    },
    has_masks=True,
    mask_values=mask_values,
)
