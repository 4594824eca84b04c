"""Calling the user's model, with errors that name the fix.

Every forward pass camjax makes goes through :func:`call_model`
(``model.apply(variables, images, **apply_kwargs)``). The mistakes a user makes most
(a model left in training mode, a ``__call__`` keyword not passed, variables of another
model) surface deep inside Flax or JAX with a lead that points elsewhere (``unbound axis
name: batch``, ``collection "batch_stats" is immutable``); they are re-raised here as a
``ValueError`` that says what happened and which argument fixes it, the original
exception chained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

_TRAIN_HINT = (
    "camjax runs the model for inference: pass apply_kwargs={{'train': False}} (or the "
    "keyword your model's __call__ takes to select inference mode: deterministic=True, "
    "use_running_average=True, ...); camjax calls model.apply(variables, images, "
    "**apply_kwargs), now with apply_kwargs={kw}"
)


def _describe_kw(kw: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in kw.items()) + "}"


def explain(e: BaseException, apply_kwargs: Mapping[str, Any]) -> Exception | None:
    """A ``ValueError`` naming the fix for a model-call failure ``e``, or ``None`` when
    ``e`` is none of the known mistakes (it is then re-raised as it is)."""
    msg = str(e)
    kw = _describe_kw(apply_kwargs)
    hint = _TRAIN_HINT.format(kw=kw)
    name = type(e).__name__
    if isinstance(e, NameError) and "unbound axis name" in msg:
        return ValueError(
            "the model runs in training mode: its batch norm averages over a device axis "
            f"(JAX: {msg.splitlines()[0]}); {hint}"
        )
    if name == "ModifyScopeVariableError" or (
        name == "ApplyScopeInvalidVariablesTypeError" and "mutable" in msg
    ):
        return ValueError(
            "the model updates a variable collection (batch norm statistics in training "
            f"mode: {msg.splitlines()[0]}); {hint}"
        )
    if name == "InvalidRngError":
        return ValueError(
            f"the model asks for a random key (dropout in training mode: "
            f"{msg.splitlines()[0]}); {hint}"
        )
    if isinstance(e, TypeError) and "__call__()" in msg and "argument" in msg:
        return ValueError(
            f"the model's __call__ does not accept camjax's call ({msg}): pass the "
            f"keywords it needs with apply_kwargs=..., e.g. apply_kwargs={{'train': False}}; "
            f"camjax calls model(images, **apply_kwargs), now with apply_kwargs={kw}"
        )
    if name.startswith(("Scope", "ApplyScope")) or isinstance(e, KeyError):
        # Missing or misshapen params, a collection not given: variables of another model.
        return ValueError(f"the variables do not fit this model: {name}: {msg}")
    return None


def call_model(model: Any, variables: Any, images: jax.Array, apply_kwargs: Mapping[str, Any]):
    """``model.apply(variables, images, **apply_kwargs)``; known mistakes re-raised as a
    ``ValueError`` naming the fix (:func:`explain`)."""
    kw = dict(apply_kwargs)
    try:
        return model.apply(variables, images, **kw)
    except (NameError, TypeError, KeyError, ValueError) as e:
        better = explain(e, kw)
        if better is None:
            raise
        raise better from e
    except Exception as e:  # flax's own error classes
        better = explain(e, kw) if type(e).__module__.startswith("flax") else None
        if better is None:
            raise
        raise better from e


def check_images(images: Any) -> jax.Array:
    """``images`` as an array ``[B, H, W, C]`` of a float dtype; a ``ValueError`` naming
    the fix otherwise (raw ``uint8`` pixels would run and give a confident wrong class)."""
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be float, normalised for the model, got {images.dtype}: prepare "
            "pixels with spec.preprocess(images) (camjax.pretrained.load_pretrained's spec) "
            "or the training config's data.normalization (camjax.files.images.normalize)"
        )
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {tuple(images.shape)}")
    return images


__all__ = ["call_model", "check_images", "explain"]
