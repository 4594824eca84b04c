"""CAM networks: a registry of backbones, each ending in the CAM head.

``create(name, num_classes, **kw)`` returns a Flax module whose
``apply(variables, images, train=False)`` gives ``(logits, features)``.

A backbone is one file with a factory plus one :func:`register` call below. The factory's
protocol, checked by :func:`register` and :func:`create` (docs/CONTRACTS.md, "models"):
``factory(num_classes, *, dtype, **options) -> CAMNet``; a network with BatchNorm also
takes ``bn_axis_name`` (training passes it when ``model.sync_batch_norm`` is set). The
opt-in CPU tuning (``camjax.cpu``) reaches the convolutions built from a module's
``conv`` field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from camjax.models.alexnet import alexnet_gap, alexnet_star_gap
from camjax.models.efficientnet import efficientnet_lite0_gap
from camjax.models.googlenet import googlenet_gap, googlenet_gmp
from camjax.models.head import CAMHead, CAMNet
from camjax.models.resnet import resnet50_gap
from camjax.models.tiny import tiny_gap
from camjax.models.vgg import vgg16_gap

# name -> factory(num_classes, *, dtype, **kw) -> CAMNet; filled by register() below.
REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a backbone under ``name`` after checking its factory's signature: it must take
    ``num_classes`` first and the keyword ``dtype`` (the compute dtype training sets)."""
    if name in REGISTRY:
        raise ValueError(f"a backbone named {name!r} is already registered")
    params = inspect.signature(factory).parameters
    first = next(iter(params.values()), None)
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        raise TypeError(f"backbone {name!r}: the factory must take num_classes first")
    if "dtype" not in params and not _takes_any_keyword(params):
        raise TypeError(f"backbone {name!r}: the factory must take the keyword dtype=")
    REGISTRY[name] = factory


def takes_bn_axis_name(name: str) -> bool:
    """Whether backbone ``name`` takes ``bn_axis_name`` (may have BatchNorm to synchronise)."""
    return "bn_axis_name" in inspect.signature(REGISTRY[name]).parameters


def _takes_any_keyword(params) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in params.values())


register("tiny_gap", tiny_gap)
register("alexnet_gap", alexnet_gap)
register("alexnet_star_gap", alexnet_star_gap)
register("vgg16_gap", vgg16_gap)
register("googlenet_gap", googlenet_gap)
register("googlenet_gmp", googlenet_gmp)
register("resnet50_gap", resnet50_gap)
register("efficientnet_lite0_gap", efficientnet_lite0_gap)


def create(name: str, num_classes: int, **kw: Any) -> nn.Module:
    """Build the CAM network ``name`` with ``num_classes`` outputs."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    model = REGISTRY[name](num_classes, **kw)
    if not isinstance(model, CAMNet):
        raise TypeError(
            f"backbone {name!r} built a {type(model).__name__}; a camjax backbone factory "
            "returns camjax.models.CAMNet(backbone=..., head=CAMHead(...))"
        )
    return model


def classifier(variables: Any) -> tuple[jax.Array, jax.Array]:
    """The head's dense layer: ``(kernel [K, C], bias [C])``, the weights CAM uses."""
    try:
        dense = variables["params"]["head"]["classifier"]
    except (KeyError, TypeError) as e:
        raise ValueError("variables hold no CAM head (params/head/classifier)") from e
    return dense["kernel"], dense["bias"]


__all__ = [
    "REGISTRY",
    "CAMHead",
    "CAMNet",
    "classifier",
    "create",
    "takes_bn_axis_name",
    "register",
]
