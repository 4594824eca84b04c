"""``tiny_gap``: a small VGG-style network for CPU demos and tests.

Three conv stages (widths 16/32/64 by default), two 2x2 max-pools, so the map is a
quarter of the input side (16x16 at 64x64 input), then the paper's CAM head with a
narrower conv (128 units by default) so that training on 2 CPU cores takes minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class TinyBackbone(nn.Module):
    widths: Sequence[int] = (16, 32, 64)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no batch statistics in this backbone
        x = x.astype(self.dtype)
        for i, width in enumerate(self.widths):
            if i > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = nn.Conv(width, (3, 3), padding=1, dtype=self.dtype, name=f"conv{i}")(x)
            x = nn.relu(x)
        return x
