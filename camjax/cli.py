"""The camjax command line: camjax train | evaluate | extract | demo (each with --help).

camjax extract: CAMs, classes and boxes for many images.

    camjax extract photos/ --model efficientnet_lite0_gap --out cams/ --overlays
    camjax extract 'shots/**/*.png' --workdir runs/default --out cams/
    camjax extract --from-list paths.txt --model efficientnet_lite0_gap --out cams/

Writes into --out, shard by shard (every --shard-size inputs): part-NNNNN.jsonl (one
record per image: top-k class ids, names, probabilities and boxes in original-image
pixels), part-NNNNN.npz (the same as arrays, and the maps at feature resolution unless
--maps says otherwise), part-NNNNN.skipped.tsv (unreadable inputs with the reason), a
manifest.json naming the model, method and settings, and overlays/part-NNNNN/*.png with
--overlays. A killed run started again with the same command finishes the missing
shards; another model, method or input list on the same --out is refused. Read the
results back with camjax.bulk.open_extraction. Flags may also be written with
underscores (--batch_size). The same command runs as python -m camjax.extract.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from camjax.bulk.run import MAP_MODES
from camjax.files.images import DEFAULT_MAX_PIXELS


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


def _extract_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="CAMs, top-k classes and boxes for files, folders, globs or lists of images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="image files, folders or glob patterns (** too)")
    p.add_argument("--recursive", action="store_true", help="also search sub-folders")
    p.add_argument(
        "--from-list",
        action="append",
        default=[],
        metavar="FILE",
        help="a text file of image paths, one per line (relative to the file); repeatable",
    )
    p.add_argument("--tfds", metavar="NAME:SPLIT", help="a TFDS data set split as the input")
    p.add_argument("--data-dir", help="TFDS data folder for --tfds (default: TFDS's own)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", choices=_choices("models"), help="pretrained network by name")
    src.add_argument("--workdir", help="training workdir whose latest checkpoint to use")
    p.add_argument("--config", help="config file of --workdir (default: the one saved there)")
    p.add_argument("--checkpoint", help="a checkpoint step folder instead of the latest")
    p.add_argument("--out", required=True, help="output folder (resumed if it holds this run)")
    p.add_argument("--top-k", type=_positive, default=5, help="classes per image (default 5)")
    p.add_argument("--method", default="cam", choices=_choices("methods"), help="map method")
    p.add_argument(
        "--layer", help="layer path whose maps to take (default: the CAM head's feature map)"
    )
    p.add_argument(
        "--class",
        dest="class_ids",
        type=int,
        action="append",
        metavar="ID",
        help="maps of this class for every image instead of the top-k (repeatable)",
    )
    p.add_argument("--threshold", type=_fraction, default=0.2, help="box threshold (0.2)")
    p.add_argument(
        "--batch-size", type=_positive, default=16, help="images per step, over all devices"
    )
    p.add_argument("--shard-size", type=_positive, default=1000, help="inputs per output shard")
    p.add_argument(
        "--maps",
        default="feature",
        choices=MAP_MODES,
        help="maps kept: at feature resolution (default), at the model's input size, or none",
    )
    p.add_argument("--maps-dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    p.add_argument(
        "--overlay-top-k", type=_positive, default=1, help="maps per overlay PNG (default 1)"
    )
    p.add_argument(
        "--overlay-size", type=_positive, default=512, help="overlay panel side at most (512)"
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="refuse images needing more decoded megapixels (JPEGs decode downscaled)",
    )
    p.add_argument("--threads", type=_positive, default=None, help="decoding threads")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier extraction in --out"
    )
    p.add_argument("--coordinator-address", help="host:port of process 0 (multi-process runs)")
    p.add_argument("--num-processes", type=_positive, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


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
    _extract_parser(sub)
    sub.add_parser(
        "demo",
        help="train, evaluate and extract on a plain CPU in minutes (camjax demo --help)",
        add_help=False,
    )
    return parser


def quiet_logging(verbose: bool = False) -> None:
    """Orbax logs every save and restore at INFO through absl: WARNING and up only, unless
    ``verbose``. Called by the entry points (never at import)."""
    import logging

    from absl import logging as absl_logging

    level = logging.INFO if verbose else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(level)
    if not verbose:  # TFDS warns on every load of a builder config it did not name itself
        logging.getLogger("absl").addFilter(_not_tfds_config_notice)


def _not_tfds_config_notice(record) -> bool:
    return not str(record.msg).startswith("Using custom data configuration")


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` subcommand (also ``python train.py``)."""
    from camjax.config_files import config_names
    from camjax.train.config import load_checked

    if args.config is None:
        raise ValueError(
            "--config is required: a file or a packaged name (" + ", ".join(config_names()) + ")"
        )
    quiet_logging(args.verbose)
    config = load_checked(args.config, args.overrides)
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
    quiet_logging(args.verbose)
    config = load_checked(args.config, args.overrides) if args.config else None
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


def _load(args: argparse.Namespace):
    from camjax.evaluation.loading import config_from_checkpoints, load_named, load_trained

    if args.model:
        return load_named(args.model), args.model
    if args.config:
        from camjax.train.config import load_config

        config = load_config(args.config)
    else:
        config = config_from_checkpoints(args.checkpoint or args.workdir)
    return load_trained(config, args.workdir, checkpoint=args.checkpoint), config.model.name


def run_extract(args: argparse.Namespace) -> int:
    """The ``extract`` subcommand; returns the process exit code."""
    from camjax.bulk.run import extract_to
    from camjax.files.inputs import list_inputs

    if not args.inputs and not args.from_list and not args.tfds:
        raise ValueError("no inputs: name files, folders or globs, --from-list FILE or --tfds")
    if args.class_ids and args.overlay_top_k > len(args.class_ids):
        args.overlay_top_k = len(args.class_ids)
    elif args.overlay_top_k > args.top_k:
        raise ValueError(f"--overlay-top-k {args.overlay_top_k} exceeds --top-k {args.top_k}")
    if args.max_megapixels <= 0:
        raise ValueError(f"--max-megapixels must be > 0, got {args.max_megapixels}")
    # Bad paths fail here, before the model is loaded.
    if args.tfds:
        from camjax.bulk.tfds_source import parse

        parse(args.tfds)
    elif not list_inputs(args.inputs, recursive=args.recursive, lists=args.from_list).entries:
        raise FileNotFoundError(f"no image files in {args.inputs + args.from_list}")
    if args.num_processes > 1:
        if not args.coordinator_address:
            raise ValueError("--num-processes > 1 needs --coordinator-address host:port")
        from camjax.bulk.devices import init_distributed

        init_distributed(args.coordinator_address, args.num_processes, args.process_id)
    loaded, name = _load(args)
    summary = extract_to(
        loaded,
        args.inputs,
        args.out,
        model_name=name,
        recursive=args.recursive,
        lists=args.from_list,
        top_k=args.top_k,
        method=args.method,
        threshold=args.threshold,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        maps=args.maps,
        maps_dtype=args.maps_dtype,
        overlays=args.overlay_top_k if args.overlays else 0,
        overlay_size=args.overlay_size,
        max_pixels=int(args.max_megapixels * 1e6),
        threads=args.threads,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        layer=args.layer,
        class_ids=args.class_ids,
        tfds=args.tfds,
        data_dir=args.data_dir,
    )
    state = "complete" if summary["complete"] else "this process's shards done"
    print(f"{summary['num_images']} images -> {args.out} ({state})")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable input(s) (listed in the shards):")
        for path, why in summary["skipped"][:20]:
            print(f"  {path!r}: {why}")
    if summary["complete"] and not summary["num_records"]:
        return 1  # no readable image at all
    return 0


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
