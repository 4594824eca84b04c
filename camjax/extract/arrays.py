"""``camjax.extract``: logits, top-k classes, their maps and boxes of images in memory.

A keyword front on :func:`camjax.localize.localize`: the keywords become one
:class:`~camjax.localize.LocalizeSpec` (the same names), the rest are per-call inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from camjax.localize import LocalizeSpec, localize
from camjax.methods.compute import MISSING
from camjax.methods.nnx_models import is_nnx
from camjax.methods.smoothing import TTA, SmoothGrad


def extract(
    model: Any,
    variables: Any,
    images: Any = MISSING,
    top_k: int = 5,
    *,
    method: str = "cam",
    gt_labels: jax.Array | None = None,
    threshold: float = 0.2,
    normalization: str = "minmax",
    upsample_method: str = "bilinear",
    num_boxes: int | None = None,
    map_resolution: str = "input",
    layer: str | None = None,
    classifier: str | None = None,
    reshape: bool | tuple[int, int] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    class_ids: Any = None,
    target: Any = None,
    eigen: bool = False,
    tta: TTA | None = None,
    smoothgrad: SmoothGrad | None = None,
    options: Mapping[str, Any] | None = None,
    class_target: str = "logit",
) -> dict[str, jax.Array]:
    """Classify ``images`` and localise the top-k classes (or given classes or a target),
    in one jitted call.

    Args:
      model: any Linen classifier, called as ``model.apply(variables, images,
        **apply_kwargs)``, or an ``nnx.Module`` (then no ``variables``:
        ``extract(model, images, top_k, ...)``; ``layer`` is an attribute path, see
        :mod:`camjax.methods.nnx_models`), or any JAX model as two functions,
        :class:`camjax.methods.Functions` (then ``variables`` are its params, and no
        ``layer``); its output is the logits ``[B, C]`` or holds
        them (:func:`camjax.methods.targets.logits_of`). A camjax ``CAMNet`` needs no
        ``layer``. The model is closed over, not hashed: any field types work, and
        repeated calls reuse one compiled program (:mod:`camjax.methods.programs`).
      variables: its variables (``params``, and ``batch_stats`` for BN backbones).
      images: ``[B, H, W, C]`` float, normalised for the model (integer dtypes such as raw
        uint8 pixels are refused; see ``WeightsSpec.preprocess``).
      top_k: classes per image, by logit.
      method: a key of :data:`camjax.methods.METHODS` (``"cam"``, ``"gradcam"``, ...).
      gt_labels: optional ``[B]`` int class ids: adds the ground-truth class's map and box.
      threshold: box threshold, a fraction of each map's maximum (the paper: 0.2).
      normalization: ``"minmax"`` or ``"max"`` (:func:`camjax.maps.normalize`).
      upsample_method: ``"bilinear"`` or ``"bicubic"`` (:func:`camjax.maps.upsample`).
      num_boxes: box only the first ``num_boxes`` maps (default: all of them).
      map_resolution: ``"input"`` returns ``maps``/``gt_maps`` upsampled to the input size;
        ``"feature"`` returns them normalised at the method's own resolution
        ``[B, k, h, w]`` (the feature map's; the input size for ``backprop``), which is
        what a store of many maps wants. Boxes are computed on the input-size maps
        either way, so they are the same for both.
      layer, classifier, reshape, apply_kwargs: where the map lives, for any Linen model
        (:func:`camjax.methods.cut`); ``layer`` defaults to ``"head"`` for a CAMNet.
      class_ids: ``[B, N]`` (or ``[N]`` for every image) ints: maps of these classes
        instead of the top-k; ``class_ids``/``probs`` in the output are then these.
      target: a target (:mod:`camjax.methods.targets`, ``output -> scores [B, N]``):
        maps of its ``N`` scores; ``class_ids``/``probs`` stay the top-k classification
        and ``scores [B, N]`` is added. Not with ``class_ids`` or ``gt_labels``.
      eigen, tta, smoothgrad: smoothing (:mod:`camjax.methods.smoothing`).
      options: the method's own keywords, e.g. ``{"chunk_size": 8}`` for Score-CAM.
      class_target: what a class's map explains: ``"logit"`` (the papers' ``S_c``) or
        ``"probability"`` (``softmax(S)_c``). Score-CAM always scores by probability.

    Returns:
      ``logits [B, C]``, ``class_ids [B, k]`` int32 (descending logit), ``probs [B, k]``
      (softmax probabilities of those classes), ``maps [B, k, H, W]`` (input size, in
      [0, 1]; ``[B, k, h, w]`` with ``map_resolution="feature"``), ``boxes
      [B, num_boxes, 4]`` int32 inclusive ``(x0, y0, x1, y1)``; with ``gt_labels``:
      ``gt_maps [B, 1, H, W]`` and ``gt_boxes [B, 1, 4]``; with ``target``: ``scores``.

    An image with a NaN or infinite pixel gets NaN ``logits``, ``probs`` (and
    ``scores``), all-zero maps and ``(0, 0, 0, 0)`` boxes, whatever the backend does with
    NaN (XLA:CPU's fused ``mean(relu(x))`` gives 0 for NaN); the other images of the
    batch are unaffected. A NaN that arises in a finite image's maps is handled as
    :func:`camjax.maps.normalize` documents (such pixels are 0).
    """
    state = variables
    if is_nnx(model):
        from flax import nnx

        if not isinstance(variables, nnx.State):  # extract(model, images, top_k)
            if images is not MISSING:
                top_k = images
            images, state = variables, None
    if images is MISSING:
        raise TypeError(
            "extract needs images: extract(model, variables, images, top_k) "
            "(NNX: extract(model, images, top_k))"
        )
    if class_ids is not None and np.ndim(class_ids):  # as many maps as ids, whatever top_k
        top_k = max(1, int(np.shape(class_ids)[-1]))
    spec = LocalizeSpec(
        method=method, top_k=top_k, threshold=threshold, normalization=normalization,
        upsample_method=upsample_method, num_boxes=num_boxes, map_resolution=map_resolution,
        layer=layer, classifier=classifier, reshape=reshape, apply_kwargs=apply_kwargs,
        eigen=eigen, tta=tta, smoothgrad=smoothgrad, options=options,
        class_target=class_target,
    )  # fmt: skip
    return localize(model, state, images, spec, gt_labels=gt_labels, class_ids=class_ids,
                    target=target)  # fmt: skip


__all__ = ["extract"]
