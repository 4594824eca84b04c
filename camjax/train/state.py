"""The training state: one pytree with everything a checkpoint must hold."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """``step`` (int32 scalar), ``params``, ``batch_stats`` (``{}`` without BN), ``opt_state``.

    The model and optimizer are not part of it: they are rebuilt from the config, so the
    state stays a plain pytree that Orbax saves and restores as it is.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def variables(self) -> dict[str, Any]:
        """The ``variables`` dict that ``model.apply`` takes."""
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out


def init_variables(model: nn.Module, rng: jax.Array, image_size: int) -> dict[str, Any]:
    """``model.init`` on one zero image of side ``image_size`` (float32 params)."""
    images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    return jax.jit(lambda r: model.init(r, images, train=False))(rng)


def create_train_state(variables: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
    """Step 0 state from ``variables`` (``params`` and optional ``batch_stats``)."""
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )
