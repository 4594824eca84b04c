"""camjax's configs (``configs/*.py``): found by path or name, loaded, overridden, checked.

The files live in the repository's ``configs/`` folder and are installed with camjax as
the package ``camjax.configs``; :func:`config_path` accepts either a path or a name.
Every problem is a one-line ``ValueError``/``KeyError``/``FileNotFoundError`` naming the
key and the value, raised before any work starts; the entry points print it and exit 2.
Importing this module loads nothing heavy (no TensorFlow, no trainer), so ``--help`` and a
bad config stay quick.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections

# Free-form sub-trees (passed through as keyword arguments): no schema to check.
FREE_FORM = ("model.kwargs",)


def packaged_configs() -> str:
    """The folder of the config files shipped with camjax.

    An installed wheel: ``site-packages/camjax/configs`` (package ``camjax.configs``); a
    clone (plain or editable install): the repository's ``configs/`` beside ``camjax/``.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(package, "configs"), os.path.join(package, "..", "configs")):
        if os.path.isfile(os.path.join(folder, "default.py")):
            return os.path.normpath(folder)
    raise FileNotFoundError(f"camjax's configs are not installed beside {package}")


def config_names() -> list[str]:
    """Names of the packaged configs (``default``, ``vgg16_gap_cub``, ...)."""
    folder = packaged_configs()
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def config_path(name: str) -> str:
    """The config file ``name`` names: a path to a file, else a packaged config by name.

    ``configs/default.py`` (a path; outside a clone it falls back to the packaged file of
    that name), ``default`` or ``default.py`` (packaged).
    """
    if os.path.isfile(name):
        return os.path.abspath(name)
    head, base = os.path.split(os.path.normpath(name))
    stem = base[:-3] if base.endswith(".py") else base
    if head in ("", "configs") and stem.isidentifier():
        path = os.path.join(packaged_configs(), stem + ".py")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"config file not found: {os.path.abspath(name)} "
        f"(packaged configs: {', '.join(config_names())})"
    )


def _importable_configs(path: str) -> None:
    """Let ``from configs import default`` in the config file ``path`` find its siblings.

    A clone's ``configs/`` folder: its parent goes on ``sys.path`` (as always). An
    installed ``camjax/configs``: ``configs`` is bound to ``camjax.configs`` instead, so
    camjax's own sub-packages never become top-level names.
    """
    folder = os.path.dirname(path)
    root = os.path.dirname(folder)
    if os.path.isfile(os.path.join(root, "__init__.py")) and os.path.basename(folder) == "configs":
        import camjax.configs

        sys.modules.setdefault("configs", camjax.configs)
    elif root not in sys.path:
        sys.path.insert(0, root)


def load_config(path: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``path`` (or packaged config name, see
    :func:`config_path`), with dotted-key ``overrides``.

    Paper configs ``from configs import default`` (see :func:`_importable_configs`).
    Unknown override keys fail.
    """
    path = config_path(path)
    _importable_configs(path)
    name = "camjax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load config file {path} (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config()")
    config = module.get_config()
    for key, value in (overrides or {}).items():
        _set(config, key, value)
    return config


def load_checked(path: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """:func:`load_config`, then checked: no key the ``default.py`` beside it lacks (a
    typo in a config file), and :func:`validate`'s values. What the entry points run."""
    config = load_config(path, overrides)
    default = os.path.join(os.path.dirname(config_path(path)), "default.py")
    if os.path.isfile(default):
        check_config(config, load_config(default))
    validate(config)
    return config


# Floats Python's literal syntax lacks: ``--config.optimizer.learning_rate=nan`` is a
# float (then refused by ``validate`` with one line where a finite value is needed).
NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal (``3``, ``0.1``, ``(4, 8)``, ``None``,
    ``True``), ``nan``/``inf``/``-inf`` (any case: floats), or else the string itself."""
    special = NON_FINITE.get(text.strip().lower().replace("infinity", "inf"))
    if special is not None:
        return special
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for i, p in enumerate(parents):
        if p not in node:
            if not _free(".".join(parents[: i + 1])):
                raise KeyError(f"unknown config key {key!r} (no {p!r})")
            node[p] = ml_collections.ConfigDict()
        node = node[p]
    if leaf not in node and not _free(key):
        raise KeyError(f"unknown config key {key!r}")
    if leaf in node and isinstance(node[leaf], tuple) and isinstance(value, list):
        value = tuple(value)
    if leaf in node and isinstance(node[leaf], str) and isinstance(value, float):
        value = str(value) if not math.isfinite(value) else value  # a string field: "nan"
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise ValueError(f"config key {key!r}: cannot set {value!r} ({e})") from None


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE_FORM)


def split_argv(argv: Sequence[str]) -> tuple[str | None, dict[str, Any], list[str]]:
    """``(config path, {dotted key: value}, other args)`` from a command line.

    Accepts ``--config PATH`` / ``--config=PATH`` and ``--config.a.b=V`` /
    ``--config.a.b V``; everything else is left for the caller's flag parser.
    """
    path, overrides, rest = None, {}, []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--config" or a.startswith("--config=") or a.startswith("--config."):
            name, eq, value = a[2:].partition("=")
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError(f"--{name} needs a value")
                i += 1
                value = args[i]
            if name == "config":
                path = value
            else:
                overrides[name[len("config.") :]] = parse_value(value)
        else:
            rest.append(a)
        i += 1
    return path, overrides, rest


def _keys(config: Any, prefix: str = "") -> set[str]:
    out = set()
    for k, v in config.items():
        full = f"{prefix}{k}"
        out.add(full)
        if isinstance(v, ml_collections.ConfigDict) and not _free(full):
            out |= _keys(v, full + ".")
    return out


def check_config(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict) -> None:
    """Fail naming every key of ``config`` that ``reference`` (the default) lacks.

    ``ConfigDict`` accepts new attributes silently, so a typo in a config file
    (``c.train.num_step = ...``) would otherwise be ignored.
    """
    unknown = sorted(k for k in _keys(config) - _keys(reference) if not _free(k))
    if unknown:
        raise KeyError(f"unknown config key(s): {', '.join(unknown)} (not in configs/default.py)")


def _int(config, key: str, low: int) -> None:
    node = config
    for p in key.split("."):
        node = node[p]
    if isinstance(node, bool) or not isinstance(node, int) or node < low:
        raise ValueError(f"{key} must be an integer >= {low}, got {node!r}")


def _one_of(value: Any, key: str, known) -> None:
    if value not in known:
        raise ValueError(f"{key} must be one of {', '.join(sorted(known))}; got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Check the values training and evaluation read, before any work is done.

    Counts and sizes in range, known names (model, dtype, normalization, augmentation,
    schedule, runner, metrics), a finite positive learning rate. The model's kwargs are
    checked when the network is built (``NetworkSpec.param_shapes``).
    """
    from camjax import models
    from camjax.checkpoints.network import DTYPES
    from camjax.metrics import registry
    from camjax.train.step import RUNNERS

    for key, low in (
        ("train.num_steps", 1),
        ("train.batch_size", 1),
        ("train.keep_checkpoints", 1),
        ("train.log_every", 0),
        ("train.checkpoint_every", 0),
        ("train.eval_every", 0),
        ("eval.batch_size", 1),
        ("eval.cam_threshold_steps", 1),
        ("eval.max_batches", 0),
        ("data.image_size", 1),
        ("seed", 0),
    ):
        _int(config, key, low)
    for key in ("data.cache_decoded_mb", "cpu.devices"):  # absent from older saved configs
        group, name = key.split(".")
        if name in config.get(group, {}):
            _int(config, key, 0)
    _one_of(config.model.name, "model.name", models.REGISTRY)
    _one_of(config.model.dtype, "model.dtype", DTYPES)
    _one_of(config.parallel, "parallel", RUNNERS)
    _one_of(config.data.normalization, "data.normalization", _normalizations())
    lr = config.optimizer.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"optimizer.learning_rate must be a finite number >= 0, got {lr!r}")
    for key, value in config.optimizer.items():  # momentum, weight decay, multipliers, ...
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"optimizer.{key} must be a finite number, got {value!r}")
    for key in ("metrics", "train_metrics"):
        if key in config.eval:
            registry.check_names(config.eval[key])
    _check_model(config)


def _check_model(config: ml_collections.ConfigDict) -> None:
    """Build the network and trace its init (nothing is computed): bad ``model.kwargs``
    fail here, before the data set is read. The class count does not matter."""
    from camjax.checkpoints.network import NetworkSpec

    spec = NetworkSpec.from_config(config, 2)
    try:
        spec.param_shapes()
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"model {config.model.name!r} rejects model.kwargs "
            f"{dict(config.model.kwargs)}: {_first_line(e)}"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _normalizations() -> tuple[str, ...]:
    # The numpy table, not camjax.data.preprocess's: validating a config must not import
    # TensorFlow (slow, and its start-up lines would precede a one-line config error).
    from camjax.files.images import NORMALIZATIONS

    return tuple(NORMALIZATIONS)
