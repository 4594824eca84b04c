"""Evaluate a trained CAM network: the paper's tables and figures into the workdir.

    python evaluate.py --config configs/default.py --workdir runs/default \
        [--checkpoint runs/default/checkpoints/600] [--split validation|test] \
        [--methods cam,backprop,gradcam]

Writes ``report.json``, ``report.md`` and PNGs into ``--workdir`` and prints the tables
(see :mod:`camjax.evaluation`).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from camjax.evaluation import evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Training workdir; the report is written here too.")
flags.DEFINE_string("checkpoint", None, "A checkpoint folder (default: the latest in workdir).")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "Split to evaluate.")
flags.DEFINE_list("methods", ["cam", "backprop"], "Map methods (keys of camjax.saliency.METHODS).")
flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default config.eval.batch_size).")
flags.DEFINE_integer("max_examples", None, "Evaluate only the first N examples.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        evaluate(
            FLAGS.config,
            FLAGS.workdir,
            checkpoint=FLAGS.checkpoint,
            split=FLAGS.split,
            methods=tuple(FLAGS.methods),
            batch_size=FLAGS.batch_size,
            max_examples=FLAGS.max_examples,
        )
    except (FileNotFoundError, ValueError) as e:  # user errors: a message, no traceback
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
