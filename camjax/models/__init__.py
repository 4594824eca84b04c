"""CAM networks: a registry of backbones, each ending in the CAM head.

``create(name, num_classes, **kw)`` returns a Flax module whose
``apply(variables, images, train=False)`` gives ``(logits, features)``.
"""

from __future__ import annotations

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

# name -> factory(num_classes, **kw) -> CAMNet. Other backbones register here too.
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "tiny_gap": tiny_gap,
    "alexnet_gap": alexnet_gap,
    "alexnet_star_gap": alexnet_star_gap,
    "vgg16_gap": vgg16_gap,
    "googlenet_gap": googlenet_gap,
    "googlenet_gmp": googlenet_gmp,
    "resnet50_gap": resnet50_gap,
    "efficientnet_lite0_gap": efficientnet_lite0_gap,
}


def create(name: str, num_classes: int, **kw: Any) -> nn.Module:
    """Build the CAM network ``name`` with ``num_classes`` outputs."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return REGISTRY[name](num_classes, **kw)


def classifier(variables: Any) -> tuple[jax.Array, jax.Array]:
    """The head's dense layer: ``(kernel [K, C], bias [C])``, the weights CAM uses."""
    try:
        dense = variables["params"]["head"]["classifier"]
    except (KeyError, TypeError) as e:
        raise ValueError("variables hold no CAM head (params/head/classifier)") from e
    return dense["kernel"], dense["bias"]


__all__ = ["REGISTRY", "CAMHead", "CAMNet", "classifier", "create"]
