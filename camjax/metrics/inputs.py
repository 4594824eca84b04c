"""What the metrics read: the parts of an evaluation batch, the threshold grids, the checks.

The checks run outside ``jit``, before an evaluator's state changes, and name the
problem in a ``ValueError``/``TypeError`` so that bad input never turns into a silently
wrong accuracy. Map and mask checks reduce on device (one small jitted reduction, a few
scalars back); box checks run on the host (boxes are small).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MASK_BACKGROUND = 0
MASK_FOREGROUND = 1
MASK_IGNORE = 255
IOU_LOC = 0.5  # the paper's (and ILSVRC's) localization criterion
# camjax's own fast rules (min-max normalised maps, float cuts, on device); the exact
# protocols of the paper, the released code and the WSOL benchmark are paper_loc,
# released_loc and wsol_box (camjax.protocols).
TABLE_LOC = "Localization error, camjax's min-max rule (layout of Zhou et al. 2016, Table 2)"
TABLE_WSOL = "WSOL accuracy, camjax's on-device rule (metrics of Choe et al. 2020)"


def valid(batch: Mapping[str, Any]) -> np.ndarray:
    """``[B]`` bool: False marks padding rows, which are never counted."""
    n = len(batch["label"])
    return np.asarray(batch.get("valid", np.ones(n, bool)), bool)


def gt(batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(bboxes [B,G,4], bbox_valid [B,G])`` of the batch."""
    return np.asarray(batch["bboxes"]), np.asarray(batch["bbox_valid"])


def gt_maps(out: Mapping[str, Any]) -> np.ndarray:
    """``[B, H, W]``: the ground-truth class's map of each image."""
    return np.asarray(out["gt_maps"])[:, 0]


def default_cam_thresholds(step: float = 0.01) -> np.ndarray:
    """The benchmark's CAM threshold grid ``0, step, 2 step, ... < 1`` (float64).

    ``step=0.01`` gives the 100 thresholds 0.00..0.99 of Choe et al.'s default
    ``cam_curve_interval``; pass ``0.001`` for the finer 1,000-point grid.
    """
    if not 0.0 < step <= 1.0:
        raise ValueError(f"threshold step must be in (0, 1], got {step}")
    n = int(np.ceil(1.0 / step - 1e-9))
    # Rounded so that 0.07 is reported as 0.07, not 0.07000000000000001.
    return np.round(np.arange(n, dtype=np.float64) * step, 12)


def check_thresholds(
    values: Sequence[float] | np.ndarray, name: str, *, allow_zero: bool = True
) -> np.ndarray:
    """A 1-D, strictly increasing float64 grid inside ``[0, 1]`` (``(0, 1]`` without zero).

    Kept in float64 for reporting; the device compares against its float32 rounding.
    """
    arr = np.asarray(values, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or inf: {arr}")
    low_ok = arr >= 0.0 if allow_zero else arr > 0.0
    if not np.all(low_ok & (arr <= 1.0)):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {bounds}, got {arr[~(low_ok & (arr <= 1.0))]}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return arr


def sample_valid(valid: jnp.ndarray | np.ndarray | None, batch: int) -> jnp.ndarray:
    """``valid`` as bool ``[batch]``; ``None`` means every example counts."""
    if valid is None:
        return jnp.ones((batch,), bool)
    valid = jnp.asarray(valid)
    if valid.shape != (batch,):
        raise ValueError(f"sample_valid must have shape ({batch},), got {valid.shape}")
    return valid.astype(bool)


def _kept(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    keep = np.asarray(keep, bool)
    return values if keep.all() else values[keep]  # no copy in the common case


@jax.jit
def _map_range(maps: jnp.ndarray, keep: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    # min/max propagate NaN and reach +-inf, so two reductions also catch non-finite values.
    kept = jnp.where(keep.reshape((-1,) + (1,) * (maps.ndim - 1)), maps, 0.0)
    return jnp.min(kept), jnp.max(kept)


def check_maps(values: jnp.ndarray, keep: jnp.ndarray) -> None:
    """Maps of the counted examples must be finite and normalised to ``[0, 1]``.

    The same requirement as the WSOL benchmark's ``check_scoremap_validity``: CAM
    thresholds are fractions of a normalised map, so NaN, inf, negative values or values
    above 1 would give a curve over the wrong thresholds. Padded examples are not checked.
    """
    if values.ndim != 3:
        raise ValueError(f"maps must be [B, H, W], got shape {values.shape}")
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(f"maps must be floating point, got {values.dtype}")
    if isinstance(values, np.ndarray):  # host arrays are checked where they are
        kept = _kept(values, keep)
        low, high = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 0.0)
    else:
        low, high = (float(x) for x in _map_range(values, keep))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"maps contain NaN or inf values (range [{low}, {high}])")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"maps must be normalised to [0, 1] (camjax.maps.normalize), got values in "
            f"[{low}, {high}]"
        )


def check_boxes(
    values: jnp.ndarray | np.ndarray,
    valid: jnp.ndarray | np.ndarray,
    name: str,
    image_hw: tuple[int, int] | None = None,
) -> None:
    """Valid boxes must be integer, well formed (``x0 <= x1``, ``y0 <= y1``) and inside
    the ``H x W`` image when its size is known; padded rows are not checked."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer pixel corners, got dtype {arr.dtype}")
    if arr.shape[-1:] != (4,):
        raise ValueError(f"{name} must end in an axis of 4 corners, got shape {arr.shape}")
    live = arr[np.broadcast_to(np.asarray(valid, bool), arr.shape[:-1])]
    x0, y0, x1, y1 = live.T
    if np.any((x1 < x0) | (y1 < y0)):
        raise ValueError(
            f"{name} hold malformed boxes (x1 < x0 or y1 < y0): {live[(x1 < x0) | (y1 < y0)][:5]}"
        )
    if image_hw is not None:
        h, w = image_hw
        out = (x0 < 0) | (y0 < 0) | (x1 > w - 1) | (y1 > h - 1)
        if np.any(out):
            raise ValueError(
                f"{name} reach outside the {h}x{w} image (corners must lie in "
                f"[0, {w - 1}] x [0, {h - 1}]): {live[out][:5]}"
            )


@jax.jit
def _mask_bad(masks: jnp.ndarray, keep: jnp.ndarray) -> jnp.ndarray:
    legal = (masks == MASK_BACKGROUND) | (masks == MASK_FOREGROUND) | (masks == MASK_IGNORE)
    return jnp.sum(keep[:, None, None] & ~legal)


def check_masks(values: jnp.ndarray, shape: tuple[int, ...], keep: jnp.ndarray) -> None:
    """Masks must be uint8 ``[B, H, W]`` like the maps, holding only 0, 1 and 255."""
    if values.dtype != jnp.uint8:
        raise TypeError(f"masks must be uint8 (0 bg, 1 fg, 255 ignore), got {values.dtype}")
    if values.shape != tuple(shape):
        raise ValueError(f"masks shape {values.shape} differs from maps shape {tuple(shape)}")
    if isinstance(values, np.ndarray):
        live = _kept(values, keep)
        bad = int(np.count_nonzero((live > MASK_FOREGROUND) & (live != MASK_IGNORE)))
    else:
        bad = int(_mask_bad(values, keep))
    if bad:
        raise ValueError(f"masks hold {bad} pixels other than 0 (bg), 1 (fg), 255 (ignore)")
