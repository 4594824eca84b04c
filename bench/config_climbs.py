"""Follow ``config`` through the code of an evaluation: stops, modules, climbs.

    python bench/config_climbs.py [--cli]

Trains two steps of a tiny ``tiny_gap`` into a temporary workdir (not traced), then runs
``camjax.evaluation.evaluate(config, workdir)`` (``--cli``: ``camjax evaluate --workdir
W --config FILE``) under ``sys.settrace``. A *stop* is a call of a function in a camjax
module that receives a ``ConfigDict`` (the config or one of its blocks), or an object
holding one as ``.config``, as an argument (``self`` included).
A *climb* is a stop on a higher layer (``tests/test_layout.py``'s LAYERS) than the stop
before it; a *return* is a stop in a module already left for another one.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layers() -> dict[str, int]:
    """``tests/test_layout.py``'s layer of each top-level camjax name."""
    spec = importlib.util.spec_from_file_location(
        "layout", os.path.join(ROOT, "tests", "test_layout.py")
    )
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    return layout.LEVEL


def _tiny_run(tmp: str):
    from camjax.train import load_config, train_and_evaluate

    c = load_config(os.path.join(ROOT, "configs", "default.py"))
    c.data.data_dir = os.path.join(tmp, "tfds")
    c.data.image_size = c.data.shapes.image_size = 16
    c.data.shapes.num_train, c.data.shapes.num_validation, c.data.shapes.num_test = 32, 16, 8
    c.model.kwargs.widths = (4, 8)
    c.model.kwargs.head_features = 8
    c.train.batch_size = c.eval.batch_size = 16
    c.train.num_steps = c.train.checkpoint_every = 2
    c.train.async_checkpoints = False
    c.eval.cam_threshold_steps = 10
    c.cpu.devices = 0
    workdir = os.path.join(tmp, "w")
    train_and_evaluate(c, workdir)
    return c, workdir


def _flags(config) -> list[str]:
    """The tiny run's config as ``--config configs/default.py --config.KEY=VALUE``."""
    base = {
        "data.data_dir",
        "data.image_size",
        "data.shapes.image_size",
        "data.shapes.num_train",
        "data.shapes.num_validation",
        "data.shapes.num_test",
        "model.kwargs.widths",
        "model.kwargs.head_features",
        "cpu.devices",
        "eval.batch_size",
        "eval.cam_threshold_steps",
    }
    flags = ["--config", os.path.join(ROOT, "configs", "default.py")]
    for key in sorted(base):
        node = config
        for part in key.split("."):
            node = node[part]
        flags.append(
            f"--config.{key}={node!r}" if not isinstance(node, str) else f"--config.{key}={node}"
        )
    return flags


def _carries(value, kinds) -> bool:
    """A config, one of its blocks, or an object holding one as ``.config`` (``Loaded``)."""
    if isinstance(value, kinds):
        return True
    held = getattr(value, "__dict__", None)
    return isinstance(held, dict) and isinstance(held.get("config"), kinds)


def trace(fn) -> list[tuple[str, str]]:
    """``(module, function)`` of every camjax call that gets a ConfigDict, in order."""
    import ml_collections

    kinds = (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)
    stops: list[tuple[str, str]] = []

    def tracer(frame, event, arg):
        if event != "call":
            return None
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("camjax."):
            return None
        code = frame.f_code
        n = code.co_argcount + code.co_kwonlyargcount
        if any(_carries(frame.f_locals.get(v), kinds) for v in code.co_varnames[:n]):
            stops.append((module, code.co_name))
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return stops


def summary(stops: list[tuple[str, str]], level: dict[str, int]) -> dict[str, int]:
    units = [m.split(".")[1] for m, _ in stops]
    climbs = sum(level[b] > level[a] for a, b in itertools.pairwise(units))
    left, returns = set(), 0
    for (a, _), (b, _) in itertools.pairwise(stops):
        if a != b:
            returns += b in left
            left.add(a)
    return {
        "stops": len(stops),
        "modules": len({m for m, _ in stops}),
        "climbs": climbs,
        "returns": returns,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cli", action="store_true", help="trace `camjax evaluate` instead")
    args = p.parse_args()
    level = layers()
    with tempfile.TemporaryDirectory() as tmp:
        config, workdir = _tiny_run(tmp)
        if args.cli:
            from camjax.cli import main as cli_main

            def run():
                cli_main(["evaluate", "--workdir", workdir, "--max-examples", "8", *_flags(config)])
        else:
            from camjax.evaluation import evaluate

            def run():
                evaluate(config, workdir, max_examples=8, figures=False, verbose=False)

        stops = trace(run)
    for module, name in stops:
        print(f"  L{level[module.split('.')[1]]} {module}.{name}")
    print(summary(stops, level))


if __name__ == "__main__":
    main()
