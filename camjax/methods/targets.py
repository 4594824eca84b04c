"""Targets: what a map explains, a scalar function of the model's output per image.

A target is a pytree (so it passes through ``jit``) called on the *batched* model output
and returning scores ``[B, N]``: ``N`` maps per image, each image its own. Gradients
are taken of ``sum_b score[b, n]``; with images processed independently (eval mode)
that is each image's own gradient. As pytorch-grad-cam's targets (ClassifierOutputTarget,
SemanticSegmentationTarget, SimilarityToConceptTarget), but batched.

Integer class ids ``[B, N]`` are the short form of :class:`ClassLogit`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from camjax.maps import is_concrete


def logits_of(output: Any) -> jax.Array:
    """The logits in a model's output: the array itself, the first element of a tuple or
    list (camjax's ``CAMNet`` returns ``(logits, features)``), or ``output["logits"]``."""
    if isinstance(output, jax.Array | np.ndarray | jax.ShapeDtypeStruct):
        return output
    if isinstance(output, tuple | list) and output:
        return logits_of(output[0])
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    raise ValueError(
        f"cannot find logits in the model's output ({type(output).__name__}); pass a "
        "target function that reads it (camjax.methods.targets.per_image)"
    )


def check_class_ids(class_ids: Any, batch: int, num_classes: int | None) -> jax.Array:
    """``[B, N]`` integers in ``[0, num_classes)`` (checked when concrete)."""
    class_ids = jnp.asarray(class_ids)
    if class_ids.size == 0 and not jnp.issubdtype(class_ids.dtype, jnp.integer):
        # jnp.asarray([]) is float32: say what is wrong, not the dtype.
        raise ValueError(
            f"class_ids is empty ({tuple(class_ids.shape)}): give at least one class id "
            "per image, [B, N] or [N] ints"
        )
    if class_ids.ndim != 2 or class_ids.shape[0] != batch:
        raise ValueError(
            f"class_ids must be [B, N] with B = {batch}, got shape {tuple(class_ids.shape)}"
        )
    if not jnp.issubdtype(class_ids.dtype, jnp.integer):
        raise ValueError(f"class_ids must be integers, got dtype {class_ids.dtype}")
    if num_classes is not None and is_concrete(class_ids) and class_ids.size:
        ids_np = np.asarray(class_ids)
        lo, hi = int(ids_np.min()), int(ids_np.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"class_ids must lie in [0, {num_classes}), got [{lo}, {hi}]")
    return class_ids


def _take(scores: jax.Array, class_ids: jax.Array) -> jax.Array:
    if scores.ndim != 2:
        raise ValueError(
            f"a class target needs logits [B, C], the model gives {list(scores.shape)}; "
            "use region_sum or per_image for other outputs"
        )
    return jnp.take_along_axis(scores, class_ids, axis=-1)


@struct.dataclass
class ClassLogit:
    """``S_c``, the pre-softmax logit of class ``class_ids[b, n]`` (what the papers use)."""

    class_ids: jax.Array  # [B, N] int

    def __call__(self, output: Any) -> jax.Array:
        return _take(logits_of(output).astype(jnp.float32), self.class_ids)


@struct.dataclass
class ClassProbability:
    """``softmax(S)_c``: the class probability (Score-CAM's score)."""

    class_ids: jax.Array  # [B, N] int

    def __call__(self, output: Any) -> jax.Array:
        logits = logits_of(output).astype(jnp.float32)
        return _take(jax.nn.softmax(logits, axis=-1), self.class_ids)


@struct.dataclass
class RegionSum:
    """``sum_{(i, j) in mask} S_c(i, j)`` for a segmentation output ``[B, H', W', C]``:
    ``mask [B, N, H', W']`` (or ``[N, H', W']`` shared by the batch), ``class_ids [B, N]``."""

    class_ids: jax.Array
    mask: jax.Array

    def __call__(self, output: Any) -> jax.Array:
        out = logits_of(output).astype(jnp.float32)
        if out.ndim != 4:
            raise ValueError(f"region_sum needs a [B, H, W, C] output, got {list(out.shape)}")
        per_class = jnp.take_along_axis(
            out[:, None], self.class_ids[:, :, None, None, None], axis=-1
        )[..., 0]  # [B, N, H, W]
        mask = jnp.broadcast_to(self.mask, per_class.shape).astype(jnp.float32)
        return (per_class * mask).sum(axis=(-2, -1))


@struct.dataclass
class Similarity:
    """Cosine similarity of an embedding output ``[B, D]`` to ``embeddings [B, N, D]``
    (or ``[N, D]`` for the whole batch)."""

    embeddings: jax.Array

    def __call__(self, output: Any) -> jax.Array:
        out = logits_of(output).astype(jnp.float32)
        if out.ndim != 2:
            raise ValueError(f"similarity needs a [B, D] embedding output, got {list(out.shape)}")
        emb = jnp.asarray(self.embeddings, jnp.float32)
        emb = jnp.broadcast_to(emb, out.shape[:1] + emb.shape[-2:])
        num = jnp.einsum("bd,bnd->bn", out, emb, precision=jax.lax.Precision.HIGHEST)
        den = jnp.linalg.norm(out, axis=-1)[:, None] * jnp.linalg.norm(emb, axis=-1)
        return num / jnp.maximum(den, 1e-12)


@struct.dataclass
class PerImage:
    """``fn(output_of_one_image, *args_of_that_image) -> scalar or [N]``, vmapped over the
    batch; ``args`` are arrays with a leading batch axis (e.g. a per-image class id)."""

    fn: Callable[..., jax.Array] = struct.field(pytree_node=False)
    args: tuple[Any, ...] = ()

    def __call__(self, output: Any) -> jax.Array:
        scores = jax.vmap(self.fn)(output, *self.args)
        return scores[:, None] if scores.ndim == 1 else scores


def per_image(fn: Callable[..., jax.Array], *args: Any) -> PerImage:
    """Any scalar function of one image's model output (see :class:`PerImage`)."""
    return PerImage(fn, tuple(args))


def as_target(targets: Any, batch: int) -> Any:
    """Class ids ``[B, N]`` (or ``[N]``, the same for every image) -> :class:`ClassLogit`;
    a target (callable) is returned as is."""
    if callable(targets):
        return targets
    if targets is None:
        raise ValueError("targets is required: class ids [B, N] or [N], or a target")
    ids = jnp.asarray(targets)
    if ids.ndim == 1 and ids.size:
        ids = jnp.broadcast_to(ids, (batch,) + ids.shape)
    return ClassLogit(check_class_ids(ids, batch, None))


def class_ids_of(target: Any) -> jax.Array | None:
    """The class ids of a class target, else ``None``."""
    return target.class_ids if isinstance(target, ClassLogit | ClassProbability) else None


__all__ = [
    "ClassLogit",
    "ClassProbability",
    "PerImage",
    "RegionSum",
    "Similarity",
    "as_target",
    "check_class_ids",
    "class_ids_of",
    "logits_of",
    "per_image",
]
