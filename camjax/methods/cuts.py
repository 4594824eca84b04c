"""The cut of any model camjax takes: one function, one branch per model kind.

Every method reads a :class:`~camjax.methods.layer.Cut` (the map ``A``, the rest of the
network as ``head(A)``, the forward pass). Each model kind is cut by its own module:

- a ``flax.linen`` module, at a submodule path: :func:`camjax.methods.layer.cut_linen`;
- a Flax NNX model, split into an :class:`~camjax.methods.nnx_models.NNXGraph` and its
  state, at an attribute path: :func:`camjax.methods.nnx_models.cut_nnx`;
- any JAX model as two functions, :class:`~camjax.methods.functions.Functions`, where
  they meet: :func:`camjax.methods.functions.cut_functions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from camjax.methods.functions import Functions, cut_functions
from camjax.methods.layer import Cut, cut_linen
from camjax.methods.nnx_models import NNXGraph, cut_nnx


def cut(
    model: Any,
    variables: Any,
    images: jax.Array,
    layer: Any = None,
    *,
    classifier: Any = None,
    reshape: bool | tuple[int, int] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> Cut:
    """``model`` run on ``images`` and cut at ``layer`` (by its kind's module, above).

    Args:
      model, variables: a Linen module and its variables; an ``NNXGraph`` and its state
        (:func:`camjax.methods.nnx_models.split`); or a
        :class:`~camjax.methods.functions.Functions` and its params.
      images: the model's input ``[B, H, W, C]``.
      layer: where the map is: a Linen submodule path (``"backbone/layer4"``; default
        ``"head"`` for a camjax ``CAMNet``), an NNX attribute path (``"blocks.11"``);
        none for two functions (the split is the layer).
      classifier: the dense layer plain CAM reads: a path (Linen, NNX; default the last
        dense called after the layer), or for two functions ``params -> kernel`` (or
        ``(kernel, bias)``) or ``"head"``.
      reshape: tokens ``[B, T, K]`` to a map: ``True`` (square grid after 0 or 1 leading
        tokens) or ``(h, w)`` (the last ``h*w`` tokens).
      apply_kwargs: keywords of the model's call (Linen, NNX).
    """
    if isinstance(model, Functions):
        kind = cut_functions
    elif isinstance(model, NNXGraph):
        kind = cut_nnx
    else:
        kind = cut_linen
    return kind(
        model,
        variables,
        images,
        layer,
        classifier=classifier,
        reshape=reshape,
        apply_kwargs=apply_kwargs,
    )


__all__ = ["cut"]
