"""A Linen model cut at one layer: the map ``A`` a CAM method reads, and the rest of the net.

Works on any unmodified ``flax.linen`` model: the layer's output is read, and later
replaced, through Flax's own method interception (:func:`flax.linen.intercept_methods`)
on that submodule's ``__call__``, so the model's code needs no hook. For a layer path
``"backbone/layer4_2"`` (submodule names joined by ``/``, as in the params tree):

- ``features`` is that submodule's output in one forward pass, ``[B, h, w, K]``
  (or tokens ``[B, T, K]`` turned into a map by ``reshape``);
- ``head(a)`` runs the model again with that output replaced by ``a``: the model's
  output as a function of ``A``, which ``jax.vjp`` differentiates. Under ``jit`` the part
  of the network before the layer is dead code in ``head`` and XLA removes it.

camjax's own :class:`~camjax.models.CAMNet` has the shortcut ``layer="head"`` (the map
its global pooling reads, after the head's convs and ReLU: not a submodule's output)
and ``"backbone"`` is an ordinary path there. The model's output may be an array or a
tuple/dict whose logits :func:`camjax.methods.targets.logits_of` finds. The other model
kinds are cut into the same :class:`Cut` by their own modules, and
:func:`camjax.methods.cuts.cut` picks the one for a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from camjax.methods.calling import call_model
from camjax.models import classifier as camnet_classifier
from camjax.models.head import POOLS, CAMNet

_HIGHEST = jax.lax.Precision.HIGHEST


class Cut(NamedTuple):
    """A network cut at the map ``A``: ``output == head(features)`` (up to rounding)."""

    images: jax.Array  # [B, H, W, C] the model's input
    output: Any  # the model's output on images
    features: jax.Array  # [B, h, w, K] float32, the map A
    head: Callable[[jax.Array], Any]  # A -> model output
    forward: Callable[[jax.Array], Any]  # images -> model output
    classifier: Callable[[], jax.Array]  # -> the dense kernel [K, C] after A (plain CAM)
    layer: str
    # -> the dense's bias [C] (None: unknown), for the check of plain CAM's identity
    bias: Callable[[], jax.Array] | None = None


def parse_path(layer: str) -> tuple[str, ...]:
    """``"backbone/layer4_2"`` -> ``("backbone", "layer4_2")``."""
    if not isinstance(layer, str) or not layer.strip("/"):
        raise ValueError(f"layer must be a submodule path such as 'backbone/layer4', got {layer!r}")
    return tuple(p for p in layer.split("/") if p)


def _apply_fn(model: Any, variables: Any, apply_kwargs: Mapping[str, Any]):
    def forward(x: jax.Array) -> Any:
        return call_model(model, variables, x, apply_kwargs)

    return forward


def _is_camnet_head(model: Any, layer: str) -> bool:
    return isinstance(model, CAMNet) and layer == "head"


def _camnet_head_cut(model, variables, images, forward) -> Cut:
    logits, features = forward(images)
    pool = POOLS[model.head.pool]

    def kernel() -> jax.Array:
        return camnet_classifier(variables)[0].astype(jnp.float32)

    k, bias = (t.astype(jnp.float32) for t in camnet_classifier(variables))

    def head(a: jax.Array) -> Any:
        return jnp.dot(pool(a), k, precision=_HIGHEST) + bias, a

    features = features.astype(jnp.float32)
    output = (logits.astype(jnp.float32), features)
    # The identity mean(M) + b = S is a GAP network's; a GMP head has none to check.
    has_identity = model.head.pool == "avg"
    identity_bias = (lambda: bias) if has_identity else None
    return Cut(images, output, features, head, forward, kernel, "head", identity_bias)


class LayerCall(NamedTuple):
    """A submodule's call seen in a forward pass (for error messages and plain CAM's
    classifier search)."""

    path: tuple[str, ...]
    kind: str  # the module's class name
    shape: tuple[int, ...] | None  # output shape when the output is one array


def describe_calls(calls: list[LayerCall], rank: tuple[int, ...] = (3, 4), sep: str = "/") -> str:
    """The calls with a map- or token-shaped output, for an error naming the choices."""
    seen = [c for c in calls if c.path and c.shape is not None and len(c.shape) in rank]
    names = [f"{sep.join(str(p) for p in c.path)} {list(c.shape)}" for c in seen]
    if len(names) > 12:
        names = names[:4] + ["..."] + names[-8:]
    return "; ".join(names) if names else "(none)"


def _token_geometry(shape: tuple[int, ...], reshape: Any, layer: str) -> tuple[int, int, int]:
    """``(prefix tokens, h, w)`` for a ``[B, T, K]`` token output."""
    t = shape[1]
    if reshape is True:
        for prefix in (0, 1):
            side = int(round((t - prefix) ** 0.5))
            if side * side == t - prefix and side > 0:
                return prefix, side, side
        raise ValueError(
            f"layer {layer!r} has {t} tokens, neither h*h nor 1 + h*h: pass reshape=(h, w)"
        )
    h, w = (int(s) for s in reshape)
    if h < 1 or w < 1 or h * w > t:
        raise ValueError(f"reshape={reshape!r} does not fit layer {layer!r}'s {t} tokens")
    return t - h * w, h, w


def cut_linen(
    model: Any,
    variables: Any,
    images: jax.Array,
    layer: str | None = None,
    *,
    classifier: str | None = None,
    reshape: bool | tuple[int, int] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> Cut:
    """Run the Linen ``model`` once and return it cut at ``layer`` (see the module
    docstring); :func:`camjax.methods.cut` takes any model kind.

    Args:
      model: any Linen module; called as ``model.apply(variables, images, **apply_kwargs)``.
      variables: its variables.
      images: its input ``[B, H, W, C]``.
      layer: a submodule path whose ``__call__`` returns ``[B, h, w, K]`` (or ``[B, T, K]``
        tokens with ``reshape``); for a camjax ``CAMNet`` the default is ``"head"``.
      classifier: path of the ``nn.Dense`` that scores the pooled map (plain CAM only);
        by default the last ``nn.Dense`` called after the layer.
      reshape: tokens to a map: ``True`` infers a square grid after 0 or 1 leading
        (class) tokens, ``(h, w)`` takes the last ``h*w`` tokens. Leading tokens are held
        at their forward value in ``head``.
      apply_kwargs: keywords for ``apply``; default ``{"train": False}`` for a ``CAMNet``,
        none otherwise (pass e.g. ``{"train": False}`` for a model with batch norm).
    """
    if apply_kwargs is None:
        apply_kwargs = {"train": False} if isinstance(model, CAMNet) else {}
    forward = _apply_fn(model, variables, apply_kwargs)
    if layer is None:
        if not isinstance(model, CAMNet):
            raise ValueError(
                "layer is required for a model that is not a camjax CAMNet: name the "
                "submodule whose output [B, h, w, K] the map is made from, e.g. "
                "layer='backbone/layer4'"
            )
        layer = "head"
    if _is_camnet_head(model, layer):
        if reshape is not None:
            raise ValueError("reshape does not apply to CAMNet's layer='head' (already a map)")
        return _camnet_head_cut(model, variables, images, forward)
    path = parse_path(layer)

    calls: list[LayerCall] = []
    captured: list[Any] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            shape = tuple(out.shape) if isinstance(out, jax.Array) else None
            module = context.module
            calls.append(LayerCall(tuple(module.path), type(module).__name__, shape))
            if tuple(context.module.path) == path:
                captured.append(out)
        return out

    with nn.intercept_methods(record):
        output = forward(images)
    if not captured:
        raise ValueError(
            f"layer {layer!r} is not a submodule called in the forward pass; submodules "
            f"with a [B, h, w, K] or [B, T, K] output: {describe_calls(calls)}"
        )
    if len(captured) > 1:
        raise ValueError(
            f"layer {layer!r} is called {len(captured)} times in one forward pass (a shared "
            "module); CAM needs a layer whose output is used once"
        )
    features, restore = as_map(captured[0], images.shape[0], layer, reshape)

    def head(a: jax.Array) -> Any:
        def replace(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and tuple(context.module.path) == path:
                return restore(a)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(replace):
            return forward(images)

    position = max(i for i, c in enumerate(calls) if c.path == path)
    after = calls[position + 1 :]
    channels = features.shape[-1]

    def dense() -> Mapping[str, Any]:
        return _dense_params(variables, after, classifier, layer, channels)

    def kernel() -> jax.Array:
        return jnp.asarray(dense()["kernel"], jnp.float32)

    def bias() -> jax.Array:
        b = dense().get("bias")
        return jnp.zeros((kernel().shape[1],), jnp.float32) if b is None else b

    return Cut(images, output, features, head, forward, kernel, layer, bias)


def as_map(raw: Any, batch: int, layer: str, reshape: Any):
    """The layer's output as a map: ``(features [B, h, w, K] float32, restore)`` where
    ``restore(a)`` puts a map back in the layer's output form (tokens: the leading class
    tokens held at their forward value)."""
    if not isinstance(raw, jax.Array):
        raise ValueError(
            f"layer {layer!r} returns {type(raw).__name__}, not one array [B, h, w, K]; "
            "name a submodule that returns the map itself"
        )
    b = batch
    if raw.shape[:1] != (b,):
        raise ValueError(f"layer {layer!r} output {list(raw.shape)} has no batch axis of {b}")
    if reshape is not None and reshape is not False:
        if raw.ndim != 3:
            raise ValueError(
                f"reshape turns tokens [B, T, K] into maps; layer {layer!r} gives {list(raw.shape)}"
            )
        prefix, h, w = _token_geometry(raw.shape, reshape, layer)
        lead = raw[:, :prefix]
        features = raw[:, prefix:].reshape(b, h, w, raw.shape[-1])

        def restore(a: jax.Array) -> jax.Array:
            tokens = a.reshape(b, h * w, a.shape[-1]).astype(raw.dtype)
            return jnp.concatenate([lead, tokens], axis=1)

    else:
        if raw.ndim != 4:
            hint = " (tokens: pass reshape=True)" if raw.ndim == 3 else ""
            raise ValueError(
                f"layer {layer!r} output has shape {list(raw.shape)}, not a map [B, h, w, K]{hint}"
            )
        features = raw

        def restore(a: jax.Array) -> jax.Array:
            return a.astype(raw.dtype)

    return features.astype(jnp.float32), restore


def pick_classifier(after: list[LayerCall], name: Any, layer: str, dense_kind: str, sep: str):
    """The path of the dense layer plain CAM reads: ``name`` parsed, or the last module of
    kind ``dense_kind`` called after the layer."""
    if name is not None:
        return None
    dense = [c for c in after if c.kind == dense_kind]
    if not dense:
        shown = {"Dense": "nn.Dense", "Linear": "nnx.Linear"}.get(dense_kind, dense_kind)
        raise ValueError(
            f"plain CAM needs the {shown} that scores the pooled map, and no {shown} is "
            f"called after layer {layer!r}: pass classifier='path{sep}of{sep}dense', or "
            "use a gradient method (gradcam, ...)"
        )
    return dense[-1].path


def check_kernel(kernel: Any, path: str, layer: str, k: int) -> None:
    """A ``[K, C]`` kernel on the layer's ``K`` channels, else a ``ValueError``."""
    if kernel is None or kernel.ndim != 2 or kernel.shape[0] != k:
        shape = None if kernel is None else list(kernel.shape)
        raise ValueError(
            f"classifier {path!r} has kernel {shape}, but CAM needs a dense kernel [K, C] "
            f"on layer {layer!r}'s K = {k} pooled channels; name the dense layer that "
            "scores the pooled map with classifier=, or use a gradient method"
        )


def _dense_params(variables, after: list[LayerCall], name: str | None, layer: str, k: int):
    path = pick_classifier(after, name, layer, "Dense", "/") or parse_path(name)
    node = variables.get("params", {}) if isinstance(variables, Mapping) else {}
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            raise ValueError(f"classifier {'/'.join(path)!r} has no params in variables")
    kernel = node.get("kernel") if isinstance(node, Mapping) else None
    check_kernel(kernel, "/".join(path), layer, k)
    return node


__all__ = [
    "Cut",
    "LayerCall",
    "as_map",
    "check_kernel",
    "cut_linen",
    "describe_calls",
    "parse_path",
    "pick_classifier",
]
