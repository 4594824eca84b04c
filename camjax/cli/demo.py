"""The main job: train, evaluate, and extract CAMs from real photos, on a plain CPU.

    python -m camjax demo --workdir runs/demo      (what ``make demo`` runs)

1. trains ``configs/default.py`` (``tiny_gap`` on the embedded ``camjax_shapes`` set;
   a workdir that already holds its checkpoints resumes, so a rerun is quick);
2. evaluates it with CAM, Backprop and the centre baseline: ``report.md``,
   ``report.json`` and PNG figures in the workdir;
3. extracts CAMs and boxes of ``efficientnet_lite0_gap`` (real ImageNet weights, offline)
   for the 20 ImageNet validation photos shipped in the ``foolbox`` wheel
   (``foolbox/data/imagenet_XX_<label>.jpg``): ``extract/`` in the workdir (read it back
   with ``camjax.extract.open_extraction``).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import os
import time
from collections.abc import Sequence

# The demo's report shows every protocol and the cheaper faithfulness metrics: the
# paper's rule, the released code's, camjax's min-max rule, the WSOL benchmark's exact
# rule beside camjax's on-device one, PxAP, Average Drop and insertion/deletion AUCs.
DEMO_METRICS = (
    "paper_loc",
    "released_loc",
    "loc_error",
    "heuristic",
    "gt_known",
    "max_box_acc",
    "max_box_acc_v2",
    "wsol_box",
    "pxap",
    "average_drop",
    "insertion_deletion",
)


def foolbox_photos() -> list[str]:
    """The ImageNet photos in the installed ``foolbox`` wheel (label in the file name).

    Located through the package spec, so foolbox itself is never imported.
    """
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the foolbox wheel is not installed (pip install foolbox==3.3.4)")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    photos = sorted(glob.glob(os.path.join(folder, "imagenet_*.jpg")))
    if not photos:
        raise FileNotFoundError(f"no imagenet_*.jpg photos in {folder}")
    return photos


def _overrides(items: Sequence[str]) -> dict:
    from camjax.config import parse_value  # as --config.KEY=VALUE of train and evaluate

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got {item!r}")
        out[key] = parse_value(text)
    return out


def top5_photo_figure(path: str, out_dir: str, image_size: int) -> str:
    """The paper's Figure 3 on a real photo: its top-5 classes' CAMs side by side."""
    import cv2
    import numpy as np

    from camjax.data.folder import read_rgb
    from camjax.evaluation.figures import top_classes_figure
    from camjax.extract import open_extraction

    ex = open_extraction(out_dir)
    rec = next(ex.records())  # the first photo
    size = (image_size, image_size)
    maps = np.stack([ex.map(rec, j, size=size) for j in range(len(rec["top_k"]))])
    names = [c["class_name"] for c in rec["top_k"]]
    probs = [c["prob"] for c in rec["top_k"]]
    boxes = ex.arrays(rec["shard"])["boxes"][rec["row"]]  # model-input pixels
    image = cv2.resize(read_rgb(rec["path"]).astype(np.float32), size)
    return top_classes_figure(path, image, maps, names, probs, boxes)


def main(argv: Sequence[str] | None = None) -> int:
    """``camjax demo [options]``: parses its own options (``argv``); the exit code."""
    p = argparse.ArgumentParser(
        prog="camjax demo",
        description=__doc__.replace("``", ""),  # plain text in --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--config", default=None, help="config file (default configs/default.py)")
    p.add_argument("--steps", type=int, default=None, help="override config.train.num_steps")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set data.shapes.num_train=256 (repeatable)",
    )
    p.add_argument("--max-eval-examples", type=int, default=None)
    p.add_argument("--photos", type=int, default=20, help="how many foolbox photos (<= 20)")
    p.add_argument("--methods", default="cam,backprop")
    p.add_argument("--verbose", action="store_true", help="also Orbax's, absl's and TF's logs")
    args = p.parse_args(argv)
    from camjax.cli import console
    from camjax.cli.devices import split_cpu

    console.quiet_logging(args.verbose)
    console.load_tensorflow(args.verbose)  # before the imports below load it unfiltered

    from camjax.checkpoints import cpu_tuned, load_named
    from camjax.config import load_config
    from camjax.evaluation import evaluate
    from camjax.extract import RunOptions, extract_to
    from camjax.train import train_and_evaluate

    t0 = time.perf_counter()
    workdir = os.path.abspath(args.workdir)
    # configs/default.py: the clone's, or the one installed with camjax.
    config = load_config(args.config or "default", _overrides(args.set))
    if args.steps is not None:
        config.train.num_steps = args.steps
    if "eval.metrics" not in _overrides(args.set):
        config.eval.metrics = DEMO_METRICS
        config.eval.faithfulness_steps = 4
    devices = split_cpu(config)  # config.cpu: the CPU's cores as devices (camjax.cpu)
    on = f" on {devices} CPU devices" if devices else ""
    print(f"[1/3] training {config.model.name} on {config.data.name}{on} in {workdir}", flush=True)
    train_and_evaluate(config, workdir)
    t1 = time.perf_counter()
    print(f"[2/3] evaluating ({args.methods}; {t1 - t0:.0f} s so far)", flush=True)
    evaluate(
        config, workdir, methods=tuple(args.methods.split(",")), max_examples=args.max_eval_examples
    )
    t2 = time.perf_counter()
    photos = foolbox_photos()[: args.photos]
    print(
        f"[3/3] CAMs of efficientnet_lite0_gap on {len(photos)} ImageNet photos "
        f"({t2 - t0:.0f} s so far)",
        flush=True,
    )
    out = os.path.join(workdir, "extract")
    pretrained = load_named("efficientnet_lite0_gap")
    pretrained = dataclasses.replace(pretrained, model=cpu_tuned(pretrained.model, config))
    # overwrite: a rerun (or an extract/ folder of an older camjax) is replaced.
    extract_to(pretrained, photos, out, options=RunOptions(overlays=1, overwrite=True))
    top5_photo_figure(os.path.join(out, "top5_photo.png"), out, pretrained.image_size)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. Open:")
    print(f"  {os.path.join(workdir, 'report.md')}   the tables (also report.json)")
    for png in sorted(glob.glob(os.path.join(workdir, "*.png"))):
        print(f"  {png}")
    print(f"  {os.path.join(out, 'part-00000.jsonl')}   top-5 classes and boxes of each photo")
    print(f"  {os.path.join(out, 'part-00000.npz')}   maps (7x7) and boxes")
    print(f"  {os.path.join(out, 'overlays', 'part-00000')}/   CAM overlays with boxes")
    print(f"  {os.path.join(out, 'top5_photo.png')}   the top-5 classes' CAMs of one photo")
    return 0
