"""CAM written out from its formula, the reference tests compare camjax against.

``M_c(x, y) = sum_k w_kc f_k(x, y)`` (Zhou et al., CVPR 2016, Eq. 2) from a network's
pooled features ``[B, h, w, K]`` and its dense kernel ``[K, C]``, for class ids ``[B, N]``
(an id outside ``[0, C)`` gives a NaN map). camjax's own CAM is the registered method
(``camjax.methods.cam``); this is an independent einsum of the same formula.
"""

import jax
import jax.numpy as jnp


def cam_reference(features, kernel, class_ids) -> jax.Array:
    """``[B, N, h, w]`` float32 raw CAMs, no bias, no normalisation."""
    weights = jnp.take(
        jnp.asarray(kernel, jnp.float32).T,
        jnp.asarray(class_ids),
        axis=0,
        mode="fill",
        fill_value=jnp.nan,
    )
    return jnp.einsum(
        "bhwk,bnk->bnhw",
        jnp.asarray(features, jnp.float32),
        weights,
        precision=jax.lax.Precision.HIGHEST,
    )
