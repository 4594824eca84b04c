"""Flax NNX modules, cut at a layer named by its attribute path.

An ``nnx.Module`` is split once per call (``nnx.split``: a hashable graph definition and
a state pytree); every forward pass camjax makes is a pure function of that state: it
``nnx.merge``s a fresh copy, sets the copy to inference mode (``copy.eval()``: batch norm
uses its running statistics, dropout is off), and calls it. To read a layer's output, or
to replace it by ``a`` and differentiate the rest of the network, camjax swaps that
submodule on the *merged copy* for a small wrapper that calls it and records (or
replaces) its output; the user's model, its class and its state are never touched.

Layer paths are attribute paths: ``"backbone.layer4"``, ``"blocks.11"`` (an
``nnx.List``, a list or a dict entry), ``"blocks[11].attn"``; ``/`` works as a separator
too. Plain CAM reads the ``nnx.Linear`` that scores the pooled map (the last one called
after the layer, or ``classifier="head.fc"``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from camjax.methods.calling import explain
from camjax.methods.layer import (
    Cut,
    LayerCall,
    as_map,
    check_kernel,
    describe_calls,
    pick_classifier,
)

Path = tuple[str | int, ...]


def is_nnx(model: Any) -> bool:
    """Whether ``model`` is an ``nnx.Module`` (without importing ``flax.nnx`` when the
    process has not: then no object can be one)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


@dataclasses.dataclass(frozen=True, eq=False)
class NNXGraph:
    """An NNX model's graph definition with Linen's calling convention:
    ``apply(state, images, **kw)`` runs a merged inference-mode copy. Equal graph
    definitions are equal keys of the compile cache, also when a module keeps an
    unhashable static attribute (a dict config): then every such graph hashes alike and
    equality decides."""

    graphdef: Any

    def __hash__(self) -> int:
        try:
            return hash(self.graphdef)
        except TypeError:
            return hash((type(self.graphdef).__name__, "unhashable attributes"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NNXGraph) and bool(self.graphdef == other.graphdef)

    def apply(self, state: Any, images: jax.Array, **kwargs: Any) -> Any:
        return merged(self, state)(images, **kwargs)


def split(model: Any) -> tuple[NNXGraph, Any]:
    """``(NNXGraph, state)`` of an ``nnx.Module`` (``nnx.split``)."""
    from flax import nnx

    graphdef, state = nnx.split(model)
    return NNXGraph(graphdef), state


def merged(graph: NNXGraph, state: Any) -> Any:
    """A fresh copy of the model in inference mode (``eval()`` on the copy only)."""
    from flax import nnx

    m = nnx.merge(graph.graphdef, state)
    m.eval()
    return m


def parse_attr_path(layer: Any) -> Path:
    """``"blocks.11.attn"``, ``"blocks[11]/attn"`` -> ``("blocks", 11, "attn")``."""
    if not isinstance(layer, str) or not layer.strip("./[]"):
        raise ValueError(
            f"layer must be an attribute path of the NNX model such as 'backbone.layer4' "
            f"or 'blocks.11', got {layer!r}"
        )
    parts = [p for p in re.split(r"[./\[\]]", layer) if p]
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _child(obj: Any, key: str | int) -> Any:
    from flax import nnx

    if isinstance(obj, list | tuple | nnx.List):
        return obj[int(key)]
    if isinstance(obj, Mapping) or isinstance(obj, nnx.Dict):
        return obj[key] if key in obj else obj[str(key)]
    return getattr(obj, str(key))


def _set_child(parent: Any, key: str | int, value: Any) -> bool:
    """Put ``value`` at ``parent[key]`` / ``parent.key`` on the merged copy; ``False``
    where it cannot go (a tuple)."""
    from flax import nnx

    if isinstance(parent, list):
        parent[int(key)] = value
    elif isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, nnx.Module):
        # Bypass nnx's attribute bookkeeping: the copy is called once and never split.
        object.__setattr__(parent, str(key), value)
    else:
        return False
    return True


class _Tap:
    """Stands in for a submodule on the merged copy: ``fn(module, args, kwargs)`` runs
    instead of its ``__call__``; any other attribute is the module's."""

    __slots__ = ("_fn", "_module")

    def __init__(self, module: Any, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(self._module, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    # A module used as a container (iterated, indexed) keeps working through the tap.
    def __iter__(self) -> Any:
        return iter(self._module)

    def __len__(self) -> int:
        return len(self._module)

    def __getitem__(self, key: Any) -> Any:
        return self._module[key]


def _modules(m: Any) -> list[tuple[Path, Any, Any]]:
    """``(path, module, parent container)`` of every submodule, resolved before any tap."""
    from flax import nnx

    # Containers are iterated, not called: they stay as they are.
    found = [
        (tuple(p), v)
        for p, v in nnx.iter_graph(m)
        if isinstance(v, nnx.Module) and p and not isinstance(v, nnx.List | nnx.Dict)
    ]
    out = []
    for path, module in found:
        parent = m
        for key in path[:-1]:
            parent = _child(parent, key)
        out.append((path, module, parent))
    return out


def _call(m: Any, images: jax.Array, kw: Mapping[str, Any]) -> Any:
    try:
        return m(images, **dict(kw))
    except (NameError, TypeError, ValueError) as e:
        better = explain(e, kw)
        if better is None:
            raise
        raise better from e


def cut_nnx(
    graph: NNXGraph,
    state: Any,
    images: jax.Array,
    layer: Any,
    *,
    classifier: Any = None,
    reshape: Any = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> Cut:
    """:func:`camjax.methods.cut` for an NNX model (see the module docstring)."""
    kw = dict(apply_kwargs or {})
    if layer is None:
        raise ValueError(
            "layer is required for an NNX model: name the submodule whose output "
            "[B, h, w, K] the map is made from by its attribute path, e.g. "
            "layer='backbone.layer4' or layer='blocks.11'"
        )
    path = parse_attr_path(layer)

    def forward(x: jax.Array) -> Any:
        return _call(merged(graph, state), x, kw)

    calls: list[LayerCall] = []
    captured: list[Any] = []
    m = merged(graph, state)
    mods = _modules(m)
    for p, module, parent in mods:

        def record(inner, args, kwargs, p=p):
            out = inner(*args, **kwargs)
            shape = tuple(out.shape) if isinstance(out, jax.Array) else None
            calls.append(LayerCall(p, type(inner).__name__, shape))
            if p == path:
                captured.append(out)
            return out

        _set_child(parent, p[-1], _Tap(module, record))
    output = _call(m, images, kw)
    if not captured:
        known = {p for p, _, _ in mods}
        why = "is not called in the forward pass" if path in known else "is not a submodule"
        raise ValueError(
            f"layer {layer!r} {why}; submodules with a [B, h, w, K] or [B, T, K] output: "
            f"{describe_calls(calls, sep='.')}"
        )
    if len(captured) > 1:
        raise ValueError(
            f"layer {layer!r} is called {len(captured)} times in one forward pass (a shared "
            "module); CAM needs a layer whose output is used once"
        )
    features, restore = as_map(captured[0], images.shape[0], str(layer), reshape)

    def head(a: jax.Array) -> Any:
        copy = merged(graph, state)
        parent = copy
        for key in path[:-1]:
            parent = _child(parent, key)
        target = _child(parent, path[-1])
        if not _set_child(parent, path[-1], _Tap(target, lambda *_: restore(a))):
            raise ValueError(f"layer {layer!r} sits in a tuple, which camjax cannot swap")
        return _call(copy, images, kw)

    position = max(i for i, c in enumerate(calls) if c.path == path)
    after = calls[position + 1 :]
    channels = features.shape[-1]

    def linear() -> Any:
        cpath = pick_classifier(after, classifier, str(layer), "Linear", ".")
        if cpath is None:
            cpath = parse_attr_path(classifier)
        node = merged(graph, state)
        for key in cpath:
            try:
                node = _child(node, key)
            except (AttributeError, KeyError, IndexError) as e:
                name = ".".join(str(k) for k in cpath)
                raise ValueError(f"classifier {name!r} is not a submodule of the model") from e
        kernel = getattr(node, "kernel", None)
        kernel = None if kernel is None else jnp.asarray(kernel[...], jnp.float32)
        check_kernel(kernel, ".".join(str(k) for k in cpath), str(layer), channels)
        bias = getattr(node, "bias", None)
        bias = jnp.zeros(kernel.shape[1:]) if bias is None else jnp.asarray(bias[...])
        return kernel, bias.astype(jnp.float32)

    return Cut(
        images,
        output,
        features,
        head,
        forward,
        lambda: linear()[0],
        str(layer),
        lambda: linear()[1],
    )


__all__ = ["NNXGraph", "cut_nnx", "is_nnx", "merged", "parse_attr_path", "split"]
