"""Evaluate a trained CAM network: the paper's tables and figures into the workdir.

    python evaluate.py --workdir runs/default [--config configs/default.py] \
        [--checkpoint runs/default/checkpoints/600] [--split validation|test] \
        [--methods cam,backprop,gradcam]

Without ``--config`` the config saved in the checkpoint is used (``--config.*``
overrides need ``--config``). The network is rebuilt from the checkpoint itself; the
newest intact checkpoint is used unless ``--checkpoint`` names one. Writes
``report.json``, ``report.md`` and PNGs into ``--workdir`` and prints the tables (see
:mod:`camjax.evaluation`). Bad input: one line on stderr, exit 2.
"""

import os
import sys

from absl import app, flags

from camjax.evaluation import evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir; the report is written here too.")
flags.DEFINE_string("checkpoint", None, "A checkpoint folder (default: the latest in workdir).")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "Split to evaluate.")
flags.DEFINE_list("methods", ["cam", "backprop"], "Map methods (keys of camjax.saliency.METHODS).")
flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default config.eval.batch_size).")
flags.DEFINE_integer("max_examples", None, "Evaluate only the first N examples.")
flags.mark_flags_as_required(["workdir"])


def _fail(message: str) -> None:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def load(argv: list[str]):
    """``(config or None, remaining argv)``."""
    from camjax.train import config as config_lib

    path, overrides, rest = config_lib.split_argv(argv[1:])
    if path is None:
        if overrides:
            raise ValueError("--config.* overrides need --config")
        return None, [argv[0], *rest]
    config = config_lib.load_config(path, overrides)
    default = os.path.join(os.path.dirname(os.path.abspath(path)), "default.py")
    if os.path.isfile(default):
        config_lib.check_config(config, config_lib.load_config(default))
    config_lib.validate(config)
    return config, [argv[0], *rest]


def main(argv, config):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        evaluate(
            config,
            os.path.abspath(FLAGS.workdir),
            checkpoint=FLAGS.checkpoint,
            split=FLAGS.split,
            methods=tuple(FLAGS.methods),
            batch_size=FLAGS.batch_size,
            max_examples=FLAGS.max_examples,
        )
    except (FileNotFoundError, ValueError) as e:  # user errors: a message, no traceback
        _fail(str(e))


def run(argv: list[str]) -> None:
    try:
        config, rest = load(argv)
    except (ValueError, KeyError, FileNotFoundError, SyntaxError) as e:
        _fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    app.run(lambda a: main(a, config), argv=rest)


if __name__ == "__main__":
    run(sys.argv)
