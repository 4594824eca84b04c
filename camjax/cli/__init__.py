"""The camjax command line: ``camjax train | evaluate | extract | demo`` (each with --help).

One module per subcommand, each with ``add_parser(sub)`` (its options) and ``run(args)``
(flags in, one library call, the exit code out); ``demo`` parses its own options.
:mod:`camjax.cli.args` holds what they share. Also ``python -m camjax <subcommand>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from camjax.cli import evaluate, extract, train
from camjax.cli.args import Parser, dash_style

COMMANDS = {"train": train, "evaluate": evaluate, "extract": extract}


def build_parser(prog: str = "camjax") -> argparse.ArgumentParser:
    """``camjax``'s parser, every subcommand's options on it."""
    parser = Parser(prog=prog, description="Class Activation Mapping in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    sub.add_parser(
        "demo",
        help="train, evaluate and extract on a plain CPU in minutes (camjax demo --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of the ``camjax`` console script (and of train.py / evaluate.py, which
    pass ``prog``); user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from camjax.cli import demo

        return demo.main(argv[1:])
    path, overrides = None, {}
    if argv[:1] in (["train"], ["evaluate"]):
        from camjax.config import split_argv

        try:
            path, overrides, rest = split_argv(argv[1:])
        except ValueError as e:
            print(f"{prog or 'camjax ' + argv[0]}: error: {e}", file=sys.stderr)
            return 2
        argv = [argv[0], *rest]
    args = build_parser().parse_args(dash_style(argv))
    if args.command in ("train", "evaluate"):
        args.config, args.overrides = path, overrides
    args.prog = prog or f"camjax {args.command}"
    from camjax.extract.store import OutputMismatch

    try:
        return COMMANDS[args.command].run(args)
    except (FileNotFoundError, ValueError, KeyError, SyntaxError, OutputMismatch) as e:
        text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{args.prog}: error: {text}", file=sys.stderr, flush=True)
        return 2
