"""``Source``: what the generic pipeline needs to know about one TFDS data set.

Each data set module (``shapes``, ``imagenet``, ``cub``) provides one ``Source``; the
registry is ``camjax.data.pipeline.SOURCES``. A source turns a TFDS builder's examples
into the common undecoded form that ``pipeline`` shuffles, skips and then decodes:
``image`` (encoded bytes), ``label`` int, ``boxes`` float32 ``[n, 4]`` normalised
``(ymin, xmin, ymax, xmax)`` with continuous edges, and ``mask`` (encoded PNG bytes) when
the data set has masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Source:
    """One data set: builder, class names, and the map to the common example form.

    - ``builder(data_cfg)``: a prepared TFDS builder (or a clear error saying what is
      missing where).
    - ``class_names(data_cfg, builder)``: names in label order.
    - ``standardize(ds, data_cfg, split)``: TFDS examples (read with ``decoders``) ->
      common form (module docstring).
    - ``mask_values(mask uint8 [h, w]) -> uint8 [h, w]`` in {0, 1, 255} (only used when
      ``has_masks``).
    - ``split_sizes(data_cfg)``: examples per split without preparing, or None to read
      them from the prepared builder.
    - ``identity(data_cfg, builder)``: what a training checkpoint records of the data
      beyond its name (``data_*`` fingerprint fields: classes, split rule, files), or
      None for data sets a name and version identify.
    - ``image_key(data_cfg)``: the builder's image feature (``/`` for nesting), whose
      declared shape tells whether the decoded split can be held in memory.

    An example may also carry ``orientation`` (int32 EXIF orientation 1..8): the pipeline
    then turns the decoded image upright (``preprocess.upright``) before anything else.
    """

    builder: Callable[[Any], Any]
    class_names: Callable[[Any, Any], list[str]]
    standardize: Callable[[tf.data.Dataset, Any, str], tf.data.Dataset]
    decoders: Callable[[], dict]
    has_masks: bool | Callable[[Any], bool]  # or a function of data_cfg
    mask_values: Callable[[tf.Tensor], tf.Tensor] | None = None
    split_sizes: Callable[[Any], dict[str, int] | None] = lambda data_cfg: None
    identity: Callable[[Any, Any], dict | None] = lambda data_cfg, b: None
    image_key: Callable[[Any], str] = lambda data_cfg: "image"
