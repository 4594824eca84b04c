"""Box overlap: inclusive pixel areas, IoU, best IoU over ground-truth boxes; jittable.

Conventions (docs/CONTRACTS.md): boxes are ``(x0, y0, x1, y1)`` inclusive integer pixel
corners; areas count pixels inclusively, ``(x1 - x0 + 1) * (y1 - y0 + 1)``, the "+1"
convention of the WSOL benchmark code (Choe et al., CVPR 2020,
clovaai/wsolevaluation ``calculate_multiple_iou``).
"""

from __future__ import annotations

import jax.numpy as jnp


def _require_int_boxes(boxes: jnp.ndarray, name: str) -> jnp.ndarray:
    boxes = jnp.asarray(boxes)
    if not jnp.issubdtype(boxes.dtype, jnp.integer):
        raise TypeError(
            f"{name} must hold integer pixel corners (x0, y0, x1, y1), got dtype {boxes.dtype}"
        )
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must end in an axis of 4 corners, got shape {boxes.shape}")
    return boxes.astype(jnp.int32)


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
    """Inclusive pixel area ``max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)`` (int32).

    A malformed box (``x1 < x0`` or ``y1 < y0``) has area 0 rather than a negative one.
    """
    boxes = _require_int_boxes(boxes, "boxes")
    w = jnp.maximum(boxes[..., 2] - boxes[..., 0] + 1, 0)
    h = jnp.maximum(boxes[..., 3] - boxes[..., 1] + 1, 0)
    return w * h


def iou(pred: jnp.ndarray, gt: jnp.ndarray) -> jnp.ndarray:
    """Pairwise intersection over union, ``[..., P, 4] x [..., G, 4] -> [..., P, G]``.

    ``IoU = |A n B| / (|A| + |B| - |A n B|)`` with inclusive pixel counts (the +1
    convention of clovaai/wsolevaluation). Leading axes broadcast. Where the union is
    empty (both boxes malformed) the IoU is 0, as in the benchmark code. The ratio of
    two exact int32 pixel counts is rounded once to float32, so comparisons against a
    float32 threshold are exact for unions below ~1e7 pixels.
    """
    pred = _require_int_boxes(pred, "pred")
    gt = _require_int_boxes(gt, "gt")
    for name, boxes in (("pred", pred), ("gt", gt)):
        if boxes.ndim < 2:  # one box is [1, 4], not [4]: the P / G axis is required
            raise ValueError(
                f"{name} must be [..., N, 4] (a list of boxes), got shape {boxes.shape}; "
                "pass one box as [[x0, y0, x1, y1]]"
            )
    p = pred[..., :, None, :]
    g = gt[..., None, :, :]
    iw = jnp.minimum(p[..., 2], g[..., 2]) - jnp.maximum(p[..., 0], g[..., 0]) + 1
    ih = jnp.minimum(p[..., 3], g[..., 3]) - jnp.maximum(p[..., 1], g[..., 1]) + 1
    inter = jnp.maximum(iw, 0) * jnp.maximum(ih, 0)
    union = box_area(p) + box_area(g) - inter
    ratio = inter.astype(jnp.float32) / jnp.maximum(union, 1).astype(jnp.float32)
    return jnp.where(union > 0, ratio, 0.0)


def max_iou(
    pred: jnp.ndarray,
    gt: jnp.ndarray,
    gt_valid: jnp.ndarray | None = None,
    pred_valid: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Best IoU of each predicted box over the valid ground-truth boxes: ``[..., P]``.

    ``max_g valid_g * IoU(pred_p, gt_g)``: a prediction is right if it matches any
    ground-truth box (ILSVRC val images have several). Padded ground-truth rows
    (``gt_valid`` False) never match. Defined results: no valid ground-truth box -> 0;
    an invalid prediction (``pred_valid`` False) -> 0. Since every IoU threshold used
    here is > 0, an IoU of 0 is never counted as a hit, so an image without a
    ground-truth box is counted wrong, never right.
    """
    overlaps = iou(pred, gt)
    if gt_valid is not None:
        overlaps = jnp.where(jnp.asarray(gt_valid, bool)[..., None, :], overlaps, 0.0)
    best = jnp.max(overlaps, axis=-1, initial=0.0)
    if pred_valid is not None:
        best = jnp.where(jnp.asarray(pred_valid, bool), best, 0.0)
    return best
