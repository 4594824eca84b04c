"""``compute_maps``: raw maps of any registered method on any Linen or NNX model and layer.

A plain call runs one jitted program per model (:mod:`camjax.methods.programs`), so
repeated calls with the same model, variables structure and input shape trace and
compile once; inside the caller's own ``jit``/``vmap`` it is inlined like any function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax.maps import is_concrete
from camjax.methods import checks, programs
from camjax.methods import smoothing as smoothing_lib
from camjax.methods.calling import call_model, check_images
from camjax.methods.combine import combine
from camjax.methods.cuts import cut
from camjax.methods.functions import bind
from camjax.methods.layer import Cut
from camjax.methods.nnx_models import is_nnx, split
from camjax.methods.registry import Method, get
from camjax.methods.smoothing import TTA, SmoothGrad
from camjax.methods.targets import as_target, check_class_ids, class_ids_of, logits_of

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


def apply_kwargs_for(model: Any, apply_kwargs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The keywords ``model.apply`` gets: ``apply_kwargs``, or by default ``train=False``
    for a camjax ``CAMNet`` and nothing for any other model."""
    from camjax.models.head import CAMNet

    if apply_kwargs is None:
        return {"train": False} if isinstance(model, CAMNet) else {}
    return dict(apply_kwargs)


def pure_model(model: Any, variables: Any, rest: tuple[Any, ...]) -> tuple[Any, Any, tuple]:
    """``(model, variables, rest)`` in camjax's pure form. An ``nnx.Module`` is split
    (``nnx.split``) and takes no variables argument, so the positional arguments after it
    shift by one: ``f(nnx_model, images, x)`` is ``f(graph, state, images, x)``; an
    explicit ``nnx.State`` second argument is used as the state instead. A two-function
    model's params keep their arrays; other leaves go into the model
    (:func:`camjax.methods.functions.bind`)."""
    if not is_nnx(model):
        model, variables = bind(model, variables)
        return model, variables, rest
    from flax import nnx

    graph, state = split(model)
    if isinstance(variables, nnx.State):
        return graph, variables, rest
    if rest and rest[-1] is not MISSING:
        raise TypeError(
            "an NNX model takes no variables argument: call f(model, images, ...) "
            "(or f(model, nnx.state(model), images, ...))"
        )
    return graph, state, (variables,) + rest[:-1]


def output_shape(model: Any, variables: Any, images: jax.Array, apply_kwargs=None) -> Any:
    """The model's output shapes on ``images`` (no compute); a ``ValueError`` naming the
    problem (and the fix, e.g. ``apply_kwargs``) when the model cannot be called so."""
    if is_nnx(model):
        model, variables = split(model)
    kw = apply_kwargs_for(model, apply_kwargs)
    return jax.eval_shape(lambda x: call_model(model, variables, x, kw), images)


def run(method: Method, c: Cut, target: Any, eigen: bool = False, **options: Any) -> jax.Array:
    """One method on one cut: the combine step of its weights, or its own maps."""
    if method.maps is not None:
        return method.maps(c, target, **options)
    return combine(c.features, method.weights(c, target, **options), method.relu, eigen)


def split_target(target: Any) -> tuple[Any, Any]:
    """``(dynamic, static)``: a target that is a pytree of arrays (camjax's targets,
    :func:`~camjax.methods.targets.per_image`) is a traced argument of the program, so a
    new target of the same shapes reuses it; anything else (a plain function) is a
    static argument, hashed by identity when unhashable."""
    leaves, tree = jax.tree.flatten(target)
    arrays = (jax.Array, np.ndarray, np.generic, int, float, bool, complex)
    if leaves and all(isinstance(x, arrays) for x in leaves):
        try:
            hash(tree)
            return target, None
        except TypeError:
            pass
    return None, programs.static(target)


def bad_rows(images: jax.Array, target: Any, num_classes: int | None) -> jax.Array:
    """``[B, N or 1]``: maps with no defined value, NaN by contract: an image with a
    non-finite pixel, a class id outside ``[0, num_classes)`` (traced ids, unchecked)."""
    finite = jnp.all(jnp.isfinite(images), axis=tuple(range(1, images.ndim)))
    bad = ~finite[:, None]
    ids = class_ids_of(target)
    if ids is not None and num_classes is not None:
        bad = bad | (ids < 0) | (ids >= num_classes)
    return bad


def cam_identity_check(m: Method, c: Cut, target: Any, maps: jax.Array, bad: jax.Array) -> None:
    """Report (:mod:`camjax.methods.checks`) when plain CAM's ``mean M + b = S`` fails."""
    ids = class_ids_of(target)
    if m.name != "cam" or ids is None or c.bias is None:
        return
    try:
        logits = logits_of(c.output).astype(jnp.float32)
    except ValueError:
        return
    if logits.ndim != 2:
        return
    safe = jnp.clip(ids, 0, logits.shape[-1] - 1)
    scores = jnp.where(bad, jnp.nan, jnp.take_along_axis(logits, safe, axis=-1))
    bias = jnp.take(jnp.asarray(c.bias(), jnp.float32), safe)
    checks.report(
        f"plain CAM's identity mean_ij M_c + b_c = S_c does not hold at layer {c.layer!r}: "
        "the classifier does not score the global average of this layer's output (layers "
        "or a class token between them, or another pooling), so these maps are not what "
        "the logits are made of; use a gradient method (method='gradcam') or name the "
        "layer whose pooled output the classifier reads",
        checks.cam_identity(maps, scores, bias),
    )


# The keyword options a map program is compiled for (jit static arguments); extract's
# program takes these and its own.
MAP_OPTIONS = (
    "method",
    "layer",
    "classifier",
    "reshape",
    "apply_kwargs",
    "eigen",
    "tta",
    "smoothgrad",
    "options",
    "target_static",
)


def static_items(kw: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """A mapping as a hashable static argument (unhashable values by identity)."""
    return tuple(sorted((k, programs.static(v)) for k, v in (kw or {}).items()))


def _build(get_model):
    pending = checks.Pending()

    def program(variables, images, target_dyn, *, target_static, method, layer, classifier,
                reshape, apply_kwargs, eigen, tta, smoothgrad, options):  # fmt: skip
        model = get_model()
        target = programs.unwrap(target_static) if target_static is not None else target_dyn
        kw = {k: programs.unwrap(v) for k, v in apply_kwargs}
        m = get(method)
        first = first_cut(m, model, variables, images, layer, classifier, reshape, kw)
        ids = class_ids_of(target)
        num_classes = logits_of(first.output).shape[-1] if ids is not None else None
        with checks.collecting() as flags:
            fn = map_fn(m, model, variables, target, layer=layer, classifier=classifier,
                        reshape=reshape, apply_kwargs=kw, eigen=eigen, tta=tta,
                        smoothgrad=smoothgrad, first_cut=first,
                        options={k: programs.unwrap(v) for k, v in options})  # fmt: skip
            maps = fn(images)
            bad = bad_rows(images, target, num_classes)
            maps = jnp.where(bad[..., None, None], jnp.nan, maps)
            if not eigen and tta is None and smoothgrad is None:
                cam_identity_check(m, first, target, maps, bad)
        pending.traced(tuple(msg for msg, _ in flags))
        shape = jnp.zeros((0, num_classes or 0), bool)  # carries num_classes out
        return maps, shape, tuple(flag for _, flag in flags)

    return jax.jit(program, static_argnames=MAP_OPTIONS), pending


def first_cut(m: Method, model, variables, images, layer, classifier, reshape, kw) -> Cut:
    """The cut (or plain forward pass) the method reads on ``images``."""
    if m.uses_layer:
        return cut(model, variables, images, layer, classifier=classifier, reshape=reshape,
                   apply_kwargs=kw)  # fmt: skip
    return forward_only(model, variables, images, kw)


def compute_maps(
    method: str,
    model: Any,
    variables: Any,
    images: Any = MISSING,
    targets: Any = MISSING,
    *,
    layer: Any = None,
    classifier: Any = None,
    reshape: bool | tuple[int, int] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    eigen: bool = False,
    tta: TTA | None = None,
    smoothgrad: SmoothGrad | None = None,
    **options: Any,
) -> jax.Array:
    """Raw (un-normalised) maps ``[B, N, h, w]`` of ``method`` for ``targets``.

    ``compute_maps(method, model, variables, images, targets)`` for a Linen model;
    ``compute_maps(method, model, images, targets)`` for an ``nnx.Module`` (no variables:
    camjax splits the model; ``layer`` is then an attribute path such as
    ``"backbone.layer4"`` or ``"blocks.11"``, see :mod:`camjax.methods.nnx_models`);
    ``compute_maps(method, Functions(features, head), params, images, targets)`` for any
    JAX model given as two functions (no ``layer``: the split is the layer; see
    :mod:`camjax.methods.functions`).

    Args:
      method: a key of :data:`camjax.methods.METHODS`.
      model, variables: any Linen module and its variables, called as
        ``model.apply(variables, images, **apply_kwargs)``; or an NNX module alone.
      images: ``[B, H, W, C]`` float, normalised for the model.
      targets: class ids ``[B, N]`` (each image its own; short for
        :class:`~camjax.methods.targets.ClassLogit`) or a target (``output -> [B, N]``).
      layer, classifier, reshape, apply_kwargs: where the map lives
        (:func:`camjax.methods.cut`); ``layer`` is ignored by ``backprop``.
      eigen: eigen smoothing in the combine step.
      tta, smoothgrad: smoothing specs (:mod:`camjax.methods.smoothing`).
      options: the method's own keywords (``chunk_size`` for Score-CAM).

    Maps are at the layer's resolution (the input's for ``backprop``), ReLU'd where the
    method's paper has a ReLU. NaN by contract (the same rule as ``camjax.extract``,
    whose normalised maps turn NaN into 0): every map of an image with a NaN or infinite
    pixel, and the map of a class id outside ``[0, C)`` that could not be checked (a
    traced id, under the caller's ``jit``; concrete ids are checked and refused). A
    batch of 0 images gives ``[0, N, h, w]``. Pure and jittable; a plain call compiles
    once per model, variables structure, input shape and options
    (:mod:`camjax.methods.programs`), and the call that compiles warns
    (:class:`~camjax.methods.checks.CamjaxWarning`) when the target's gradient at the
    layer is identically zero or plain CAM's identity does not hold there.
    """
    m = get(method)
    model, variables, (images, targets) = pure_model(model, variables, (images, targets))
    if images is MISSING:
        raise TypeError(
            "compute_maps needs images: compute_maps(method, model, variables, images, "
            "targets) (NNX: compute_maps(method, model, images, targets))"
        )
    if targets is MISSING or targets is None:
        raise ValueError(
            "targets is required: class ids [B, N] (or [N] for every image) or a target "
            "(camjax.methods.targets); for the top-k classes use camjax.extract"
        )
    images = check_images(images)
    target = as_target(targets, images.shape[0])
    dyn, stat = split_target(target)
    prog, pending = programs.program("compute_maps", model, _build)
    maps, shape, flags = prog(
        variables,
        images,
        dyn,
        target_static=stat,
        method=m.name,
        layer=layer,
        classifier=classifier,
        reshape=tuple(reshape) if isinstance(reshape, list) else reshape,
        apply_kwargs=static_items(apply_kwargs_for(model, apply_kwargs)),
        eigen=bool(eigen),
        tta=tta,
        smoothgrad=smoothgrad,
        options=static_items(options),
    )
    pending.check(flags)
    ids = class_ids_of(target)
    if ids is not None and is_concrete(ids):
        check_class_ids(ids, images.shape[0], shape.shape[1])
    return maps


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
        noisy = smoothing_lib.smoothgrad(fn, smoothgrad)

        def fn(x: jax.Array) -> jax.Array:
            with checks.suspended():  # the samples run in a lax.map body
                return noisy(x)

    if tta is not None:
        fn = smoothing_lib.tta(fn, tta)
    return fn


def forward_only(model: Any, variables: Any, images: jax.Array, apply_kwargs) -> Cut:
    """A cut with no layer (for methods that read none, e.g. ``backprop``)."""

    def forward(v: jax.Array) -> Any:
        return call_model(model, variables, v, apply_kwargs)

    return Cut(images, forward(images), None, None, forward, None, None)


__all__ = [
    "MISSING",
    "apply_kwargs_for",
    "compute_maps",
    "first_cut",
    "forward_only",
    "map_fn",
    "output_shape",
    "pure_model",
    "run",
    "split_target",
    "static_items",
]
