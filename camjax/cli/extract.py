"""The ``camjax extract`` subcommand: options and run.

It builds one :class:`~camjax.localize.LocalizeSpec` and :class:`~camjax.extract.RunOptions`
and calls :func:`camjax.extract.extract_to`.
"""

from __future__ import annotations

import argparse
import sys

from camjax.cli.args import choices, fraction, positive
from camjax.extract.run import MAP_MODES
from camjax.files.images import DEFAULT_MAX_PIXELS

HELP = """camjax extract: CAMs, classes and boxes for many images.

    camjax extract photos/ --model efficientnet_lite0_gap --out cams/ --overlays
    camjax extract 'shots/**/*.png' --workdir runs/default --out cams/
    camjax extract --from-list paths.txt --model efficientnet_lite0_gap --out cams/

Writes into --out, shard by shard (every --shard-size inputs): part-NNNNN.jsonl (one
record per image: top-k class ids, names, probabilities and boxes in original-image
pixels), part-NNNNN.npz (the same as arrays, and the maps at feature resolution unless
--maps says otherwise), part-NNNNN.skipped.tsv (unreadable inputs with the reason), a
manifest.json naming the model, method and settings, and overlays/part-NNNNN/*.png with
--overlays. A killed run started again with the same command finishes the missing
shards (finished ones are checked against their recorded sizes and sha256; a damaged one
is moved to corrupt/ and redone); another model, method or input list on the same --out
is refused, and so is a second extraction writing to it at the same time. Read the
results back with camjax.extract.open_extraction. Flags may also be written with
underscores (--batch_size).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``extract`` subcommand's options on ``camjax``'s parser."""
    p = sub.add_parser(
        "extract",
        help="CAMs, top-k classes and boxes for files, folders, globs or lists of images",
        description=HELP,
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
    src.add_argument("--model", choices=choices("models"), help="pretrained network by name")
    src.add_argument("--workdir", help="training workdir whose latest checkpoint to use")
    p.add_argument("--config", help="config file of --workdir (default: the one saved there)")
    p.add_argument("--checkpoint", help="a checkpoint step folder instead of the latest")
    p.add_argument("--out", required=True, help="output folder (resumed if it holds this run)")
    p.add_argument("--top-k", type=positive, default=5, help="classes per image (default 5)")
    p.add_argument("--method", default="cam", choices=choices("methods"), help="map method")
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
    p.add_argument("--threshold", type=fraction, default=0.2, help="box threshold (0.2)")
    p.add_argument(
        "--batch-size", type=positive, default=16, help="images per step, over all devices"
    )
    p.add_argument("--shard-size", type=positive, default=1000, help="inputs per output shard")
    p.add_argument(
        "--maps",
        default="feature",
        choices=MAP_MODES,
        help="maps kept: at feature resolution (default), at the model's input size, or none",
    )
    p.add_argument("--maps-dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--overlays", action="store_true", help="also write overlay PNGs")
    p.add_argument(
        "--overlay-top-k", type=positive, default=1, help="maps per overlay PNG (default 1)"
    )
    p.add_argument(
        "--overlay-size", type=positive, default=512, help="overlay panel side at most (512)"
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="refuse images needing more decoded megapixels (JPEGs decode downscaled)",
    )
    p.add_argument("--threads", type=positive, default=None, help="decoding threads")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier extraction in --out"
    )
    p.add_argument("--coordinator-address", help="host:port of process 0 (multi-process runs)")
    p.add_argument("--num-processes", type=positive, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="also Orbax's, absl's and TF's logs")
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="on a CPU: run as N JAX devices side by side (default: 4 per core; 0: one device)",
    )
    p.add_argument(
        "--cpu-depthwise",
        choices=("shifted", "native"),
        default=None,
        help="depthwise convolutions in CPU programs: camjax's shifted slices or XLA's grouped "
        "convolution (default: shifted; a --workdir's config may say otherwise)",
    )


def load(args: argparse.Namespace):
    """``(Loaded, model name)``: ``--model``'s pretrained network or ``--workdir``'s."""
    from camjax.checkpoints import load_named, load_trained

    if args.model:
        return load_named(args.model), args.model
    config = None  # None: the config saved with the checkpoint, read in the same load
    if args.config:
        from camjax.config import load_config

        config = load_config(args.config)
    loaded = load_trained(config, args.workdir, checkpoint=args.checkpoint)
    return loaded, loaded.config.model.name


def run(args: argparse.Namespace) -> int:
    """The ``extract`` subcommand; returns the process exit code."""
    from camjax.cli import console
    from camjax.extract.run import ExtractionStopped, OutputBusy

    console.quiet_logging(args.verbose)
    if args.tfds:  # files are read without TensorFlow
        console.load_tensorflow(args.verbose)

    try:
        return _run(args)
    except (OutputBusy, ExtractionStopped) as e:  # one line: 2 another run, 1 disk full
        prog = getattr(args, "prog", "camjax extract")
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, OutputBusy) else 1


def _run(args: argparse.Namespace) -> int:
    from camjax.extract.run import RunOptions, extract_to
    from camjax.files.inputs import list_inputs
    from camjax.localize import LocalizeSpec

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
        from camjax.extract.tfds_source import parse

        parse(args.tfds)
    elif not list_inputs(args.inputs, recursive=args.recursive, lists=args.from_list).entries:
        raise FileNotFoundError(f"no image files in {args.inputs + args.from_list}")
    from camjax import cpu

    cpu_devices = 4 * cpu.usable_cores() if args.cpu_devices is None else args.cpu_devices
    cpu.split_cores(cpu_devices)  # before any JAX work (jax.distributed's included)
    if args.num_processes > 1:
        if not args.coordinator_address:
            raise ValueError("--num-processes > 1 needs --coordinator-address host:port")
        from camjax.extract.devices import init_distributed

        init_distributed(args.coordinator_address, args.num_processes, args.process_id)
    loaded, name = load(args)
    if args.cpu_depthwise is not None or args.model:
        import dataclasses

        model = loaded.spec.build() if loaded.spec is not None else loaded.model
        if (args.cpu_depthwise or "shifted") == "shifted":
            model = cpu.shifted_depthwise(model)
        loaded = dataclasses.replace(loaded, model=model)
    spec = LocalizeSpec(
        method=args.method,
        top_k=args.top_k,
        class_ids=args.class_ids,
        threshold=args.threshold,
        layer=args.layer,
    )
    options = RunOptions(
        model_name=name,
        recursive=args.recursive,
        lists=args.from_list,
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
        tfds=args.tfds,
        data_dir=args.data_dir,
    )
    summary = extract_to(loaded, args.inputs, args.out, spec, options)
    for name, why, dest in summary["moved_aside"]:
        print(f"{name} was damaged ({why}): moved to {dest} and redone")
    state = "complete" if summary["complete"] else "this process's shards done"
    print(f"{summary['num_images']} images -> {args.out} ({state})")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable input(s) (listed in the shards):")
        for path, why in summary["skipped"][:20]:
            print(f"  {path!r}: {why}")
    if summary["complete"] and not summary["num_records"]:
        return 1  # no readable image at all
    return 0
