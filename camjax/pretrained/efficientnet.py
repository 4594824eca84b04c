"""Map an ``efficientnet_pytorch``-layout EfficientNet-Lite state dict onto the Flax model.

The Flax modules carry the state dict's names (see :mod:`camjax.models.efficientnet`), so
each Flax leaf has exactly one source tensor:

- ``params/backbone/<a>/<b>/kernel`` <- ``<a>.<b>.weight`` with ``_blocks_N`` spelled
  ``_blocks.N``; conv kernels OIHW -> HWIO (depthwise ``[C, 1, k, k]`` -> ``[k, k, 1, C]``).
- BatchNorm ``scale``/``bias`` <- ``weight``/``bias``; ``batch_stats`` ``mean``/``var`` <-
  ``running_mean``/``running_var``. ``num_batches_tracked`` has no Flax counterpart (Flax
  BN uses a fixed momentum) and is ignored.
- ``params/head/classifier/{kernel,bias}`` <- ``_fc.weight`` transposed, ``_fc.bias``.

Missing, unexpected or mis-shaped tensors raise one error that lists all of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from flax.core import unfreeze

from camjax.pretrained.mapping import MappingError, raise_if_unfit

CLASSIFIER = ("params", "head", "classifier")
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def torch_key(path: tuple[str, ...]) -> str:
    """The ``efficientnet_pytorch`` state-dict key of a flattened Flax variable path."""
    collection, *modules, leaf = path
    if tuple(path[:3]) == CLASSIFIER:
        return f"_fc.{_LEAF_NAMES[(collection, leaf)]}"
    if not modules or modules[0] != "backbone" or (collection, leaf) not in _LEAF_NAMES:
        raise MappingError(f"variable {'/'.join(path)} has no EfficientNet counterpart")
    dotted = ".".join(re.sub(r"^_blocks_(\d+)$", r"_blocks.\1", m) for m in modules[1:])
    return f"{dotted}.{_LEAF_NAMES[(collection, leaf)]}"


def _convert(key: str, value: np.ndarray) -> np.ndarray:
    """torch layout -> Flax layout: OIHW -> HWIO for conv weights, ``W.T`` for ``_fc``."""
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if key == "_fc.weight":
        return value.T
    return value


def map_efficientnet(
    state_dict: Mapping[str, np.ndarray],
    variables: Any,
    *,
    load_classifier: bool | None = None,
) -> dict[str, Any]:
    """Return ``variables`` with every leaf replaced by its tensor from ``state_dict``.

    ``load_classifier``: ``None`` loads ``_fc`` when its shape fits the head (1000
    classes) and otherwise keeps the head as given (fine-tuning on other classes, as
    ``efficientnet_pytorch``'s ``load_fc=(num_classes == 1000)``); ``True`` requires it to
    fit; ``False`` keeps the given head. Dtypes follow ``variables``.
    """
    flat = traverse_util.flatten_dict(unfreeze(variables))
    state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    fc_keys = {"_fc.weight", "_fc.bias"}
    if load_classifier is None:
        kernel = flat.get(CLASSIFIER + ("kernel",))
        load_classifier = (
            kernel is not None
            and "_fc.weight" in state
            and np.shape(state["_fc.weight"])[::-1] == tuple(kernel.shape)
        )
    missing, wrong_shape, used = [], [], set()
    out = {}
    for path, leaf in flat.items():
        key = torch_key(path)
        if key in fc_keys and not load_classifier:
            out[path] = leaf
            continue
        if key not in state:
            missing.append(key)
            continue
        used.add(key)
        value = _convert(key, np.asarray(state[key]))
        if value.shape != tuple(leaf.shape):
            wrong_shape.append(f"{key}: file {value.shape} vs model {tuple(leaf.shape)}")
            continue
        out[path] = jnp.asarray(value, dtype=leaf.dtype)
    unexpected = sorted(set(state) - used - (set() if load_classifier else fc_keys))
    raise_if_unfit("EfficientNet state dict", missing, unexpected, wrong_shape)
    return traverse_util.unflatten_dict(out)


__all__ = ["MappingError", "map_efficientnet", "torch_key"]
