"""A TFDS data set split as extraction input (``camjax extract --tfds NAME:SPLIT``).

Input ``i`` is example ``i`` of the split in the data set's own order, named
``tfds:NAME/SPLIT/i`` in the records. Each shard reads only its slice of the split
(``SPLIT[a:b]``), one example at a time, so memory stays bounded. TensorFlow is imported
here and only here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def parse(spec: str) -> tuple[str, str]:
    """``"NAME:SPLIT"`` -> ``(NAME, SPLIT)``."""
    name, sep, split = spec.partition(":")
    if not sep or not name or not split:
        raise ValueError(f"--tfds wants NAME:SPLIT (e.g. caltech_birds2011:test), got {spec!r}")
    return name, split


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    import camjax.data  # noqa: F401  (registers camjax's own data sets, e.g. camjax_shapes)

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name: TFDS's own message lists near matches
        raise ValueError(f"no TFDS data set {name!r}: {e}") from e
    return builder


def keys(spec: str, data_dir: str | None) -> list[str]:
    """The record names of every example of the split (its size from the data set info)."""
    name, split = parse(spec)
    builder = _builder(name, data_dir)
    if not builder.info.splits:
        raise ValueError(f"{name} is not prepared in {builder.data_dir}; prepare it first")
    if split not in builder.info.splits:
        raise ValueError(f"{name} has no split {split!r}; it has {', '.join(builder.info.splits)}")
    n = builder.info.splits[split].num_examples
    return [f"tfds:{name}/{split}/{i}" for i in range(n)]


def images(
    spec: str, data_dir: str | None, start: int, stop: int, image_key: str = "image"
) -> Iterator[np.ndarray]:
    """uint8 ``[h, w, 3]`` images of examples ``start .. stop - 1``, in order."""
    import tensorflow_datasets as tfds

    name, split = parse(spec)
    ds = _builder(name, data_dir).as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
    for ex in tfds.as_numpy(ds):
        img = np.asarray(ex[image_key])
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        yield img[..., :3].astype(np.uint8)


__all__ = ["images", "keys", "parse"]
