"""``camjax.extract``: logits, top-k classes, their maps and boxes in one jitted call.

The network runs once; the maps of the top-k classes (and, on request, of the
ground-truth class: the "GT-known" protocol) are computed from that same pass, resized
to the input size, normalised to [0, 1], and boxed the paper's way (pixels at or above
``threshold`` times the map's maximum, box of the largest connected component; Zhou et
al., CVPR 2016, Sec. 3.2). The module is named ``extraction`` because
``python -m camjax.extract`` is the command-line entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax.boxes import largest_component_box
from camjax.cam import NORMALIZE_MODES, UPSAMPLE_METHODS, _is_concrete, normalize, upsample
from camjax.methods import METHODS, checks, programs
from camjax.methods.calling import check_images
from camjax.methods.compute import (
    MAP_OPTIONS,
    MISSING,
    _apply_kwargs,
    bad_rows,
    cam_identity_check,
    first_cut,
    map_fn,
    split_target,
    static_items,
)
from camjax.methods.nnx_models import is_nnx, split
from camjax.methods.smoothing import TTA, SmoothGrad
from camjax.methods.targets import ClassLogit, ClassProbability, check_class_ids, logits_of

_STATIC = (
    "top_k",
    "threshold",
    "normalization",
    "upsample_method",
    "num_boxes",
    "map_resolution",
    "class_target",
    *MAP_OPTIONS,
)

CLASS_TARGETS = {"logit": ClassLogit, "probability": ClassProbability}

MAP_RESOLUTIONS: tuple[str, ...] = ("input", "feature")


def map_boxes(maps: jax.Array, threshold: float) -> jax.Array:
    """One box per map, ``int32 [..., 4]`` inclusive ``(x0, y0, x1, y1)``: the box of the
    largest 8-connected component of ``map >= threshold * max(map)``
    (:func:`camjax.boxes.largest_component_box`, backend chosen by platform). A map that
    keeps no pixel (e.g. an all-zero normalised map) gets ``(0, 0, 0, 0)``."""
    return largest_component_box(maps, threshold)


def _build(get_model):
    pending = checks.Pending()

    def program(variables, images, gt_labels, class_ids, target, **static):
        model = get_model()
        with checks.collecting() as flags:
            out = _extract(model, variables, images, gt_labels, class_ids, target, **static)
        pending.traced(tuple(msg for msg, _ in flags))
        return out, tuple(flag for _, flag in flags)

    return jax.jit(program, static_argnames=_STATIC), pending


def _extract(
    model: Any,
    variables: Any,
    images: jax.Array,
    gt_labels: jax.Array | None,
    class_ids: jax.Array | None,
    target: Any,
    *,
    top_k: int | None,
    method: str,
    threshold: float,
    normalization: str,
    upsample_method: str,
    num_boxes: int | None,
    map_resolution: str,
    layer: Any,
    classifier: Any,
    reshape: Any,
    apply_kwargs: tuple[tuple[str, Any], ...],
    eigen: bool,
    tta: TTA | None,
    smoothgrad: SmoothGrad | None,
    options: tuple[tuple[str, Any], ...],
    class_target: str,
    target_static: Any,
) -> dict[str, jax.Array]:
    m = METHODS[method]
    kw = {k: programs.unwrap(v) for k, v in apply_kwargs}
    if target_static is not None:
        target = programs.unwrap(target_static)
    b = images.shape[0]
    c = first_cut(m, model, variables, images, layer, classifier, reshape, kw)
    # Shape checks run here, at trace time: a plain call traces the model once, not per call.
    try:
        logits = logits_of(c.output)
    except ValueError:
        logits = None
    if logits is None or logits.ndim != 2 or logits.shape[0] != b:
        shape = None if logits is None else list(logits.shape)
        raise ValueError(f"extract needs a classifier's logits [B, C]; the model gives {shape}")
    num_classes = logits.shape[-1]
    if class_ids is None and not 1 <= top_k <= num_classes:
        raise ValueError(f"top_k must be an int in [1, {num_classes}], got {top_k!r}")
    # An image with a non-finite pixel gets NaN logits and zero maps on every backend
    # (XLA:CPU's YNNPACK reduce fusion in jaxlib 0.10 turns mean(relu(NaN)) into 0).
    finite = jnp.all(jnp.isfinite(images), axis=tuple(range(1, images.ndim)))
    logits = jnp.where(finite[:, None], logits.astype(jnp.float32), jnp.nan)
    softmax = jax.nn.softmax(logits, axis=-1)
    if class_ids is None:
        _, class_ids = jax.lax.top_k(logits, top_k)
    class_ids = class_ids.astype(jnp.int32)
    valid = (class_ids >= 0) & (class_ids < num_classes) & finite[:, None]
    out = {
        "logits": logits,
        "class_ids": class_ids,
        "probs": jnp.where(
            valid, jnp.take_along_axis(softmax, class_ids, axis=-1, mode="clip"), jnp.nan
        ),
    }
    n = class_ids.shape[1]
    if target is None:
        ids = class_ids
        if gt_labels is not None:
            ids = jnp.concatenate([ids, gt_labels.astype(ids.dtype)[:, None]], axis=1)
        target = CLASS_TARGETS[class_target](ids)
    else:
        scores = target(c.output)
        if scores.ndim != 2 or scores.shape[0] != b:
            raise ValueError(f"target must give scores [B, N] with B = {b}, got {scores.shape}")
        out["scores"] = jnp.where(finite[:, None], scores.astype(jnp.float32), jnp.nan)
        n = out["scores"].shape[1]
    if num_boxes is None:
        num_boxes = n
    if not 0 <= num_boxes <= n:
        raise ValueError(f"num_boxes must be an int in [0, {n}] (the maps), got {num_boxes!r}")
    fn = map_fn(
        m,
        model,
        variables,
        target,
        layer=layer,
        classifier=classifier,
        reshape=reshape,
        apply_kwargs=kw,
        eigen=eigen,
        tta=tta,
        smoothgrad=smoothgrad,
        options={k: programs.unwrap(v) for k, v in options},
        first_cut=c,
    )
    raw = fn(images)
    bad = bad_rows(images, target, num_classes)
    if not eigen and tta is None and smoothgrad is None:
        cam_identity_check(m, c, target, jnp.where(bad[..., None, None], jnp.nan, raw), bad)
    # The raw maps of bad rows are NaN by contract (compute_maps); normalised, they are 0.
    raw = jnp.where(bad[..., None, None], 0.0, raw)
    maps = normalize(upsample(raw, images.shape[1:3], upsample_method), normalization)
    # What is returned: the input-size maps, or the raw maps normalised where they live.
    shown = maps if map_resolution == "input" else normalize(raw, normalization)
    out["maps"] = shown[:, :n]
    # One box call for the maps and the GT map together.
    to_box = maps[:, :num_boxes]
    if gt_labels is not None:
        to_box = jnp.concatenate([to_box, maps[:, n:]], axis=1)
    boxes = (
        map_boxes(to_box, threshold)
        if to_box.shape[1]
        else jnp.zeros(to_box.shape[:2] + (4,), jnp.int32)
    )
    out["boxes"] = boxes[:, :num_boxes]
    if gt_labels is not None:
        out["gt_maps"] = shown[:, n:]
        out["gt_boxes"] = boxes[:, num_boxes:]
    return out


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
        :mod:`camjax.methods.nnx_models`); its output is the logits ``[B, C]`` or holds
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
      normalization: ``"minmax"`` or ``"max"`` (:func:`camjax.cam.normalize`).
      upsample_method: ``"bilinear"`` or ``"bicubic"`` (:func:`camjax.cam.upsample`).
      num_boxes: box only the first ``num_boxes`` maps (default: all of them).
      map_resolution: ``"input"`` returns ``maps``/``gt_maps`` upsampled to the input size;
        ``"feature"`` returns them normalised at the method's own resolution
        ``[B, k, h, w]`` (the feature map's; the input size for ``backprop``), which is
        what a store of many maps wants. Boxes are computed on the input-size maps
        either way, so they are the same for both.
      layer, classifier, reshape, apply_kwargs: where the map lives, for any Linen model
        (:func:`camjax.methods.layer.cut`); ``layer`` defaults to ``"head"`` for a CAMNet.
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
    :func:`camjax.cam.normalize` documents (such pixels are 0).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(sorted(METHODS))}")
    if normalization not in NORMALIZE_MODES:
        raise ValueError(f"normalization must be one of {NORMALIZE_MODES}, got {normalization!r}")
    if upsample_method not in UPSAMPLE_METHODS:
        raise ValueError(
            f"upsample_method must be one of {UPSAMPLE_METHODS}, got {upsample_method!r}"
        )
    if class_target not in CLASS_TARGETS:
        raise ValueError(
            f"class_target must be one of {tuple(CLASS_TARGETS)}, got {class_target!r}"
        )
    if map_resolution not in MAP_RESOLUTIONS:
        raise ValueError(f"map_resolution must be one of {MAP_RESOLUTIONS}, got {map_resolution!r}")
    if is_nnx(model):
        from flax import nnx

        if isinstance(variables, nnx.State):  # extract(model, state, images, top_k)
            model = split(model)[0]
        else:  # extract(model, images, top_k): the arguments shift by one
            if images is not MISSING:
                top_k = images
            images = variables
            model, variables = split(model)
    if images is MISSING:
        raise TypeError(
            "extract needs images: extract(model, variables, images, top_k) "
            "(NNX: extract(model, images, top_k))"
        )
    images = check_images(images)
    b = images.shape[0]
    kw = _apply_kwargs(model, apply_kwargs)
    if class_ids is not None and target is not None:
        raise ValueError("pass class_ids or target, not both")
    if target is not None and gt_labels is not None:
        raise ValueError("gt_labels adds a class map; it does not combine with a target")
    if class_ids is not None:
        class_ids = jnp.asarray(class_ids)
        if class_ids.ndim == 1:
            class_ids = jnp.broadcast_to(class_ids, (b,) + class_ids.shape)
        class_ids = check_class_ids(class_ids, b, None).astype(jnp.int32)
        if class_ids.shape[1] == 0:
            raise ValueError("class_ids is empty: give at least one class id per image")
        top_k = class_ids.shape[1]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1 (at most the classes), got {top_k!r}")
    if target is not None and not callable(target):
        raise ValueError(f"target must be callable (output -> [B, N]), got {target!r}")
    if num_boxes is not None and (
        not isinstance(num_boxes, int) or isinstance(num_boxes, bool) or num_boxes < 0
    ):
        raise ValueError(f"num_boxes must be an int >= 0 (at most the maps), got {num_boxes!r}")
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the map's max, in [0, 1]; got {threshold}")
    if gt_labels is not None:
        gt_labels = jnp.asarray(gt_labels)
        if gt_labels.shape != images.shape[:1] or not jnp.issubdtype(gt_labels.dtype, jnp.integer):
            raise ValueError(
                f"gt_labels must be int [B] with B = {images.shape[0]}, "
                f"got {gt_labels.dtype} {tuple(gt_labels.shape)}"
            )
    dyn, stat = split_target(target) if target is not None else (None, None)
    prog, pending = programs.program("extract", model, _build)
    out, flags = prog(
        variables,
        images,
        gt_labels,
        class_ids,
        dyn,
        top_k=top_k,
        method=method,
        threshold=threshold,
        normalization=normalization,
        upsample_method=upsample_method,
        num_boxes=num_boxes,
        map_resolution=map_resolution,
        layer=layer,
        classifier=classifier,
        reshape=tuple(reshape) if isinstance(reshape, list) else reshape,
        apply_kwargs=static_items(kw),
        eigen=bool(eigen),
        tta=tta,
        smoothgrad=smoothgrad,
        options=static_items(options),
        class_target=class_target,
        target_static=stat,
    )
    pending.check(flags)
    # Id ranges need the number of classes, known once traced: checked after the call
    # (the work is wasted only when the ids are wrong). Traced ids cannot be checked.
    num_classes = out["logits"].shape[-1]
    if class_ids is not None and _is_concrete(class_ids):
        check_class_ids(class_ids, b, num_classes)
    if gt_labels is not None and _is_concrete(gt_labels) and gt_labels.size:
        gt_np = np.asarray(gt_labels)
        lo, hi = int(gt_np.min()), int(gt_np.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"gt_labels must lie in [0, {num_classes}), got [{lo}, {hi}]")
    return out


__all__ = ["MAP_RESOLUTIONS", "extract", "map_boxes"]
