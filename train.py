"""Train a CAM network: ``python train.py --config configs/default.py --workdir runs/x``.

Overrides: ``--config.train.batch_size=128 --config.parallel=shard_map``. A workdir that
holds checkpoints of the same model resumes from the latest one.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from camjax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard events and reports go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS["verbosity"].using_default_value:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    path = config_flags.get_config_filename(FLAGS["config"])
    # Config files may add keys silently; check them against the default schema.
    default = train.load_config(os.path.join(os.path.dirname(path), "default.py"))
    train.check_config(FLAGS.config, default)
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    print(
        "final: "
        + "  ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main)
