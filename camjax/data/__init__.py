"""Input pipelines: TFDS data sets (embedded ``camjax_shapes``, ImageNet, CUB, any TFDS
data set by feature names: ``tfds``), a user's class folders with boxes (``folder``).

Contract (docs/CONTRACTS.md, "data"): ``info``, ``train_iterator``, ``eval_iterator``,
``shard``, ``prefetch_to_device``, ``folder_iterator``. TensorFlow runs on the CPU only.
"""

from camjax.data.eval_batches import empty_batch, eval_iterator
from camjax.data.folder import FolderIterator, folder_iterator
from camjax.data.pipeline import SOURCES, DatasetInfo, info, train_iterator
from camjax.data.sharding import prefetch_to_device, shard

__all__ = [
    "SOURCES",
    "DatasetInfo",
    "FolderIterator",
    "empty_batch",
    "eval_iterator",
    "folder_iterator",
    "info",
    "prefetch_to_device",
    "shard",
    "train_iterator",
]
