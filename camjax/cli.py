"""The ``camjax`` command line. ``camjax extract``: CAMs, classes and boxes for a folder.

    camjax extract photos/ --model efficientnet_lite0_gap --out cams/ --overlays
    camjax extract 'shots/*.png' --workdir runs/default --out cams/

Writes into ``--out``: ``cams.npz`` (maps and boxes of every image), ``predictions.jsonl``
(one line per image: top-k class ids, names, probabilities and boxes in original-image
pixels), ``overlays/*.png`` with ``--overlays``, and ``skipped.txt`` naming every file
that could not be read, with the reason. The same command runs as ``python -m camjax.extract``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _extract_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="CAMs, top-k classes and boxes for a folder or glob of images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="pretrained network by name, e.g. efficientnet_lite0_gap")
    src.add_argument("--workdir", help="training workdir whose latest checkpoint to use")
    p.add_argument("--config", help="config file of --workdir (default: the one saved there)")
    p.add_argument("--checkpoint", help="a checkpoint step folder instead of the latest")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--method", default="cam", help="map method (default cam)")
    p.add_argument("--threshold", type=float, default=0.2, help="box threshold (default 0.2)")
    p.add_argument("--batch-size", type=int, default=16, help="images per jitted call")
    p.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    p.add_argument(
        "--maps-dtype",
        default="float16",
        choices=("float16", "float32", "none"),
        help="dtype of the maps in cams.npz, or none to store boxes only",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camjax", description="Class Activation Mapping in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    _extract_parser(sub)
    return parser


def run_extract(args: argparse.Namespace) -> int:
    """The ``extract`` subcommand; returns the process exit code."""
    from camjax.data.folder import list_images
    from camjax.evaluation.folder import extract_folder
    from camjax.evaluation.loading import config_from_checkpoints, load_named, load_trained

    files = list_images(args.inputs)  # bad paths fail before the model is loaded
    if not files:
        raise FileNotFoundError(f"no image files in {args.inputs}")
    if args.model:
        loaded = load_named(args.model)
    else:
        if args.config:
            from camjax.train.config import load_config

            config = load_config(args.config)
        else:
            config = config_from_checkpoints(args.checkpoint or args.workdir)
        loaded = load_trained(config, args.workdir, checkpoint=args.checkpoint)
    summary = extract_folder(
        loaded,
        files,
        args.out,
        top_k=args.top_k,
        method=args.method,
        threshold=args.threshold,
        batch_size=args.batch_size,
        overlays=args.overlays,
        maps_dtype=None if args.maps_dtype == "none" else args.maps_dtype,
        progress=not args.no_progress,
    )
    print(f"{summary['num_images']} images -> {args.out}")
    for key in ("npz", "jsonl", "overlays"):
        if summary.get(key):
            print(f"  {key}: {summary[key]}")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable file(s) (listed in skipped.txt):")
        for path, why in summary["skipped"]:
            print(f"  {path}: {why}")
    return 0 if summary["num_images"] else 1


COMMANDS = {"extract": run_extract}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``camjax`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        print(f"camjax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
