"""``camjax_shapes``: the embedded default data set, a TFDS builder that needs no download.

Ten silhouette classes (``glyphs.CLASS_NAMES``) on textured, cluttered backgrounds with
distractor blobs (``glyphs.render``). Each example: ``image`` uint8 [S, S, 3], ``label``,
``bboxes`` (one normalised TFDS box, continuous edges: ``[y0/S, x0/S, (y1+1)/S, (x1+1)/S]``
for the inclusive pixel box), ``segmentation_mask`` uint8 [S, S, 1] (1 object, 0 rest).
Example ``i`` of split ``k`` is drawn from ``np.random.default_rng([seed, k, i])`` with
label ``i % 10`` (balanced classes), so the data set is a pure function of its config.

Built on first use by ``download_and_prepare`` (nothing is downloaded) into
``data_cfg.data_dir`` (or the TFDS default ``~/tensorflow_datasets``) under
``camjax_shapes/<config name>/<version>``; the config name encodes every size and the
seed, so different sizes never share a directory.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax.data import glyphs
from camjax.data.source import Source

SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    """Sizes of a ``camjax_shapes`` build: image side, examples per split, seed."""

    image_size: int = 64
    num_train: int = 4000
    num_validation: int = 500
    num_test: int = 500
    seed: int = 0


def make_config(image_size=64, num_train=4000, num_validation=500, num_test=500, seed=0):
    """A ``ShapesConfig`` whose name encodes all its fields ("default" for the defaults)."""
    fields = (int(image_size), int(num_train), int(num_validation), int(num_test), int(seed))
    if fields[0] < 16:
        raise ValueError(f"camjax_shapes image_size must be >= 16, got {image_size}")
    if min(fields[1:4]) < 1:
        raise ValueError(f"camjax_shapes split sizes must be >= 1, got {fields[1:4]}")
    name = (
        "default" if fields == (64, 4000, 500, 500, 0) else "s{}_n{}-{}-{}_seed{}".format(*fields)
    )
    return ShapesConfig(
        name=name,
        description=f"{fields[0]}px, train/validation/test {fields[1:4]}, seed {fields[4]}",
        image_size=fields[0],
        num_train=fields[1],
        num_validation=fields[2],
        num_test=fields[3],
        seed=fields[4],
    )


def config_from_data_cfg(data_cfg) -> ShapesConfig:
    """``make_config`` from ``data_cfg.shapes.{image_size, num_*, seed}``."""
    s = data_cfg.shapes
    return make_config(s.image_size, s.num_train, s.num_validation, s.num_test, s.get("seed", 0))


def example(seed: int, split: str, index: int, image_size: int) -> dict:
    """Example ``index`` of ``split``: a pure function of its arguments."""
    label = index % len(glyphs.CLASS_NAMES)
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    image, mask, (x0, y0, x1, y1) = glyphs.render(rng, image_size, label)
    s = float(image_size)
    box = tfds.features.BBox(ymin=y0 / s, xmin=x0 / s, ymax=(y1 + 1) / s, xmax=(x1 + 1) / s)
    return {
        "image": image,
        "label": label,
        "bboxes": [box],
        "segmentation_mask": mask[..., None],
    }


class CamjaxShapes(tfds.core.GeneratorBasedBuilder):
    """Silhouettes of ten classes in clutter, with boxes and masks; generated locally."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Background texture contrast below the object's; less sensor noise.",
        "1.2.0": "Objects tilted at most 30 degrees and larger; smaller distractors.",
    }
    BUILDER_CONFIGS = [make_config()]
    # TFDS resolves ``code_path`` to look for a checksums file (there is none: nothing is
    # downloaded); on Python >= 3.9 that lookup imports ``importlib_resources``, which
    # TFDS does not install there. No code path, no lookup.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(s, s, 3)),
                    "label": tfds.features.ClassLabel(names=list(glyphs.CLASS_NAMES)),
                    "bboxes": tfds.features.Sequence(tfds.features.BBoxFeature()),
                    "segmentation_mask": tfds.features.Image(shape=(s, s, 1)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is generated here
        c = self.builder_config
        sizes = {"train": c.num_train, "validation": c.num_validation, "test": c.num_test}
        return {name: self._generate_examples(name, n) for name, n in sizes.items()}

    def _generate_examples(self, split: str, num: int):
        c = self.builder_config
        for i in range(num):
            yield i, example(c.seed, split, i, c.image_size)


def builder(data_cfg, num_shards: int | None = None) -> CamjaxShapes:
    """The prepared builder for ``data_cfg`` (generated on first use, offline).

    ``num_shards`` (files per split) applies when it is generated; TFDS picks by size
    otherwise (one file for the default).
    """
    config = config_from_data_cfg(data_cfg)
    # TFDS refuses a new config object named like a registered one: pass that by name.
    config = config.name if config.name == "default" else config
    b = CamjaxShapes(config=config, data_dir=data_cfg.get("data_dir"))
    if not b.is_prepared():
        config = tfds.download.DownloadConfig(try_download_gcs=False, num_shards=num_shards)
        b.download_and_prepare(download_config=config)
    return b


def split_sizes(data_cfg) -> dict[str, int]:
    c = config_from_data_cfg(data_cfg)
    return {"train": c.num_train, "validation": c.num_validation, "test": c.num_test}


def standardize(ds: tf.data.Dataset, data_cfg, split: str) -> tf.data.Dataset:
    del data_cfg, split

    def fn(ex):
        return {
            "image": ex["image"],
            "label": ex["label"],
            "boxes": tf.reshape(tf.cast(ex["bboxes"], tf.float32), [-1, 4]),
            "mask": ex["segmentation_mask"],
        }

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


SOURCE = Source(
    builder=builder,
    class_names=lambda data_cfg, b: list(glyphs.CLASS_NAMES),
    standardize=standardize,
    decoders=lambda: {
        "image": tfds.decode.SkipDecoding(),
        "segmentation_mask": tfds.decode.SkipDecoding(),
    },
    has_masks=True,
    mask_values=lambda m: m,
    split_sizes=split_sizes,
)
