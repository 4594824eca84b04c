"""Trained and pretrained networks: checkpoints read and verified, networks rebuilt.

- :mod:`camjax.checkpoints.store`: a checkpoint folder's steps, metadata and arrays,
  each array verified against the SHA-256 written with it (``camjax.train.checkpoint``
  writes them).
- :mod:`camjax.checkpoints.network`: :class:`NetworkSpec`, what a checkpoint says about
  its network, enough to rebuild it.
- :mod:`camjax.checkpoints.loading`: :func:`load_trained` (a workdir's checkpoint) and
  :func:`load_named` (offline pretrained weights) give a :class:`Loaded` network, what
  evaluation, extraction and the command line run.
"""

from camjax.checkpoints.loading import Loaded, load_named, load_trained
from camjax.checkpoints.network import NetworkSpec, cpu_tuned
from camjax.checkpoints.store import (
    CheckpointMismatchError,
    CorruptCheckpointError,
    restore_arrays,
    saved_config,
)

__all__ = [
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "Loaded",
    "NetworkSpec",
    "cpu_tuned",
    "load_named",
    "load_trained",
    "restore_arrays",
    "saved_config",
]
