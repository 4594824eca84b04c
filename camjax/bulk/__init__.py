"""Extraction at scale: many images into a sharded, resumable output folder.

- :func:`extract_to` (:mod:`camjax.bulk.run`): what ``camjax extract`` runs.
- :func:`open_extraction` (:mod:`camjax.bulk.reader`): records and maps read back, maps at
  the original image's size.
- :func:`list_inputs` (:mod:`camjax.bulk.inputs`), :func:`read_image`
  (:mod:`camjax.bulk.images`): the input side, without TensorFlow.
"""

from camjax.bulk.images import read_image
from camjax.bulk.inputs import list_inputs
from camjax.bulk.reader import open_extraction, read_skipped
from camjax.bulk.run import extract_to

__all__ = ["extract_to", "list_inputs", "open_extraction", "read_image", "read_skipped"]
