"""CAM's relatives as pure functions, and the method registry ``METHODS``.

Every method has the signature ``fn(model, variables, images, class_ids) -> maps``:
``images [B, H, W, 3]`` (normalised for the model), ``class_ids [B, N]`` (each image its
own classes), ``maps [B, N, h, w]`` raw (un-normalised) at the feature map's resolution,
or ``[B, N, H, W]`` for ``backprop``. The model is any ``camjax.models`` CAM network
(``CAMNet``); it runs with ``train=False`` so that BatchNorm uses its running statistics
and every image's map depends on that image alone.

Where the map ``A`` lives (``layer``). Gradients ``G = dS_c / dA`` come from ``jax.vjp``
of the class score (the pre-softmax logit ``S_c``) w.r.t. ``A``, no hooks:

- ``layer="head"`` (default): ``A`` is the map the global pooling reads (the second
  output of ``model.apply``), the map CAM uses. The network after ``A`` is then
  ``S = pool(A) @ W + b``, so for a GAP network ``G = W[:, c] / (h * w)`` at every
  pixel: Grad-CAM equals CAM after ReLU up to the factor ``1 / (h * w)`` and HiResCAM
  equals ``CAM / (h * w)``. For a GMP network ``G`` is ``W[:, c]`` at each channel's
  arg-max pixel and 0 elsewhere.
- ``layer="backbone"``: ``A`` is the backbone output, before the head's extra convs;
  the head (convs, pooling, dense) is differentiated as a whole.

Maps follow their papers' definitions, ReLU included where the paper has it (Grad-CAM,
Grad-CAM++, Score-CAM, LayerCAM) and not where it has none (CAM, HiResCAM, XGrad-CAM).
Compose with :func:`camjax.cam.upsample` and :func:`camjax.cam.normalize` for display.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from camjax.cam import _is_concrete, class_activation_maps, normalize, upsample
from camjax.models import classifier
from camjax.models.head import POOLS

LAYERS: tuple[str, ...] = ("head", "backbone")

_HIGHEST = jax.lax.Precision.HIGHEST


class Split(NamedTuple):
    """A network cut at the map ``A``: ``logits == head_fn(features)``."""

    logits: jax.Array  # [B, C] float32
    features: jax.Array  # [B, h, w, K] float32, the map A
    head_fn: Callable[[jax.Array], jax.Array]  # A -> logits [B, C] float32


def split(model: Any, variables: Any, images: jax.Array, layer: str = "head") -> Split:
    """Run the network once and return it cut at ``layer`` (see the module docstring)."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "pool"):
        raise ValueError(
            f"model must be a camjax CAM network with a .head (CAMHead), got {type(model)}"
        )
    if layer == "head":
        logits, features = model.apply(variables, images, train=False)
        kernel, bias = classifier(variables)
        pool = POOLS[head.pool]
        kernel, bias = kernel.astype(jnp.float32), bias.astype(jnp.float32)

        def head_fn(a: jax.Array) -> jax.Array:
            return jnp.dot(pool(a), kernel, precision=_HIGHEST) + bias

    else:
        features = model.apply(variables, images, method=lambda m, x: m.backbone(x, train=False))
        head_vars = {"params": variables["params"]["head"]}

        def head_fn(a: jax.Array) -> jax.Array:
            return head.apply(head_vars, a)[0].astype(jnp.float32)

        logits = head_fn(features.astype(jnp.float32))
    return Split(logits.astype(jnp.float32), features.astype(jnp.float32), head_fn)


def _check_class_ids(class_ids: jax.Array, batch: int, num_classes: int) -> jax.Array:
    class_ids = jnp.asarray(class_ids)
    if class_ids.ndim != 2 or class_ids.shape[0] != batch:
        raise ValueError(
            f"class_ids must be [B, N] with B = {batch}, got shape {tuple(class_ids.shape)}"
        )
    if not jnp.issubdtype(class_ids.dtype, jnp.integer):
        raise ValueError(f"class_ids must be integers, got dtype {class_ids.dtype}")
    if _is_concrete(class_ids) and class_ids.size:
        ids_np = np.asarray(class_ids)
        lo, hi = int(ids_np.min()), int(ids_np.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"class_ids must lie in [0, {num_classes}), got [{lo}, {hi}]")
    return class_ids


def _per_class_vjp(fn: Callable, x: jax.Array, class_ids: jax.Array) -> jax.Array:
    """``dS_c / dx`` for each image's own classes: ``[B, N, *x.shape[1:]]``.

    One forward, then one backward per class slot ``n`` (vmapped): the cotangent is the
    one-hot of ``class_ids[b, n]`` in row ``b``, i.e. the gradient of
    ``sum_b S_{class_ids[b, n]}(x_b)``, which for images processed independently is each
    image's own gradient.
    """
    logits, vjp_fn = jax.vjp(fn, x)
    onehots = jax.nn.one_hot(class_ids, logits.shape[-1], dtype=logits.dtype)
    (grads,) = jax.vmap(vjp_fn, in_axes=1, out_axes=1)(onehots)
    return grads


def _feature_grads(s: Split, class_ids: jax.Array) -> jax.Array:
    return _per_class_vjp(s.head_fn, s.features, class_ids)


def _weighted_sum(a: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_k weights[b, n, k] * a[b, :, :, k]`` -> ``[B, N, h, w]``."""
    return jnp.einsum("bhwk,bnk->bnhw", a, weights, precision=_HIGHEST)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


# --- method cores: (model, variables, images, split, class_ids) -> maps -----------------


def _cam_core(model, variables, images, s: Split, class_ids):
    del model, images
    kernel, _ = classifier(variables)
    return class_activation_maps(s.features, kernel, class_ids)


def _gradcam_core(model, variables, images, s: Split, class_ids):
    g = _feature_grads(s, class_ids)
    weights = g.mean(axis=(2, 3))
    return jax.nn.relu(_weighted_sum(s.features, weights))


def _gradcampp_core(model, variables, images, s: Split, class_ids):
    g = _feature_grads(s, class_ids)
    a = s.features[:, None]  # [B, 1, h, w, K]
    g2 = g * g
    denom = 2.0 * g2 + a.sum(axis=(2, 3), keepdims=True) * g2 * g
    alpha = _safe_div(g2, denom)
    weights = (alpha * jax.nn.relu(g)).sum(axis=(2, 3))
    return jax.nn.relu(_weighted_sum(s.features, weights))


def _hirescam_core(model, variables, images, s: Split, class_ids):
    g = _feature_grads(s, class_ids)
    return jnp.einsum("bhwk,bnhwk->bnhw", s.features, g, precision=_HIGHEST)


def _xgradcam_core(model, variables, images, s: Split, class_ids):
    g = _feature_grads(s, class_ids)
    a = s.features
    share = _safe_div(a, a.sum(axis=(1, 2), keepdims=True))
    weights = jnp.einsum("bhwk,bnhwk->bnk", share, g, precision=_HIGHEST)
    return _weighted_sum(a, weights)


def _layercam_core(model, variables, images, s: Split, class_ids):
    g = _feature_grads(s, class_ids)
    return jax.nn.relu(
        jnp.einsum("bhwk,bnhwk->bnhw", s.features, jax.nn.relu(g), precision=_HIGHEST)
    )


def _scorecam_core(model, variables, images, s: Split, class_ids, chunk_size: int = 16):
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    a = s.features
    b, h, w, k = a.shape
    size = images.shape[1:3]
    chunk = min(chunk_size, k)
    n_chunks = -(-k // chunk)
    # Zero channels pad K to whole chunks; their maps are zero so they add nothing.
    a_pad = jnp.pad(a, ((0, 0), (0, 0), (0, 0), (0, n_chunks * chunk - k)))
    chunks = a_pad.reshape(b, h, w, n_chunks, chunk).transpose(3, 0, 4, 1, 2)

    def chunk_scores(a_chunk: jax.Array) -> jax.Array:  # [B, chunk, h, w] -> [B, chunk, N]
        masks = normalize(upsample(a_chunk, size, "bilinear"), "minmax")
        masked = images[:, None] * masks[..., None].astype(images.dtype)
        logits, _ = model.apply(
            variables, masked.reshape((b * chunk,) + images.shape[1:]), train=False
        )
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(b, chunk, -1)
        return jnp.take_along_axis(probs, class_ids[:, None, :], axis=-1)

    # lax.map runs the chunks one after another: memory stays at B * chunk images.
    scores = jax.lax.map(chunk_scores, chunks)  # [n_chunks, B, chunk, N]
    scores = scores.transpose(1, 0, 2, 3).reshape(b, n_chunks * chunk, -1)[:, :k]
    return jax.nn.relu(jnp.einsum("bhwk,bkn->bnhw", a, scores, precision=_HIGHEST))


def _backprop_core(model, variables, images, s: Split, class_ids):
    del s

    def scores(x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False)[0].astype(jnp.float32)

    g = _per_class_vjp(scores, images, class_ids)  # [B, N, H, W, 3]
    return jnp.abs(g).max(axis=-1)


# --- public methods ----------------------------------------------------------------------


def _run(core, model, variables, images, class_ids, layer="head", **kw):
    s = split(model, variables, images, layer)
    class_ids = _check_class_ids(class_ids, images.shape[0], s.logits.shape[-1])
    return core(model, variables, images, s, class_ids, **kw)


def cam(model: Any, variables: Any, images: jax.Array, class_ids: jax.Array) -> jax.Array:
    """CAM: ``M_c = sum_k w_kc A_k`` with ``w`` the dense classifier's kernel.

    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016.
    """
    return _run(_cam_core, model, variables, images, class_ids)


def gradcam(model, variables, images, class_ids, *, layer: str = "head") -> jax.Array:
    """Grad-CAM: ``M_c = ReLU(sum_k a_kc A_k)``, ``a_kc = mean_ij dS_c / dA_k(i, j)``.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017, Eq. 1-2.
    """
    return _run(_gradcam_core, model, variables, images, class_ids, layer)


def gradcampp(model, variables, images, class_ids, *, layer: str = "head") -> jax.Array:
    """Grad-CAM++: ``M_c = ReLU(sum_k w_kc A_k)``, ``w_kc = sum_ij alpha_kij ReLU(g_kij)``,
    ``alpha_kij = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)`` with ``g = dS_c / dA_k(i, j)``.

    Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for
    Deep Convolutional Networks", WACV 2018, Eq. 19 (the exponential-score closed form,
    higher derivatives as powers of the first). The paper's ``exp(S_c)`` factor in ``w``
    is a positive constant per map and is dropped; ``alpha = 0`` where the denominator is 0.
    """
    return _run(_gradcampp_core, model, variables, images, class_ids, layer)


def hirescam(model, variables, images, class_ids, *, layer: str = "head") -> jax.Array:
    """HiResCAM: ``M_c(i, j) = sum_k dS_c / dA_k(i, j) * A_k(i, j)`` (no ReLU).

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", arXiv:2011.08891, 2020.
    """
    return _run(_hirescam_core, model, variables, images, class_ids, layer)


def xgradcam(model, variables, images, class_ids, *, layer: str = "head") -> jax.Array:
    """XGrad-CAM: ``M_c = sum_k w_kc A_k``,
    ``w_kc = sum_ij (A_k(i, j) / sum_ab A_k(a, b)) dS_c / dA_k(i, j)`` (no ReLU;
    ``w_kc = 0`` for a channel summing to 0).

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
    CNNs", BMVC 2020.
    """
    return _run(_xgradcam_core, model, variables, images, class_ids, layer)


def layercam(model, variables, images, class_ids, *, layer: str = "head") -> jax.Array:
    """LayerCAM: ``M_c(i, j) = ReLU(sum_k ReLU(dS_c / dA_k(i, j)) A_k(i, j))``.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 30, 2021, Eq. 4-5.
    """
    return _run(_layercam_core, model, variables, images, class_ids, layer)


def scorecam(
    model, variables, images, class_ids, *, layer: str = "head", chunk_size: int = 16
) -> jax.Array:
    """Score-CAM: ``M_c = ReLU(sum_k s_kc A_k)``, ``s_kc = softmax(f(X * H_k))_c`` where
    ``H_k`` is ``A_k`` bilinearly upsampled to the input size and min-max normalised.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020. As the authors' released code does, the score is the
    class probability of the masked image with no baseline subtracted. The images are
    masked as given (already normalised for the model), so masked-out pixels are 0.
    Costs ``K`` extra forward passes per image, run as ``ceil(K / chunk_size)`` passes of
    ``B * chunk_size`` images each, one after another, to bound memory.
    """
    return _run(_scorecam_core, model, variables, images, class_ids, layer, chunk_size=chunk_size)


def backprop(model: Any, variables: Any, images: jax.Array, class_ids: jax.Array) -> jax.Array:
    """Gradient saliency: ``M_c(i, j) = max_ch |dS_c / dX(i, j, ch)|``, input resolution.

    Simonyan et al., "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR Workshop 2014, Sec. 3.1; the
    "Backprop" baseline of Zhou et al. (CVPR 2016). Returns ``[B, N, H, W]``.
    """
    _check_class_ids(class_ids, images.shape[0], classifier(variables)[0].shape[-1])
    return _backprop_core(model, variables, images, None, jnp.asarray(class_ids))


# name -> fn(model, variables, images, class_ids) -> raw maps [B, N, h, w].
METHODS: dict[str, Callable[..., jax.Array]] = {
    "cam": cam,
    "gradcam": gradcam,
    "gradcampp": gradcampp,
    "hirescam": hirescam,
    "xgradcam": xgradcam,
    "scorecam": scorecam,
    "layercam": layercam,
    "backprop": backprop,
}

# name -> core(model, variables, images, split, class_ids), for callers (extract) that
# already ran the network once, cut at the head features.
CORES: dict[str, Callable[..., jax.Array]] = {
    "cam": _cam_core,
    "gradcam": _gradcam_core,
    "gradcampp": _gradcampp_core,
    "hirescam": _hirescam_core,
    "xgradcam": _xgradcam_core,
    "scorecam": _scorecam_core,
    "layercam": _layercam_core,
    "backprop": _backprop_core,
}

__all__ = [
    "CORES",
    "LAYERS",
    "METHODS",
    "Split",
    "backprop",
    "cam",
    "gradcam",
    "gradcampp",
    "hirescam",
    "layercam",
    "scorecam",
    "split",
    "xgradcam",
]
