"""Map post-processing: resize (:func:`upsample`) and scale into [0, 1] (:func:`normalize`).

Pure functions of arrays: they run under ``jit``, ``vmap`` and ``pmap``. Maps keep the
class axis before the spatial axes: ``[..., h, w]``. The maps themselves come from the
registered methods (:mod:`camjax.methods`; CAM is :mod:`camjax.methods.cam`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

UPSAMPLE_METHODS: tuple[str, ...] = ("bilinear", "bicubic")
NORMALIZE_MODES: tuple[str, ...] = ("minmax", "max")


def is_concrete(x: object) -> bool:
    """Whether ``x`` holds values (not a tracer): concrete arguments are checked at call
    time (class ids, thresholds), traced ones cannot be."""
    return not isinstance(x, jax.core.Tracer)


def upsample(maps: jax.Array, size: int | Sequence[int], method: str = "bilinear") -> jax.Array:
    """Resize the last two axes of ``maps`` to ``size`` (``int`` or ``(H, W)``).

    ``"bilinear"`` uses half-pixel centres (as OpenCV's ``INTER_LINEAR``, PyTorch's
    ``align_corners=False``). ``"bicubic"`` is the cubic kernel the WSOL benchmark code
    (Choe et al., CVPR 2020) resizes with; JAX's Keys kernel has ``a = -0.5`` where
    OpenCV's ``INTER_CUBIC`` has ``a = -0.75``, so values differ slightly from OpenCV.
    Bicubic can overshoot the input range; :func:`normalize` afterwards maps to [0, 1].
    Resizing is a matrix product per axis, so one non-finite pixel makes its whole
    resized map NaN (:func:`normalize` then turns it into zeros).
    """
    if method not in UPSAMPLE_METHODS:
        raise ValueError(f"upsample method must be one of {UPSAMPLE_METHODS}, got {method!r}")
    if maps.ndim < 2:
        raise ValueError(f"maps must be [..., h, w], got shape {tuple(maps.shape)}")
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    maps = maps.astype(jnp.float32)
    if tuple(maps.shape[-2:]) == size:
        return maps
    return jax.image.resize(maps, maps.shape[:-2] + size, method=method)


def normalize(maps: jax.Array, mode: str = "minmax", relu: bool = False) -> jax.Array:
    """Scale each map (last two axes) into [0, 1].

    ``"minmax"``: ``(M - min M) / (max M - min M)``, as the WSOL benchmark (Choe et al.,
    CVPR 2020) does. ``"max"``: ``max(M, 0) / max M``, as the paper's released code
    divides by the maximum (negatives clipped so the result stays in [0, 1]).
    ``relu=True`` applies ``max(M, 0)`` first.

    Defined results for degenerate maps, so this never yields NaN or inf and works
    under ``jit``: a constant map (``max == min``, in either mode: it localises nothing),
    an all-negative map in ``"max"`` mode (or any map that is all <= 0 after ``relu``)
    give all zeros. Non-finite pixels
    (NaN, +-inf, e.g. from NaN input features) are treated as missing: they are left out
    of the min/max and come out as 0; an all-non-finite map gives zeros.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize mode must be one of {NORMALIZE_MODES}, got {mode!r}")
    if maps.ndim < 2:
        raise ValueError(f"maps must be [..., h, w], got shape {tuple(maps.shape)}")
    maps = maps.astype(jnp.float32)
    finite = jnp.isfinite(maps)
    if relu:
        maps = jnp.maximum(maps, 0.0)
    axes = (-2, -1)
    hi = jnp.max(jnp.where(finite, maps, -jnp.inf), axis=axes, keepdims=True)
    lo = jnp.min(jnp.where(finite, maps, jnp.inf), axis=axes, keepdims=True)
    if mode == "minmax":
        shifted, span = maps - lo, hi - lo
    else:
        shifted, span = jnp.maximum(maps, 0.0), hi
    # span is +inf only when a map has no finite pixel (or the range overflows); span <= 0
    # for all-negative maps in "max" mode; hi == lo for constant maps, in both modes.
    ok = jnp.isfinite(span) & (span > 0) & (hi > lo)
    safe_span = jnp.where(ok, span, 1.0)
    out = jnp.where(finite & ok, shifted / safe_span, 0.0)
    # Rounding in (M - min) / span can land a hair outside [0, 1].
    return jnp.clip(out, 0.0, 1.0)


__all__ = [
    "NORMALIZE_MODES",
    "UPSAMPLE_METHODS",
    "is_concrete",
    "normalize",
    "upsample",
]
