"""What the faithfulness metrics share: the explained map, pixel orders, baselines, AUC.

Each faithfulness metric perturbs the input by the map of one class and re-scores it
with the context's ``score_fn`` (images normalised for the model -> softmax
probabilities). The class is the top-1 prediction (``config.eval.faithfulness_class =
"top1"``, the papers' choice) or the ground truth (``"gt"``). A pixel removed or masked
out is set to 0 in the normalised input (the data set's mean colour), except where a
metric's paper says otherwise (insertion starts from a blurred image, ROAD imputes).
Every forward runs on the whole batch (padding rows included, so ``score_fn`` keeps one
shape); padding rows are dropped before counting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

from camjax.metrics import inputs

TABLE = "Faithfulness (perturbation by the explained class's map)"
CLASSES = ("top1", "gt")


def explained(
    batch: Mapping[str, Any], out: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(images [B,H,W,C], maps [B,H,W] in [0, 1], classes [B], valid [B])``."""
    which = options.get("faithfulness_class", "top1")
    if which not in CLASSES:
        raise ValueError(f"faithfulness_class must be one of {CLASSES}, got {which!r}")
    images = np.asarray(batch["image"], np.float32)
    if which == "top1":
        maps, classes = np.asarray(out["maps"])[:, 0], np.asarray(out["class_ids"])[:, 0]
    else:
        maps, classes = inputs.gt_maps(out), np.asarray(batch["label"])
    if maps.shape != images.shape[:3]:
        raise ValueError(
            f"faithfulness metrics need input-size maps {images.shape[1:3]}, got "
            f"{maps.shape[1:]} (extract with map_resolution='input')"
        )
    maps = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return images, maps, np.asarray(classes, np.int64), inputs.valid(batch)


def class_prob(score_fn: Callable, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``[B]``: the probability of each image's class."""
    probs = np.asarray(score_fn(images), np.float64)
    return probs[np.arange(len(classes)), classes]


def order(maps: np.ndarray) -> np.ndarray:
    """``[B, H*W]`` pixel indices from most to least salient (ties: raster order)."""
    flat = maps.reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")


def top_mask(ranks: np.ndarray, count: int, hw: tuple[int, int]) -> np.ndarray:
    """``[B, H, W]`` bool: the first ``count`` pixels of each order."""
    mask = np.zeros(ranks.shape, bool)
    np.put_along_axis(mask, ranks[:, :count], True, axis=1)
    return mask.reshape((len(ranks),) + hw)


def step_counts(num_pixels: int, steps: int) -> list[int]:
    """Pixels changed after each of ``steps`` steps (0 first): ``ceil(HW / steps)`` per step,
    the last step reaching all ``HW`` (Petsiuk et al.'s released code steps the same way)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"faithfulness_steps must be a positive int, got {steps!r}")
    per = -(-num_pixels // steps)
    return [min(num_pixels, i * per) for i in range(steps + 1)]


def auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``curve [B, S+1]`` sampled evenly on ``[0, 1]``."""
    s = curve.shape[1] - 1
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / s


def blur(images: np.ndarray, size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """Gaussian blur (``size`` taps, ``sigma``), zero padding, per channel: the insertion
    metric's starting image (Petsiuk et al.'s code: an 11-tap kernel of sigma 5)."""
    x = np.arange(size) - size // 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    out = ndimage.convolve1d(images, k, axis=1, mode="constant")
    return ndimage.convolve1d(out, k, axis=2, mode="constant")


# ROAD's neighbour weights: 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones
# (Rong et al., ICML 2022, Sec. 4, noisy linear imputation).
_NEIGHBOURS = tuple(
    ((dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dy, dx) != (0, 0)
)


def impute(
    image: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Noisy linear imputation (Rong et al., ICML 2022): each removed pixel equals the
    weighted mean of its in-image neighbours (removed ones included, so the removed
    region is one sparse linear system per image, all channels at once), plus Gaussian
    noise of standard deviation ``noise``."""
    h, w, _ = image.shape
    idx = np.flatnonzero(removed.ravel())
    if idx.size == 0:
        return image.copy()
    if idx.size == h * w:  # nothing left to interpolate from: the mean colour, plus noise
        return (noise * rng.standard_normal(image.shape)).astype(image.dtype)
    var = -np.ones(h * w, np.int64)
    var[idx] = np.arange(idx.size)
    ys, xs = np.divmod(idx, w)
    flat = image.reshape(h * w, -1).astype(np.float64)
    rows, cols, vals = [], [], []
    diag = np.zeros(idx.size)
    rhs = np.zeros((idx.size, flat.shape[1]))
    for (dy, dx), weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        q = np.where(inside, ny * w + nx, 0)
        diag += np.where(inside, weight, 0.0)
        unknown = inside & (var[q] >= 0)
        known = inside & (var[q] < 0)
        rows.append(np.flatnonzero(unknown))
        cols.append(var[q[unknown]])
        vals.append(np.full(unknown.sum(), -weight))
        rhs[known] += weight * flat[q[known]]
    rows.append(np.arange(idx.size))
    cols.append(np.arange(idx.size))
    vals.append(diag)
    a = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(idx.size, idx.size),
    )
    solved = sparse_linalg.spsolve(a, rhs).reshape(idx.size, -1)
    out = flat.copy()
    out[idx] = solved + noise * rng.standard_normal(solved.shape)
    return out.reshape(image.shape).astype(image.dtype)


def option(ctx_options: Mapping[str, Any], name: str, default: Any) -> Any:
    """``config.eval.<name>`` or ``default``."""
    value = ctx_options.get(name, default)
    return default if value is None else value


__all__ = [
    "CLASSES",
    "TABLE",
    "auc",
    "blur",
    "class_prob",
    "explained",
    "impute",
    "option",
    "order",
    "step_counts",
    "top_mask",
]
