"""``camjax evaluate`` (also ``python evaluate.py``): a trained network's tables and figures."""

from __future__ import annotations

import argparse
import os

from camjax.cli.args import choices, positive

HELP = """Evaluate a trained network: the paper's tables and figures into --workdir.

    camjax evaluate --workdir runs/default --methods cam,backprop --split validation

Without --config the config saved in the checkpoint is used. Each evaluation keeps its
report under WORKDIR/reports/; WORKDIR/report.md and report.json are the latest.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``evaluate`` subcommand's options (``--config`` as for ``train``)."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained checkpoint: tables and figures",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True, help="training workdir; reports go here too")
    p.add_argument("--config", metavar="FILE|NAME", help="default: the checkpoint's config")
    p.add_argument("--checkpoint", help="a checkpoint step folder (default: the newest intact)")
    p.add_argument("--split", default="validation", choices=("validation", "test"))
    p.add_argument(
        "--methods",
        default="cam,backprop",
        help="comma-separated map methods, of: " + ", ".join(choices("methods")),
    )
    p.add_argument("--batch-size", type=positive, help="default: config eval.batch_size")
    p.add_argument("--max-examples", type=positive, help="only the first N examples")
    p.add_argument("--verbose", action="store_true", help="also Orbax's and absl's INFO logs")


def run(args: argparse.Namespace) -> int:
    """Check the methods and config, then :func:`camjax.evaluation.evaluate`."""
    from camjax.checkpoints import saved_config
    from camjax.cli import console
    from camjax.cli.devices import split_cpu
    from camjax.config import load_checked

    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = sorted(set(methods) - set(choices("methods")))
    if unknown or not methods:
        raise ValueError(
            f"unknown --methods {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(choices('methods'))}"
        )
    if args.config is None and args.overrides:
        raise ValueError("--config.* overrides need --config")
    console.quiet_logging(args.verbose)
    config = load_checked(args.config, args.overrides) if args.config else None
    saved = config or saved_config(args.checkpoint or args.workdir)
    if saved is not None:
        split_cpu(saved)
    console.load_tensorflow(args.verbose)
    from camjax.evaluation import evaluate

    evaluate(
        config,
        os.path.abspath(args.workdir),
        checkpoint=args.checkpoint,
        split=args.split,
        methods=methods,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
    )
    return 0
