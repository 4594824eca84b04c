"""The method registry: one :class:`Method` per CAM method, registered once in its file.

A method is either a *channel weighting* (``weights(cut, target) -> w``; the map is
:func:`camjax.methods.combine.combine` of the layer's features with ``w``, ReLU or not),
or, for a map that is no weighted sum of features (gradient saliency), a ``maps``
function. Adding a method: one file in ``camjax/methods/`` that calls :func:`register`,
and one import line in ``camjax/methods/__init__.py``; evaluation, ``camjax.extract``,
the CLI and the report's row name (``display``) pick it up from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered CAM method; :func:`camjax.methods.compute_maps` ``(name, ...)`` runs it."""

    name: str
    display: str  # the report's row name, e.g. "Grad-CAM++"
    paper: str  # one-line reference
    weights: Callable[..., jax.Array] | None = None  # (cut, target, **options) -> w
    relu: bool = False  # ReLU after the combine step (the paper's definition)
    maps: Callable[..., jax.Array] | None = None  # (cut, target, **options) -> maps
    options: tuple[str, ...] = ()  # extra keywords the method takes
    gradient: bool = False  # uses gradients of the target (SmoothGrad applies)
    uses_layer: bool = True  # reads a layer's features (False: input-resolution maps)

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.maps is None):
            raise ValueError(f"method {self.name!r} needs exactly one of weights= or maps=")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` under ``method.name``; a second method of the same name is an error."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    """The method ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


__all__ = ["METHODS", "Method", "get", "register"]
