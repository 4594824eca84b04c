"""Extraction: :func:`extract` on images in memory, :func:`extract_to` on many files.

- :func:`extract` (:mod:`camjax.extract.arrays`): logits, top-k classes, maps and boxes
  of a batch in one jitted call (``camjax.extract``; the pipeline is
  :mod:`camjax.localize`).
- :func:`extract_to` (:mod:`camjax.extract.run`): folders of images into a sharded,
  resumable output folder; what ``camjax extract`` runs, with a
  :class:`~camjax.localize.LocalizeSpec` and :class:`RunOptions`.
- :func:`open_extraction` (:mod:`camjax.extract.reader`): records and maps read back,
  maps at the original image's size.
- :func:`list_inputs` (:mod:`camjax.files.inputs`), :func:`read_image`
  (:mod:`camjax.files.images`): the input side, without TensorFlow.

``camjax.extract`` is the function once ``camjax`` is imported (``camjax/__init__.py``
binds it over this package's name): import this package's modules with ``from
camjax.extract import run`` or ``from camjax.extract.run import ...``, not ``import
camjax.extract.run as ...``.
"""

from camjax.extract.arrays import extract
from camjax.extract.reader import open_extraction, read_skipped
from camjax.extract.run import RunOptions, extract_to
from camjax.files.images import read_image
from camjax.files.inputs import list_inputs
from camjax.localize import LocalizeSpec

__all__ = [
    "LocalizeSpec",
    "RunOptions",
    "extract",
    "extract_to",
    "list_inputs",
    "open_extraction",
    "read_image",
    "read_skipped",
]
