"""Any JAX model as two pure functions: ``features(params, images) -> A`` and
``head(params, A) -> output``.

A :class:`Functions` is a model in camjax's calling convention (``model``, ``variables``,
``images``), so :func:`camjax.methods.compute_maps` and ``camjax.extract`` take it where
they take a Linen module: ``compute_maps("gradcam", fns, params, images, ids)``. The
split *is* the layer: ``features`` gives the map ``A`` ``[B, h, w, K]`` (or tokens
``[B, T, K]`` with ``reshape``), ``head`` the model's output from ``A`` (logits, a tuple
or dict holding them, or anything a target reads). Gradient methods differentiate
``head`` at ``A`` with ``jax.vjp``; Score-CAM and Backprop run ``head(features(x))``.

Parameters are an argument, not closed over: ``params`` is the traced argument of the
compiled program (:mod:`camjax.methods.programs`), so new weights of the same shapes
reuse it, and one program serves every ``params`` for one :class:`Functions` value (it
is hashable: two made from the same function objects are equal). ``params`` may be any
pytree: its array leaves are traced; any other leaf (a function or a Python number kept
in an Equinox module, say) is compiled into the program (:func:`bind`), so an Equinox
module is ``params`` as it stands. Arrays closed over by the functions are constants of
the program; a new :class:`Functions` (new lambdas) compiles anew.

Plain CAM needs the dense kernel that scores the pooled map: ``classifier`` is a function
``params -> kernel [K, C]`` or ``params -> (kernel, bias [C])``, or ``"head"`` when
``head`` is global average pooling then one dense layer (the kernel and bias are then
read from ``head`` itself, by linearising it at a zero map).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax.methods import programs
from camjax.methods.layer import Cut, as_map, check_kernel
from camjax.methods.targets import logits_of

LAYER = "features"  # the name of the split in messages (Cut.layer)


class _Slot:
    """Marks where an array leaf of ``params`` goes back (see :func:`bind`)."""

    def __repr__(self) -> str:
        return "ARRAY"


_ARRAY = _Slot()


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _is_head(classifier: Any) -> bool:
    return isinstance(classifier, str) and classifier == "head"


def _check_classifier(classifier: Any) -> None:
    if classifier is None or _is_head(classifier) or callable(classifier):
        return
    raise ValueError(
        "classifier of a two-function model is a function params -> kernel [K, C] (or "
        "-> (kernel, bias [C])), or 'head' when head is global average pooling then one "
        f"dense layer; got {type(classifier).__name__} (an array: lambda params: kernel)"
    )


@dataclasses.dataclass(frozen=True)
class Functions:
    """A model given as two pure functions of its parameters (see the module docstring).

    Args:
      features: ``(params, images [B, H, W, C]) -> A [B, h, w, K]`` (or tokens
        ``[B, T, K]`` with ``reshape``).
      head: ``(params, A) -> output``, batched like ``features``.
      classifier: for plain CAM only: ``params -> kernel [K, C]`` or
        ``params -> (kernel [K, C], bias [C])``, or ``"head"`` when ``head`` is a mean
        over ``h, w`` then one dense layer. ``compute_maps``/``extract``'s
        ``classifier=`` overrides it.
    """

    features: Callable[[Any, jax.Array], Any]
    head: Callable[[Any, jax.Array], Any]
    classifier: Callable[[Any], Any] | str | None = None
    # (treedef, leaves): the non-array part of params moved here by bind(); None: none.
    static: tuple[Any, tuple[Any, ...]] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("features", "head"):
            if not callable(getattr(self, name)):
                raise ValueError(f"Functions' {name} must be a function (params, x) -> array")
        _check_classifier(self.classifier)

    def params(self, variables: Any) -> Any:
        """The user's ``params``: ``variables`` with the leaves :func:`bind` held back."""
        if self.static is None:
            return variables
        treedef, leaves = self.static
        arrays = iter(variables)
        full = [next(arrays) if s is _ARRAY else programs.unwrap(s) for s in leaves]
        return jax.tree.unflatten(programs.unwrap(treedef), full)

    def apply(self, variables: Any, images: jax.Array, **kwargs: Any) -> Any:
        """``head(params, features(params, images))``: Linen's calling convention."""
        _no_kwargs(kwargs)
        params = self.params(variables)
        return self.head(params, self.features(params, images))


def _no_kwargs(kwargs: Mapping[str, Any] | None) -> None:
    if kwargs:
        raise ValueError(
            f"a two-function model takes no apply_kwargs (got {sorted(kwargs)}): bind "
            "them in your functions, e.g. lambda p, x: f(p, x, train=False)"
        )


def bind(model: Any, variables: Any) -> tuple[Any, Any]:
    """``(model, variables)`` as a compiled program takes them: for a :class:`Functions`
    whose ``params`` hold leaves that are not arrays (functions, Python numbers), those
    leaves move into the model (static, compiled in) and ``variables`` keeps the arrays;
    anything else is returned as it is."""
    if not isinstance(model, Functions) or model.static is not None:
        return model, variables
    leaves, treedef = jax.tree.flatten(variables)
    if all(_is_array(x) for x in leaves):
        return model, variables
    arrays = [x for x in leaves if _is_array(x)]
    held = tuple(_ARRAY if _is_array(x) else programs.static(x) for x in leaves)
    return dataclasses.replace(model, static=(programs.static(treedef), held)), arrays


def _classifier_of(model: Functions, classifier: Any, params: Any, k: int):
    """``(kernel () -> [K, C], bias () -> [C], or None when unknown)`` for plain CAM;
    nothing is read (and nothing fails) until plain CAM asks."""
    spec = model.classifier if classifier is None else classifier
    _check_classifier(spec)

    def read() -> tuple[jax.Array, jax.Array | None]:
        if spec is None:
            raise ValueError(
                "plain CAM needs the dense kernel [K, C] that scores the pooled map, and "
                "this two-function model has none: Functions(features, head, "
                "classifier=lambda params: (kernel, bias)) (or classifier='head' when "
                "head is global average pooling then one dense layer), or use a "
                "gradient method (gradcam, ...)"
            )
        if _is_head(spec):
            kernel, bias = _read_head(model, params, k)
        else:
            got = spec(params)
            kernel, bias = got if isinstance(got, tuple | list) else (got, None)
        kernel = None if kernel is None else jnp.asarray(kernel, jnp.float32)
        check_kernel(kernel, "classifier", LAYER, k)
        if bias is not None:
            bias = jnp.asarray(bias, jnp.float32)
            if bias.shape != kernel.shape[1:]:
                raise ValueError(
                    f"classifier's bias has shape {list(bias.shape)}; the kernel "
                    f"{list(kernel.shape)} needs [{kernel.shape[1]}]"
                )
        return kernel, bias

    # The identity check of plain CAM needs the bias: known for "head", and for a
    # function that returns (kernel, bias) (its output structure, read without compute).
    has_bias = _is_head(spec)
    if callable(spec):
        try:
            has_bias = isinstance(jax.eval_shape(spec, params), tuple | list)
        except Exception:  # a broken classifier fails plain CAM only, in read()
            has_bias = False
    return (lambda: read()[0]), ((lambda: read()[1]) if has_bias else None)


def _read_head(model: Functions, params: Any, k: int) -> tuple[jax.Array, jax.Array]:
    """The kernel and bias of a ``head`` that is ``dense(mean_hw(A))``: it is affine in
    the pooled vector, so its value at a zero 1x1 map is the bias and its derivative
    there the kernel (exact for an affine head; the identity check flags any other)."""

    def logits(v: jax.Array) -> jax.Array:
        out = logits_of(model.head(params, v.reshape(1, 1, 1, k)))
        return out.reshape(-1).astype(jnp.float32)

    with jax.default_matmul_precision("highest"):
        bias, lin = jax.linearize(logits, jnp.zeros((k,), jnp.float32))
        kernel = jax.vmap(lin)(jnp.eye(k, dtype=jnp.float32))
    return kernel, bias


def cut_functions(
    model: Functions,
    variables: Any,
    images: jax.Array,
    layer: Any = None,
    *,
    classifier: Any = None,
    reshape: Any = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> Cut:
    """:func:`camjax.methods.cut` for a :class:`Functions` model: the map is
    ``features(params, images)``, the rest of the network ``head``."""
    if layer is not None:
        raise ValueError(
            f"a two-function model is cut where its functions meet (A = features(params, "
            f"images)); layer does not apply, got layer={layer!r}"
        )
    _no_kwargs(apply_kwargs)
    params = model.params(variables)
    raw = model.features(params, images)
    features, restore = as_map(raw, images.shape[0], LAYER, reshape)

    def head(a: jax.Array) -> Any:
        return model.head(params, restore(a))

    def forward(x: jax.Array) -> Any:
        return model.head(params, model.features(params, x))

    kernel, bias = _classifier_of(model, classifier, params, features.shape[-1])
    return Cut(images, model.head(params, raw), features, head, forward, kernel, LAYER, bias)


__all__ = ["Functions", "bind", "cut_functions"]
