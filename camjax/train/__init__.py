"""Data-parallel training of CAM networks: state, optimizer, step, checkpoints, loop.

``train_and_evaluate(config, workdir) -> dict`` is the entry point (``train.py`` wraps it).
"""

from camjax.config import check_config, load_config
from camjax.train.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointSaveError,
    CorruptCheckpointError,
    fingerprint,
)
from camjax.train.loop import NonFiniteLossError, build_model, train_and_evaluate
from camjax.train.optimizer import create_optimizer, learning_rate_schedule, param_labels
from camjax.train.state import TrainState, create_train_state, init_variables
from camjax.train.step import (
    AXIS,
    PmapRunner,
    ShardMapRunner,
    create_runner,
    make_eval_step,
    make_train_step,
)

__all__ = [
    "AXIS",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "Checkpointer",
    "CorruptCheckpointError",
    "NonFiniteLossError",
    "PmapRunner",
    "ShardMapRunner",
    "TrainState",
    "build_model",
    "check_config",
    "create_optimizer",
    "create_runner",
    "create_train_state",
    "fingerprint",
    "init_variables",
    "learning_rate_schedule",
    "load_config",
    "make_eval_step",
    "make_train_step",
    "param_labels",
    "train_and_evaluate",
]
