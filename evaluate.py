"""Evaluate a trained CAM network: the paper's tables and figures into the workdir.

    python evaluate.py --workdir runs/default [--config configs/default.py] \
        [--checkpoint runs/default/checkpoints/600] [--split validation|test] \
        [--methods cam,backprop,gradcam]

The same command as ``camjax evaluate`` (see ``camjax evaluate --help``). Without
``--config`` the config saved in the checkpoint is used (``--config.*`` overrides need
``--config``). Bad input: one line on stderr, exit 2.
"""

import sys

from camjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]], prog="evaluate.py"))
