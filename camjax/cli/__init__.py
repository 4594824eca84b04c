"""The camjax command line: camjax train | evaluate | extract | demo (each with --help)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from camjax import console


def _choices(registry: str) -> list[str]:
    """Names of a light registry, read without loading weights."""
    if registry == "methods":
        from camjax.saliency import METHODS

        return sorted(METHODS)
    from camjax.pretrained import WEIGHTS

    return sorted(WEIGHTS)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


TRAIN_HELP = """Train a CAM network, resuming from the newest intact checkpoint in --workdir.

    camjax train --config default --workdir runs/default
    camjax train --config configs/vgg16_gap_cub.py --workdir runs/cub \\
        --config.train.batch_size=128 --config.init_from=vgg16-397923af.pth

--config is a config file or the name of a packaged one:
%s.
Overrides --config.KEY=VALUE take Python literals, else strings. Progress lines go to
stdout, TensorBoard events to WORKDIR/tensorboard (tensorboard --logdir WORKDIR).
"""

EVALUATE_HELP = """Evaluate a trained network: the paper's tables and figures into --workdir.

    camjax evaluate --workdir runs/default --methods cam,backprop --split validation

Without --config the config saved in the checkpoint is used. Each evaluation keeps its
report under WORKDIR/reports/; WORKDIR/report.md and report.json are the latest.
"""


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from camjax.config_files import config_names

    p = sub.add_parser(
        "train",
        help="train a CAM network (resumes from --workdir's checkpoints)",
        description=TRAIN_HELP % textwrap.fill(", ".join(config_names()), 88),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE|NAME", help="config file or packaged name (required)")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard events, reports")
    p.add_argument("--verbose", action="store_true", help="also Orbax's and absl's INFO logs")


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained checkpoint: tables and figures",
        description=EVALUATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True, help="training workdir; reports go here too")
    p.add_argument("--config", metavar="FILE|NAME", help="default: the checkpoint's config")
    p.add_argument("--checkpoint", help="a checkpoint step folder (default: the newest intact)")
    p.add_argument("--split", default="validation", choices=("validation", "test"))
    p.add_argument(
        "--methods",
        default="cam,backprop",
        help="comma-separated map methods, of: " + ", ".join(_choices("methods")),
    )
    p.add_argument("--batch-size", type=_positive, help="default: config eval.batch_size")
    p.add_argument("--max-examples", type=_positive, help="only the first N examples")
    p.add_argument("--verbose", action="store_true", help="also Orbax's and absl's INFO logs")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``camjax train: error: ...``), exit code 2; ``--help``
    shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "camjax") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Class Activation Mapping in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _evaluate_parser(sub)
    from camjax import cli_extract

    cli_extract.add_parser(sub)
    sub.add_parser(
        "demo",
        help="train, evaluate and extract on a plain CPU in minutes (camjax demo --help)",
        add_help=False,
    )
    return parser


def split_cpu(config) -> int:
    """``config.cpu.devices``: the host CPU as that many JAX devices (see camjax.cpu).

    Entry points call it before any JAX work; returns the count set (0: none)."""
    from camjax import cpu

    tuning = config.get("cpu")
    if not tuning or not tuning.get("devices"):
        return 0
    return cpu.split_cores(cpu.devices_for(int(tuning.devices), int(config.train.batch_size)))


def _saved_config(workdir: str):
    """The config saved with the newest checkpoint in ``workdir``, read without JAX (None
    when there is none: evaluation then reports what is wrong)."""
    import json

    import ml_collections

    from camjax.evaluation import checkpoints as ckpts

    directory, step = ckpts.split_path(os.path.abspath(workdir))
    try:
        found = ckpts.steps(directory) if step is None else [step]
        meta = ckpts.read_meta(directory, max(found))
        return ml_collections.ConfigDict(json.loads(meta["config"]))
    except (OSError, ValueError, KeyError, TypeError):  # a damaged checkpoint included
        return None


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` subcommand (also ``python train.py``)."""
    from camjax.config_files import config_names
    from camjax.train.config import load_checked

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


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` subcommand (also ``python evaluate.py``)."""
    from camjax.train.config import load_checked

    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = sorted(set(methods) - set(_choices("methods")))
    if unknown or not methods:
        raise ValueError(
            f"unknown --methods {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(_choices('methods'))}"
        )
    if args.config is None and args.overrides:
        raise ValueError("--config.* overrides need --config")
    console.quiet_logging(args.verbose)
    config = load_checked(args.config, args.overrides) if args.config else None
    saved = config or _saved_config(args.checkpoint or args.workdir)
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


def run_extract(args: argparse.Namespace) -> int:
    from camjax import cli_extract

    console.quiet_logging(args.verbose)
    if args.tfds:  # files are read without TensorFlow
        console.load_tensorflow(args.verbose)

    return cli_extract.run(args)


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "extract": run_extract}


def _dash_style(argv: Sequence[str]) -> list[str]:
    """``--batch_size`` -> ``--batch-size`` (the option name only; values untouched)."""
    out, after_dashdash = [], False
    for tok in argv:
        if tok == "--":
            after_dashdash = True
        if not after_dashdash and tok.startswith("--"):
            name, eq, value = tok.partition("=")
            tok = name.replace("_", "-") + eq + value
        out.append(tok)
    return out


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of the ``camjax`` console script (and of train.py / evaluate.py, which
    pass ``prog``); user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from camjax.demo import main as demo_main

        return demo_main(argv[1:])
    path, overrides = None, {}
    if argv[:1] in (["train"], ["evaluate"]):
        from camjax.train.config import split_argv

        try:
            path, overrides, rest = split_argv(argv[1:])
        except ValueError as e:
            print(f"{prog or 'camjax ' + argv[0]}: error: {e}", file=sys.stderr)
            return 2
        argv = [argv[0], *rest]
    args = build_parser().parse_args(_dash_style(argv))
    if args.command in ("train", "evaluate"):
        args.config, args.overrides = path, overrides
    args.prog = prog or f"camjax {args.command}"
    from camjax.bulk.store import OutputMismatch

    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError, KeyError, SyntaxError, OutputMismatch) as e:
        text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{args.prog}: error: {text}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
