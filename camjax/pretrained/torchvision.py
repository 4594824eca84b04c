"""Map torchvision ImageNet state dicts onto the paper's CAM backbones.

The Flax backbones (:mod:`camjax.models.vgg`, ``alexnet``, ``googlenet``, ``resnet``) carry
torchvision's module names, with ``.N`` spelled ``_N`` (Flax names cannot hold dots), so
each Flax leaf under ``backbone`` has exactly one source tensor:

- ``params/backbone/<path>/kernel`` <- ``<dotted path>.weight``, conv OIHW -> HWIO;
- BatchNorm ``scale``/``bias`` <- ``weight``/``bias``; ``batch_stats/backbone/<path>``
  ``mean``/``var`` <- ``running_mean``/``running_var``;
- e.g. ``layer1.0.downsample.1.running_var`` -> ``batch_stats/backbone/layer1_0/
  downsample_1/var``; ``inception3a.branch2.1.conv.weight`` -> ``params/backbone/
  inception3a/branch2_1/conv/kernel``.

The CAM head (``params/head``) keeps the values given in ``variables``: the paper
fine-tunes the pretrained trunk with a freshly initialised head (Zhou et al., CVPR 2016,
Sec. 3.1). torchvision keys with no counterpart in the truncated trunks are ignored by
name, listed per layout in :data:`IGNORED_PREFIXES` (classifiers, layers after the cut,
GoogLeNet's auxiliary heads); ``*.num_batches_tracked`` is ignored everywhere (Flax BN
uses a fixed momentum). Missing, unexpected or mis-shaped tensors raise one
:class:`MappingError` (a ``ValueError``) listing all of them.

timm files (``.safetensors`` or ``.pth``) map through the same functions: timm's
ResNet-50 uses torchvision's names throughout (``conv1``, ``bn1``, ``layer1``-``layer4``
with ``downsample.0/1``, ``fc``); timm's VGG16 keeps ``features.N`` but names the
classifier ``pre_logits.fc1`` / ``pre_logits.fc2`` (fc6/fc7 as 7x7 and 1x1 convolutions)
and ``head.fc`` (fc8) instead of ``classifier.0/3/6`` (timm 1.0.31, ``models/vgg.py``
``_filter_fn`` and ``models/resnet.py`` ``make_blocks``). :func:`source_naming` tells the
two apart by those classifier names; :data:`TIMM_IGNORED_PREFIXES` lists what is ignored.

Input scaling: torchvision's VGG16, AlexNet and ResNet-50 weights expect ImageNet
mean/std normalisation; its GoogLeNet weights expect ``transform_input=True`` as well
(create the model with ``transform_input=True`` when feeding ImageNet-normalised images).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from flax.core import unfreeze

from camjax.pretrained.mapping import MappingError, raise_if_unfit

# Flax (collection, leaf) -> torch leaf.
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}

# torchvision state-dict keys that the truncated trunks do not use, by layout.
IGNORED_PREFIXES: dict[str, tuple[str, ...]] = {
    # classifier.{0,3,6}.{weight,bias}: fc6, fc7, fc8 (pool5 and after are cut).
    "vgg16": ("classifier.",),
    # classifier.{1,4,6}.{weight,bias}: fc6, fc7, fc8.
    "alexnet": ("classifier.",),
    # After inception4e: inception5a, inception5b, fc; aux1/aux2 heads (present in the
    # ImageNet file, which torchvision builds with aux_logits=True).
    "googlenet": ("inception5a.", "inception5b.", "fc.", "aux1.", "aux2."),
    # fc.{weight,bias}: the 1000-way classifier.
    "resnet50": ("fc.",),
}
# timm state-dict keys that the truncated trunks do not use, where timm's names differ.
TIMM_IGNORED_PREFIXES: dict[str, tuple[str, ...]] = {
    # pre_logits.fc1 / pre_logits.fc2 (fc6, fc7 as convolutions) and head.fc (fc8).
    "vgg16": ("pre_logits.", "head."),
}
_IGNORED_SUFFIX = ".num_batches_tracked"


def source_naming(layout: str, state_dict: Mapping[str, Any]) -> str:
    """``"timm"`` if ``state_dict`` has a key only timm's ``layout`` uses, else
    ``"torchvision"`` (also for timm's ResNet-50, whose names are torchvision's)."""
    timm_only = TIMM_IGNORED_PREFIXES.get(layout, ())
    timm = bool(timm_only) and any(k.startswith(timm_only) for k in state_dict)
    return "timm" if timm else "torchvision"


def torch_key(path: tuple[str, ...]) -> str:
    """torchvision key of a flattened Flax path ``(collection, "backbone", *modules, leaf)``."""
    collection, _, *modules, leaf = path
    dotted = ".".join(re.sub(r"^(.+)_(\d+)$", r"\1.\2", m) for m in modules)
    return f"{dotted}.{_LEAF_NAMES[(collection, leaf)]}"


def _convert(value: np.ndarray) -> np.ndarray:
    """torch layout -> Flax layout: conv OIHW -> HWIO; vectors unchanged."""
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def map_torchvision(
    layout: str, state_dict: Mapping[str, np.ndarray], variables: Any
) -> dict[str, Any]:
    """``variables`` with every ``backbone`` leaf replaced by its torchvision tensor.

    ``layout`` is a key of :data:`IGNORED_PREFIXES`; timm's names are recognised
    (:func:`source_naming`). Leaves outside ``backbone`` (the CAM head) are returned as
    given. Dtypes follow ``variables``.
    """
    naming = source_naming(layout, state_dict)
    ignored = (TIMM_IGNORED_PREFIXES if naming == "timm" else IGNORED_PREFIXES)[layout]
    flat = traverse_util.flatten_dict(unfreeze(variables))
    state = {
        k: v
        for k, v in state_dict.items()
        if not k.endswith(_IGNORED_SUFFIX) and not k.startswith(ignored)
    }
    missing, wrong_shape, used, out = [], [], set(), {}
    for path, leaf in flat.items():
        if len(path) < 3 or path[1] != "backbone":
            out[path] = leaf  # the CAM head stays as initialised
            continue
        if (path[0], path[-1]) not in _LEAF_NAMES:
            raise MappingError(f"variable {'/'.join(path)} has no torchvision counterpart")
        key = torch_key(path)
        if key not in state:
            missing.append(key)
            continue
        used.add(key)
        value = _convert(np.asarray(state[key]))
        if value.shape != tuple(leaf.shape):
            wrong_shape.append(f"{key}: file {value.shape} vs model {tuple(leaf.shape)}")
            continue
        out[path] = jnp.asarray(value, dtype=leaf.dtype)
    unexpected = sorted(set(state) - used)
    raise_if_unfit(f"{naming} {layout} state dict", missing, unexpected, wrong_shape)
    return traverse_util.unflatten_dict(out)


def _mapper(layout: str) -> Callable[[Mapping[str, np.ndarray], Any], dict[str, Any]]:
    def fn(state_dict: Mapping[str, np.ndarray], variables: Any) -> dict[str, Any]:
        return map_torchvision(layout, state_dict, variables)

    fn.__name__ = f"map_{layout}"
    fn.__doc__ = f"Map a torchvision ``{layout}`` state dict onto the backbone of ``variables``."
    return fn


# model name -> fn(state_dict, variables) -> variables (registered in camjax.pretrained).
TORCHVISION_MAPPINGS: dict[str, Callable[[Mapping[str, np.ndarray], Any], dict[str, Any]]] = {
    "vgg16_gap": _mapper("vgg16"),
    "alexnet_gap": _mapper("alexnet"),
    "alexnet_star_gap": _mapper("alexnet"),
    "googlenet_gap": _mapper("googlenet"),
    "googlenet_gmp": _mapper("googlenet"),
    "resnet50_gap": _mapper("resnet50"),
}

__all__ = [
    "IGNORED_PREFIXES",
    "TIMM_IGNORED_PREFIXES",
    "TORCHVISION_MAPPINGS",
    "map_torchvision",
    "source_naming",
    "torch_key",
]
