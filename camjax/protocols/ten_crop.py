"""Ten-crop testing as the released code does it (zhoubolei/CAM).

``prepare_image.m`` (l. 374-399) resizes the whole image to ``256 x 256`` and takes ten
``crop x crop`` crops (224 for GoogLeNet, 227 for VGG and AlexNet, l. 375): the four
corners in the order (x, y) = (0, 0), (0, d), (d, 0), (d, d) with ``d = 256 - crop``, the
centre at ``floor(d / 2)`` (l. 396), then the horizontal mirrors of those five in the same
order (l. 392, 399). ``ILSVRC_generate_heatmap.m`` averages the ten crops' class
probabilities (l. 333) and ranks the classes by that mean (l. 334); each top class's map
is computed on every crop, resized to the crop (l. 344) and merged back by
``mergeTenCrop.m``: each crop's map (a mirrored crop's map mirrored back) is placed where
the crop came from and the absolute values are summed over the ten (l. 204-224; a sum,
not a mean, so the centre, covered by all ten, weighs more than the corners). The merged
``256 x 256`` map is then resized to the original image (``ILSVRC_generate_heatmap.m``
l. 352) and boxed (:mod:`camjax.protocols.released`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESIZE = 256  # prepare_image.m l. 374: IMAGE_DIM


def offsets(crop: int, size: int = RESIZE) -> list[tuple[int, int]]:
    """The five ``(x, y)`` crop corners in the released order (the mirrors repeat them)."""
    if not 0 < crop <= size:
        raise ValueError(f"crop must be in (0, {size}], got {crop}")
    d = size - crop
    c = d // 2
    return [(0, 0), (0, d), (d, 0), (d, d), (c, c)]


def crops(images: Any, crop: int) -> Any:
    """``images [B, S, S, C]`` (S = 256) -> ``[B, 10, crop, crop, C]``, the released order.

    Works on numpy and JAX arrays (slicing and ``[..., ::-1, :]`` only).
    """
    s = images.shape[1]
    if images.ndim != 4 or images.shape[2] != s:
        raise ValueError(f"images must be square [B, S, S, C], got {images.shape}")
    five = [images[:, y : y + crop, x : x + crop] for x, y in offsets(crop, s)]
    if isinstance(images, np.ndarray):
        return np.stack(five + [c[:, :, ::-1] for c in five], axis=1)
    import jax.numpy as jnp

    return jnp.stack(five + [c[:, :, ::-1] for c in five], axis=1)


def merge(maps: np.ndarray, size: int = RESIZE) -> np.ndarray:
    """``maps [B, 10, ..., crop, crop]`` (one per crop, in the crops' order) ->
    ``[B, ..., size, size]``: ``sum_k |map_k|`` placed back (mirrors mirrored back)."""
    maps = np.asarray(maps)
    if maps.ndim < 4 or maps.shape[1] != 10 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be [B, 10, ..., crop, crop], got {maps.shape}")
    crop = maps.shape[-1]
    out = np.zeros(maps.shape[:1] + maps.shape[2:-2] + (size, size), np.float64)
    for k, (x, y) in enumerate(offsets(crop, size) * 2):
        m = np.abs(maps[:, k].astype(np.float64))
        if k >= 5:
            m = m[..., ::-1]
        out[..., y : y + crop, x : x + crop] += m
    return out


def predict(
    model: Any,
    variables: Any,
    images: Any,
    labels: Any,
    *,
    method: str,
    top_k: int,
    crop: int = 224,
    upsample_method: str = "bicubic",
) -> dict[str, np.ndarray]:
    """Ten-crop prediction of ``images [B, 256, 256, 3]`` with ``crop x crop`` crops.

    Returns ``probs_all [B, C]`` (mean of the ten crops' softmax), ``class_ids [B, k]``
    (ranked by it), ``probs [B, k]``, and the merged raw maps ``maps [B, k, 256, 256]``
    and ``gt_maps [B, 1, 256, 256]`` (the labels' class), before any normalisation.
    """
    import jax
    import jax.numpy as jnp

    from camjax.maps import upsample
    from camjax.methods import compute_maps

    images = jnp.asarray(images)
    b = images.shape[0]
    if images.ndim != 4 or images.shape[1:3] != (RESIZE, RESIZE):
        raise ValueError(f"ten-crop images must be [B, {RESIZE}, {RESIZE}, 3], got {images.shape}")
    crop_side = int(crop)
    flat = crops(images, crop_side).reshape((b * 10, crop_side, crop_side, images.shape[-1]))
    logits, _ = model.apply(variables, flat, train=False)
    probs_all = jax.nn.softmax(logits, axis=-1).reshape(b, 10, -1).mean(axis=1)
    probs, class_ids = jax.lax.top_k(probs_all, top_k)
    ids = jnp.concatenate([class_ids, jnp.asarray(labels, class_ids.dtype)[:, None]], axis=1)
    raw = compute_maps(method, model, variables, flat, jnp.repeat(ids, 10, axis=0))
    up = upsample(raw, (crop_side, crop_side), upsample_method)
    merged = merge(np.asarray(up).reshape((b, 10) + up.shape[1:]))
    return {
        "probs_all": np.asarray(probs_all),
        "class_ids": np.asarray(class_ids, np.int32),
        "probs": np.asarray(probs),
        "maps": merged[:, :top_k],
        "gt_maps": merged[:, top_k:],
    }
