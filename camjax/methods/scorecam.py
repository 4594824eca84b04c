"""Score-CAM: ``M_c = ReLU(sum_k s_kc A_k)``, ``s_kc = score_c(f(X * H_k))`` where ``H_k``
is ``A_k`` bilinearly upsampled to the input size and min-max normalised.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR Workshops 2020. With class ids the score is the class *probability*
``softmax(f(X * H_k))_c`` with no baseline subtracted, as the authors' released code;
a target object is used as given. pytorch-grad-cam instead takes the target (the logit
by default) and applies a softmax *over the K channels*; torchcam subtracts the
unmasked image's score and also applies a softmax over the channels. The images are
masked as given (already normalised for the model), so masked-out pixels are 0.
Costs ``K`` extra forward passes per image, run as ``ceil(K / chunk_size)`` passes of
``B * chunk_size`` images each, one after another (``lax.map``), to bound memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from camjax.maps import normalize, upsample
from camjax.methods.layer import Cut
from camjax.methods.registry import Method, register
from camjax.methods.targets import ClassLogit, ClassProbability


def scorecam_weights(cut: Cut, target, chunk_size: int = 16) -> jax.Array:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if isinstance(target, ClassLogit):
        target = ClassProbability(target.class_ids)
    images, a = cut.images, cut.features
    b, _, _, k = a.shape
    size = images.shape[1:3]
    chunk = min(chunk_size, k)
    n_chunks = -(-k // chunk)
    # Zero channels pad K to whole chunks; their weights are cut off below.
    a_pad = jnp.pad(a, ((0, 0), (0, 0), (0, 0), (0, n_chunks * chunk - k)))
    chunks = a_pad.reshape(a.shape[:3] + (n_chunks, chunk)).transpose(3, 0, 4, 1, 2)

    def chunk_scores(a_chunk: jax.Array) -> jax.Array:  # [B, chunk, h, w] -> [B, chunk, N]
        masks = normalize(upsample(a_chunk, size, "bilinear"), "minmax")
        masked = images[:, None] * masks[..., None].astype(images.dtype)
        flat = masked.reshape((b * chunk,) + images.shape[1:])
        out = jax.tree.map(lambda t: t.reshape((b, chunk) + t.shape[1:]), cut.forward(flat))
        # Each masked copy is scored with its own image's target (per-image arrays in
        # the target line up with axis 0).
        return jax.vmap(target, in_axes=1, out_axes=1)(out)

    scores = jax.lax.map(chunk_scores, chunks)  # [n_chunks, B, chunk, N]
    # N spelled out: a batch of 0 leaves nothing to infer a -1 from.
    n = scores.shape[-1]
    scores = scores.transpose(1, 0, 2, 3).reshape(b, n_chunks * chunk, n)[:, :k]
    return scores.transpose(0, 2, 1)  # [B, N, K]


SCORECAM = register(
    Method(
        "scorecam",
        "Score-CAM",
        "Wang et al., CVPR Workshops 2020",
        weights=scorecam_weights,
        relu=True,
        options=("chunk_size",),
    )
)
