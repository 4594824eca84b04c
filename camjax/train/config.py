"""Loading and checking ml_collections configs (``configs/*.py``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import ml_collections

# Free-form sub-trees (passed through as keyword arguments): no schema to check.
FREE_FORM = ("model.kwargs",)


def load_config(path: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``path``, with dotted-key ``overrides``.

    The repository root (the folder above ``configs/``) is put on ``sys.path`` so that
    paper configs can ``from configs import default``. Unknown override keys fail.
    """
    path = os.path.abspath(path)
    root = os.path.dirname(os.path.dirname(path))
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "camjax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in (overrides or {}).items():
        _set(config, key, value)
    return config


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if p not in node:
            raise KeyError(f"unknown config key {key!r} (no {p!r})")
        node = node[p]
    if leaf not in node and not _free(key):
        raise KeyError(f"unknown config key {key!r}")
    node[leaf] = value


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE_FORM)


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
