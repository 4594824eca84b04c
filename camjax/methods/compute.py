"""``compute_maps``: raw maps of any registered method on any Linen model and layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from camjax.methods import smoothing as smoothing_lib
from camjax.methods.combine import combine
from camjax.methods.layer import Cut, cut
from camjax.methods.registry import Method, get
from camjax.methods.smoothing import TTA, SmoothGrad
from camjax.methods.targets import as_target, check_class_ids, class_ids_of, logits_of


def _apply_kwargs(model: Any, apply_kwargs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    from camjax.models.head import CAMNet

    if apply_kwargs is None:
        return {"train": False} if isinstance(model, CAMNet) else {}
    return dict(apply_kwargs)


def output_shape(model: Any, variables: Any, images: jax.Array, apply_kwargs=None) -> Any:
    """The model's output shapes on ``images`` (no compute); a ``ValueError`` naming the
    problem when the variables do not fit the model."""
    kw = _apply_kwargs(model, apply_kwargs)
    try:
        return jax.eval_shape(lambda x: model.apply(variables, x, **kw), images)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"the variables do not fit this model: {type(e).__name__}: {e}") from e
    except Exception as e:  # flax's scope errors (missing params, wrong shapes)
        if type(e).__module__.startswith("flax"):
            raise ValueError(f"the variables do not fit this model: {e}") from e
        raise


def run(method: Method, c: Cut, target: Any, eigen: bool = False, **options: Any) -> jax.Array:
    """One method on one cut: the combine step of its weights, or its own maps."""
    if method.maps is not None:
        return method.maps(c, target, **options)
    return combine(c.features, method.weights(c, target, **options), method.relu, eigen)


def compute_maps(
    method: str,
    model: Any,
    variables: Any,
    images: jax.Array,
    targets: Any,
    *,
    layer: str | None = None,
    classifier: str | None = None,
    reshape: bool | tuple[int, int] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    eigen: bool = False,
    tta: TTA | None = None,
    smoothgrad: SmoothGrad | None = None,
    **options: Any,
) -> jax.Array:
    """Raw (un-normalised) maps ``[B, N, h, w]`` of ``method`` for ``targets``.

    Args:
      method: a key of :data:`camjax.methods.METHODS`.
      model, variables: any Linen module and its variables, called as
        ``model.apply(variables, images, **apply_kwargs)``.
      images: ``[B, H, W, C]``, normalised for the model.
      targets: class ids ``[B, N]`` (each image its own; short for
        :class:`~camjax.methods.targets.ClassLogit`) or a target (``output -> [B, N]``).
      layer, classifier, reshape, apply_kwargs: where the map lives
        (:func:`camjax.methods.layer.cut`); ``layer`` is ignored by ``backprop``.
      eigen: eigen smoothing in the combine step.
      tta, smoothgrad: smoothing specs (:mod:`camjax.methods.smoothing`).
      options: the method's own keywords (``chunk_size`` for Score-CAM).

    Maps are at the layer's resolution (the input's for ``backprop``), ReLU'd where the
    method's paper has a ReLU. Pure and jittable (``model`` and the keywords static).
    """
    m = get(method)
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {tuple(images.shape)}")
    kw = _apply_kwargs(model, apply_kwargs)
    target = as_target(targets, images.shape[0])
    ids = class_ids_of(target)
    if ids is not None:
        logits = logits_of(output_shape(model, variables, images, kw))
        check_class_ids(ids, images.shape[0], logits.shape[-1])
    fn = map_fn(
        m,
        model,
        variables,
        target,
        layer=layer,
        classifier=classifier,
        reshape=reshape,
        apply_kwargs=kw,
        eigen=eigen,
        tta=tta,
        smoothgrad=smoothgrad,
        options=options,
    )
    return fn(images)


def map_fn(
    m: Method,
    model: Any,
    variables: Any,
    target: Any,
    *,
    layer: str | None,
    classifier: str | None,
    reshape: Any,
    apply_kwargs: Mapping[str, Any],
    eigen: bool = False,
    tta: TTA | None = None,
    smoothgrad: SmoothGrad | None = None,
    options: Mapping[str, Any] | None = None,
    first_cut: Cut | None = None,
):
    """``images -> maps`` for one method and target, smoothing included. ``first_cut``,
    a cut already made on the very images the function will get, is reused when no
    smoothing re-runs the model on other images."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        raise TypeError(f"method {m.name!r} takes no option(s) {unknown}; it takes {m.options}")
    if smoothgrad is not None and not m.gradient:
        raise ValueError(f"SmoothGrad averages gradients; {m.name!r} uses none")
    if eigen and m.maps is not None:
        raise ValueError(f"eigen smoothing needs layer features; {m.name!r} reads none")

    def single(x: jax.Array) -> jax.Array:
        if first_cut is not None and x is first_cut.images:
            c = first_cut
        elif m.uses_layer:
            c = cut(
                model,
                variables,
                x,
                layer,
                classifier=classifier,
                reshape=reshape,
                apply_kwargs=apply_kwargs,
            )
        else:
            c = forward_only(model, variables, x, apply_kwargs)
        return run(m, c, target, eigen, **options)

    fn = single
    if smoothgrad is not None:
        fn = smoothing_lib.smoothgrad(fn, smoothgrad)
    if tta is not None:
        fn = smoothing_lib.tta(fn, tta)
    return fn


def forward_only(model: Any, variables: Any, images: jax.Array, apply_kwargs) -> Cut:
    """A cut with no layer (for methods that read none, e.g. ``backprop``)."""

    def forward(v: jax.Array) -> Any:
        return model.apply(variables, v, **dict(apply_kwargs))

    return Cut(images, forward(images), None, None, forward, None, None)


__all__ = ["compute_maps", "forward_only", "map_fn", "output_shape", "run"]
