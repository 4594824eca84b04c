"""Smoothing: test-time augmentation and SmoothGrad, wrapped around any map function.

Both wrap ``fn(images [B, H, W, C]) -> maps [B, N, h, w]`` and return a function of the
same signature (jittable: the samples and augmentations are a static loop or a
``lax.map``). Eigen smoothing changes the combine step instead
(:func:`camjax.methods.combine.eigen_projection`, ``eigen=True``).

- :class:`TTA`: maps of horizontally flipped and rescaled copies of the images, mapped
  back (flipped back, resized to the plain map's size) and averaged. Test-time
  augmentation for CAMs as pytorch-grad-cam's ``aug_smooth`` (Gildenblat et al.,
  pytorch-grad-cam, 2021); camjax averages the raw maps, pytorch-grad-cam the
  min-max-normalised ones. A target that reads a spatial output (``RegionSum``) is
  not flipped with the image: use TTA with image-level targets.
- :class:`SmoothGrad`: the mean map over ``samples`` copies of the images with Gaussian
  noise of standard deviation ``noise * (max - min)`` of each image (Smilkov et al.,
  "SmoothGrad: removing noise by adding noise", ICML Workshop 2017, who suggest
  10-20 %). For the gradient methods only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from camjax.methods import checks

MapFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TTA:
    """Test-time augmentation: every combination of ``flips`` (False: as is, True: mirrored
    left-right) and ``scales`` (image side factors)."""

    flips: tuple[bool, ...] = (False, True)
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not self.flips or not self.scales or min(self.scales) <= 0:
            raise ValueError(f"TTA needs flips and positive scales, got {self}")


@dataclasses.dataclass(frozen=True)
class SmoothGrad:
    """``samples`` noisy copies, noise std ``noise`` times each image's value range."""

    samples: int = 8
    noise: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.samples, int) or self.samples < 1 or not self.noise >= 0:
            raise ValueError(f"SmoothGrad needs samples >= 1 and noise >= 0, got {self}")


def _resize_images(images: jax.Array, scale: float) -> jax.Array:
    if scale == 1.0:
        return images
    h, w = images.shape[1:3]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return jax.image.resize(images, (images.shape[0], *size, images.shape[3]), "bilinear")


def tta(fn: MapFn, spec: TTA) -> MapFn:
    """``fn`` averaged over ``spec``'s flips and scales (see the module docstring)."""

    def smoothed(images: jax.Array) -> jax.Array:
        with checks.suspended():  # a shape-only trace: nothing it reports may escape it
            shape = jax.eval_shape(fn, images).shape
        total = jnp.zeros(shape, jnp.float32)
        for scale in spec.scales:
            for flip in spec.flips:
                x = _resize_images(images, scale)
                x = x[:, :, ::-1] if flip else x
                m = fn(x).astype(jnp.float32)
                m = m[..., ::-1] if flip else m
                if m.shape != shape:
                    m = jax.image.resize(m, shape, "bilinear")
                total = total + m
        return total / (len(spec.scales) * len(spec.flips))

    return smoothed


def smoothgrad(fn: MapFn, spec: SmoothGrad) -> MapFn:
    """``fn`` averaged over ``spec.samples`` noisy copies (see the module docstring)."""

    def smoothed(images: jax.Array) -> jax.Array:
        axes = tuple(range(1, images.ndim))
        span = images.max(axis=axes, keepdims=True) - images.min(axis=axes, keepdims=True)
        sigma = spec.noise * span
        keys = jax.random.split(jax.random.key(spec.seed), spec.samples)

        def one(key: jax.Array) -> jax.Array:
            noise = jax.random.normal(key, images.shape, jnp.float32)
            return fn(images + (sigma * noise).astype(images.dtype)).astype(jnp.float32)

        return jax.lax.map(one, keys).mean(axis=0)

    return smoothed


__all__ = ["TTA", "SmoothGrad", "smoothgrad", "tta"]
