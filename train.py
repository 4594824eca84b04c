"""Train a CAM network: ``python train.py --config configs/default.py --workdir runs/x``.

Overrides: ``--config.train.batch_size=128 --config.parallel=shard_map`` (values are
Python literals, else strings; ``--config.model.kwargs.<name>=...`` adds a model
argument). A workdir that holds checkpoints of the same model and data resumes from the
newest intact one. Bad config values stop before any work with one line and exit 2.
"""

import os
import sys

from absl import app, flags, logging

from camjax import train
from camjax.train import config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard events and reports go here.")
flags.mark_flags_as_required(["workdir"])


def _fail(message: str, code: int = 2) -> None:
    print(f"train.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def load(argv: list[str]):
    """``(config, remaining argv)``: the config file with its overrides, checked."""
    path, overrides, rest = config_lib.split_argv(argv[1:])
    if path is None:
        raise ValueError("--config is required (e.g. --config configs/default.py)")
    config = train.load_config(path, overrides)
    # Config files may add keys silently; check them against the default schema.
    default = os.path.join(os.path.dirname(os.path.abspath(path)), "default.py")
    if os.path.isfile(default):
        train.check_config(config, train.load_config(default))
    config_lib.validate(config)
    return config, [argv[0], *rest]


def main(argv, config):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS["verbosity"].using_default_value:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    try:
        result = train.train_and_evaluate(config, os.path.abspath(FLAGS.workdir))
    except (ValueError, KeyError, FileNotFoundError) as e:  # config/checkpoint mismatch
        _fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    except (train.NonFiniteLossError, train.CheckpointSaveError) as e:
        _fail(str(e), code=1)
    print(
        "final: "
        + "  ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
        ),
        flush=True,
    )


def run(argv: list[str]) -> None:
    try:
        config, rest = load(argv)
    except (ValueError, KeyError, FileNotFoundError, SyntaxError) as e:
        _fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    app.run(lambda a: main(a, config), argv=rest)


if __name__ == "__main__":
    run(sys.argv)
