"""Train a CAM network: ``python train.py --config configs/default.py --workdir runs/x``.

The same command as ``camjax train`` (see ``camjax train --help``). Overrides:
``--config.train.batch_size=128 --config.parallel=shard_map`` (values are Python
literals, else strings; ``--config.model.kwargs.<name>=...`` adds a model argument).
A workdir that holds checkpoints of the same model and data resumes from the newest
intact one. Bad config values stop before any work with one line and exit 2.
"""

import sys

from camjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
