"""``camjax train`` (also ``python train.py``): train a CAM network in a workdir."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

HELP = """Train a CAM network, resuming from the newest intact checkpoint in --workdir.

    camjax train --config default --workdir runs/default
    camjax train --config configs/vgg16_gap_cub.py --workdir runs/cub \\
        --config.train.batch_size=128 --config.init_from=vgg16-397923af.pth

--config is a config file or the name of a packaged one:
%s.
Overrides --config.KEY=VALUE take Python literals, else strings. Progress lines go to
stdout, TensorBoard events to WORKDIR/tensorboard (tensorboard --logdir WORKDIR).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand's options (``--config`` and its overrides are taken off
    the command line before, by :func:`camjax.config.split_argv`)."""
    from camjax.config import config_names

    p = sub.add_parser(
        "train",
        help="train a CAM network (resumes from --workdir's checkpoints)",
        description=HELP % textwrap.fill(", ".join(config_names()), 88),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE|NAME", help="config file or packaged name (required)")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard events, reports")
    p.add_argument("--verbose", action="store_true", help="also Orbax's and absl's INFO logs")


def run(args: argparse.Namespace) -> int:
    """Check the config, then :func:`camjax.train.train_and_evaluate`; the exit code."""
    from camjax.cli import console
    from camjax.cli.devices import split_cpu
    from camjax.config import config_names, load_checked

    if args.config is None:
        raise ValueError(
            "--config is required: a file or a packaged name (" + ", ".join(config_names()) + ")"
        )
    console.quiet_logging(args.verbose)
    config = load_checked(args.config, args.overrides)
    split_cpu(config)
    console.load_tensorflow(args.verbose)  # after the config is checked: errors stay one line
    from camjax import train

    try:
        result = train.train_and_evaluate(config, os.path.abspath(args.workdir))
    except (train.NonFiniteLossError, train.CheckpointSaveError) as e:
        print(f"{args.prog}: error: {e}", file=sys.stderr, flush=True)
        return 1
    values = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()]
    print("final: " + "  ".join(values), flush=True)
    return 0
