"""The one maps -> boxes pipeline: logits, top-k classes, their maps and boxes.

The network runs once; the maps of the top-k classes (or of given class ids, or of a
target's scores; on request also of the ground-truth class: the "GT-known" protocol) are
computed from that same pass, resized to the input size, normalised to [0, 1], and boxed
the paper's way (pixels at or above ``threshold`` times the map's maximum, box of the
largest connected component; Zhou et al., CVPR 2016, Sec. 3.2). How, is one frozen
:class:`LocalizeSpec`, built once by the caller. :func:`localize` runs it on a model in
one jitted call (``camjax.extract`` is a keyword front on it); :func:`localize_features`
runs plain CAM from features a network has already computed (training's evaluation);
:func:`input_maps` and :func:`box_masks` are its post-processing and box rule, for
callers that box on the host (bulk extraction on many devices).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax.boxes import kept_values_and_cuts, largest_component_box
from camjax.maps import NORMALIZE_MODES, UPSAMPLE_METHODS, is_concrete, normalize, upsample
from camjax.methods import METHODS, checks, programs
from camjax.methods.calling import check_images
from camjax.methods.compute import (
    apply_kwargs_for,
    bad_rows,
    cam_identity_check,
    first_cut,
    map_fn,
    split_target,
    static_items,
)
from camjax.methods.functions import bind
from camjax.methods.layer import Cut
from camjax.methods.nnx_models import is_nnx, split
from camjax.methods.smoothing import TTA, SmoothGrad
from camjax.methods.targets import ClassLogit, ClassProbability, check_class_ids, logits_of

CLASS_TARGETS = {"logit": ClassLogit, "probability": ClassProbability}

MAP_RESOLUTIONS: tuple[str, ...] = ("input", "feature")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class LocalizeSpec:
    """How maps and boxes are made: hashable, so one compiled program serves one spec.

    The fields are ``camjax.extract``'s keywords of the same names (see its docstring);
    ``apply_kwargs`` and ``options`` may be given as mappings (kept as sorted items,
    unhashable values by identity). Every field is checked here, so a bad value fails
    where the spec is built, with the field named.
    """

    method: str = "cam"
    top_k: int = 5
    class_ids: tuple[int, ...] | None = None  # the same classes' maps for every image
    threshold: float = 0.2
    normalization: str = "minmax"
    upsample_method: str = "bilinear"
    num_boxes: int | None = None
    map_resolution: str = "input"
    layer: Any = None
    classifier: Any = None
    reshape: bool | tuple[int, int] | None = None
    apply_kwargs: Any = None  # None: the model's default (apply_kwargs_for)
    eigen: bool = False
    tta: TTA | None = None
    smoothgrad: SmoothGrad | None = None
    options: Any = ()
    class_target: str = "logit"

    def __post_init__(self) -> None:
        for name, value, known in (
            ("method", self.method, tuple(sorted(METHODS))),
            ("normalization", self.normalization, NORMALIZE_MODES),
            ("upsample_method", self.upsample_method, UPSAMPLE_METHODS),
            ("class_target", self.class_target, tuple(CLASS_TARGETS)),
            ("map_resolution", self.map_resolution, MAP_RESOLUTIONS),
        ):
            if value not in known:
                if name == "method":
                    raise ValueError(f"unknown method {value!r}; known: {', '.join(known)}")
                raise ValueError(f"{name} must be one of {known}, got {value!r}")
        if not _count(self.top_k) or self.top_k < 1:
            raise ValueError(f"top_k must be an int >= 1 (at most the classes), got {self.top_k!r}")
        if self.num_boxes is not None and (not _count(self.num_boxes) or self.num_boxes < 0):
            raise ValueError(
                f"num_boxes must be an int >= 0 (at most the maps), got {self.num_boxes!r}"
            )
        if self.class_ids is not None:
            ids = tuple(self.class_ids)
            if not ids or not all(_count(i) for i in ids):
                raise ValueError(f"class_ids must be ints, at least one; got {ids!r}")
            object.__setattr__(self, "class_ids", ids)
        threshold = float(self.threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"threshold is a fraction of the map's max, in [0, 1]; got {threshold}"
            )
        set_ = object.__setattr__
        set_(self, "threshold", threshold)
        set_(self, "eigen", bool(self.eigen))
        if isinstance(self.reshape, list):
            set_(self, "reshape", tuple(self.reshape))
        if isinstance(self.apply_kwargs, Mapping):
            set_(self, "apply_kwargs", static_items(self.apply_kwargs))
        if self.options is None or isinstance(self.options, Mapping):
            set_(self, "options", static_items(self.options))

    def replace(self, **changes: Any) -> LocalizeSpec:
        """A copy with ``changes`` (checked as a new spec)."""
        return dataclasses.replace(self, **changes)


def input_maps(maps: jax.Array, size: tuple[int, int], spec: LocalizeSpec) -> jax.Array:
    """Maps resized to the input ``size`` and scaled to [0, 1] as ``spec`` says: the maps
    the boxes are found on."""
    return normalize(upsample(maps, size, spec.upsample_method), spec.normalization)


def box_masks(maps: jax.Array, spec: LocalizeSpec) -> jax.Array:
    """The pixels :func:`add_boxes` keeps (``map >= threshold * max``), ``bool [..., H, W]``;
    :func:`camjax.boxes.largest_box_np` boxes them on the host."""
    vals, cuts = kept_values_and_cuts(maps, jnp.asarray([spec.threshold], jnp.float32))
    return vals >= cuts[..., None]


def _outputs(m, c: Cut, size, gt_labels, class_ids, target, spec: LocalizeSpec, model=None,
             variables=None, apply_kwargs=None) -> tuple[dict, jax.Array, int]:  # fmt: skip
    """``(outputs without boxes, input-size maps to box, N)`` from a cut (traced)."""
    images = c.images
    b = images.shape[0]
    # Shape checks run here, at trace time: a plain call traces the model once, not per call.
    try:
        logits = logits_of(c.output)
    except ValueError:
        logits = None
    if logits is None or logits.ndim != 2 or logits.shape[0] != b:
        shape = None if logits is None else list(logits.shape)
        raise ValueError(f"extract needs a classifier's logits [B, C]; the model gives {shape}")
    num_classes = logits.shape[-1]
    if class_ids is None and not 1 <= spec.top_k <= num_classes:
        raise ValueError(f"top_k must be an int in [1, {num_classes}], got {spec.top_k!r}")
    # An image with a non-finite pixel gets NaN logits and zero maps on every backend
    # (XLA:CPU's YNNPACK reduce fusion in jaxlib 0.10 turns mean(relu(NaN)) into 0).
    finite = jnp.all(jnp.isfinite(images), axis=tuple(range(1, images.ndim)))
    logits = jnp.where(finite[:, None], logits.astype(jnp.float32), jnp.nan)
    softmax = jax.nn.softmax(logits, axis=-1)
    if class_ids is None:
        _, class_ids = jax.lax.top_k(logits, spec.top_k)
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
        target = CLASS_TARGETS[spec.class_target](ids)
    else:
        scores = target(c.output)
        if scores.ndim != 2 or scores.shape[0] != b:
            raise ValueError(f"target must give scores [B, N] with B = {b}, got {scores.shape}")
        out["scores"] = jnp.where(finite[:, None], scores.astype(jnp.float32), jnp.nan)
        n = out["scores"].shape[1]
    num_boxes = n if spec.num_boxes is None else spec.num_boxes
    if not 0 <= num_boxes <= n:
        raise ValueError(f"num_boxes must be an int in [0, {n}] (the maps), got {num_boxes!r}")
    fn = map_fn(
        m,
        model,
        variables,
        target,
        layer=spec.layer,
        classifier=spec.classifier,
        reshape=spec.reshape,
        apply_kwargs=apply_kwargs or {},
        eigen=spec.eigen,
        tta=spec.tta,
        smoothgrad=spec.smoothgrad,
        options={k: programs.unwrap(v) for k, v in spec.options},
        first_cut=c,
    )
    raw = fn(images)
    bad = bad_rows(images, target, num_classes)
    if not spec.eigen and spec.tta is None and spec.smoothgrad is None:
        cam_identity_check(m, c, target, jnp.where(bad[..., None, None], jnp.nan, raw), bad)
    # The raw maps of bad rows are NaN by contract (compute_maps); normalised, they are 0.
    raw = jnp.where(bad[..., None, None], 0.0, raw)
    maps = input_maps(raw, size, spec)
    # What is returned: the input-size maps, or the raw maps normalised where they live.
    shown = maps if spec.map_resolution == "input" else normalize(raw, spec.normalization)
    out["maps"] = shown[:, :n]
    if gt_labels is not None:
        out["gt_maps"] = shown[:, n:]
    # One box call for the maps and the GT map together.
    to_box = maps[:, :num_boxes]
    if gt_labels is not None:
        to_box = jnp.concatenate([to_box, maps[:, n:]], axis=1)
    return out, to_box, num_boxes


def add_boxes(out: dict[str, Any], to_box: Any, num_boxes: int, threshold: float) -> dict:
    """``out`` with ``boxes`` (of the first ``num_boxes`` maps of ``to_box``) and, when
    ``out`` has ``gt_maps``, ``gt_boxes`` (of the rest); jitted or on host arrays. A box is
    ``int32 (x0, y0, x1, y1)``, inclusive, of the largest 8-connected component of
    ``map >= threshold * max(map)`` (:func:`camjax.boxes.largest_component_box`); a map
    that keeps no pixel (e.g. an all-zero normalised map) gets ``(0, 0, 0, 0)``."""
    boxes = (
        largest_component_box(to_box, threshold)
        if to_box.shape[1]
        else jnp.zeros(to_box.shape[:2] + (4,), jnp.int32)
    )
    out["boxes"] = boxes[:, :num_boxes]
    if "gt_maps" in out:
        out["gt_boxes"] = boxes[:, num_boxes:]
    return out


def _build(get_model):
    pending = checks.Pending()

    def program(variables, images, gt_labels, class_ids, target, *, spec, apply_kwargs,
                target_static):  # fmt: skip
        model = get_model()
        kw = {k: programs.unwrap(v) for k, v in apply_kwargs}
        if target_static is not None:
            target = programs.unwrap(target_static)
        m = METHODS[spec.method]
        with checks.collecting() as flags:
            c = first_cut(m, model, variables, images, spec.layer, spec.classifier,
                          spec.reshape, kw)  # fmt: skip
            out, to_box, num_boxes = _outputs(m, c, images.shape[1:3], gt_labels, class_ids,
                                              target, spec, model, variables, kw)  # fmt: skip
            out = add_boxes(out, to_box, num_boxes, spec.threshold)
        pending.traced(tuple(msg for msg, _ in flags))
        return out, tuple(flag for _, flag in flags)

    return jax.jit(program, static_argnames=("spec", "apply_kwargs", "target_static")), pending


def localize(
    model: Any,
    variables: Any,
    images: Any,
    spec: LocalizeSpec,
    *,
    gt_labels: Any = None,
    class_ids: Any = None,
    target: Any = None,
) -> dict[str, jax.Array]:
    """``spec``'s logits, classes, maps and boxes of ``images`` in one jitted call.

    ``model``/``variables``: a Linen model and its variables, or an ``nnx.Module`` (split
    here; ``variables`` its ``nnx.State`` or ``None``). ``gt_labels [B]``, ``class_ids
    [B, N]`` (``[N]``: every image; default ``spec.class_ids``) and ``target`` are the
    per-call inputs; what comes
    back, and the NaN contract, are ``camjax.extract``'s (its docstring).
    """
    if is_nnx(model):
        graph, state = split(model)
        model, variables = graph, (state if variables is None else variables)
    model, variables = bind(model, variables)  # a two-function model's non-array leaves
    images = check_images(images)
    b = images.shape[0]
    if class_ids is None and spec.class_ids is not None:
        class_ids = np.asarray(spec.class_ids, np.int32)
    kw = apply_kwargs_for(model, None if spec.apply_kwargs is None else dict(spec.apply_kwargs))
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
    if target is not None and not callable(target):
        raise ValueError(f"target must be callable (output -> [B, N]), got {target!r}")
    if gt_labels is not None:
        gt_labels = jnp.asarray(gt_labels)
        if gt_labels.shape != images.shape[:1] or not jnp.issubdtype(gt_labels.dtype, jnp.integer):
            raise ValueError(
                f"gt_labels must be int [B] with B = {images.shape[0]}, "
                f"got {gt_labels.dtype} {tuple(gt_labels.shape)}"
            )
    dyn, stat = split_target(target) if target is not None else (None, None)
    prog, pending = programs.program("extract", model, _build)
    out, flags = prog(variables, images, gt_labels, class_ids, dyn, spec=spec,
                      apply_kwargs=static_items(kw), target_static=stat)  # fmt: skip
    pending.check(flags)
    # Id ranges need the number of classes, known once traced: checked after the call
    # (the work is wasted only when the ids are wrong). Traced ids cannot be checked.
    num_classes = out["logits"].shape[-1]
    if class_ids is not None and is_concrete(class_ids):
        check_class_ids(class_ids, b, num_classes)
    if gt_labels is not None and is_concrete(gt_labels) and gt_labels.size:
        gt_np = np.asarray(gt_labels)
        lo, hi = int(gt_np.min()), int(gt_np.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"gt_labels must lie in [0, {num_classes}), got [{lo}, {hi}]")
    return out


def _features_outputs(features, kernel, logits, finite, gt_labels, *, size, spec):
    # The images are not needed, only which ones are finite: a [B, 1, 1, 1] stand-in
    # carries that to the pipeline's NaN rules (bad_rows, the logits' mask).
    images = jnp.where(finite, 0.0, jnp.nan)[:, None, None, None]
    c = Cut(images, (logits, features), features, None, None, lambda: kernel, "head")
    out, to_box, _ = _outputs(METHODS["cam"], c, size, gt_labels, None, None, spec)
    return out, to_box


_features_program = jax.jit(_features_outputs, static_argnames=("size", "spec"))


def localize_features(
    features: Any,
    kernel: Any,
    logits: Any,
    finite: Any,
    gt_labels: Any,
    size: tuple[int, int],
    spec: LocalizeSpec,
) -> dict[str, np.ndarray]:
    """:func:`localize` for plain CAM on a network already run: its pooled layer's
    ``features [B, h, w, K]``, the classifier's ``kernel [K, C]``, ``logits [B, C]`` and
    ``finite [B]`` (which images have only finite pixels), ``gt_labels [B]`` (or ``None``),
    the input
    ``size``. The maps are computed in one program (on the arrays' devices, with no host
    callback), the boxes after it on the host: numpy outputs, as :func:`localize`'s."""
    if spec.method != "cam" or spec.eigen or spec.tta or spec.smoothgrad:
        raise ValueError(f"localize_features runs plain CAM only, got {spec}")
    out, to_box = _features_program(
        features, jnp.asarray(kernel, jnp.float32), logits, jnp.asarray(finite, bool),
        None if gt_labels is None else jnp.asarray(gt_labels), size=tuple(size), spec=spec,
    )  # fmt: skip
    out = {k: np.asarray(v) for k, v in out.items()}
    to_box = np.asarray(to_box)
    num_boxes = out["maps"].shape[1] if spec.num_boxes is None else spec.num_boxes
    out = add_boxes(out, to_box, num_boxes, spec.threshold)
    return {k: np.asarray(v) for k, v in out.items()}


__all__ = [
    "CLASS_TARGETS",
    "MAP_RESOLUTIONS",
    "LocalizeSpec",
    "add_boxes",
    "box_masks",
    "input_maps",
    "localize",
    "localize_features",
]
