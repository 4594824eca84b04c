"""Extraction at scale: many images into a sharded, resumable output folder.

- :func:`extract_to` (:mod:`camjax.bulk.run`): what ``camjax extract`` runs.
- :func:`open_extraction` (:mod:`camjax.bulk.reader`): records and maps read back, maps at
  the original image's size.
- :func:`list_inputs` (:mod:`camjax.files.inputs`), :func:`read_image`
  (:mod:`camjax.files.images`): the input side, without TensorFlow.
"""

from camjax.bulk.reader import open_extraction, read_skipped
from camjax.bulk.run import extract_to
from camjax.files.images import read_image
from camjax.files.inputs import list_inputs

__all__ = ["extract_to", "list_inputs", "open_extraction", "read_image", "read_skipped"]
