"""Test variables and images from NumPy, not jax.random.

On XLA:CPU, jax.random's threefry compiles once per array shape (seconds each on a busy
2-core machine), so ``model.init`` of a small model costs far more than the test's work.
Here the shapes come from ``jax.eval_shape`` (no compile) and the values from NumPy.
"""

import jax
import jax.numpy as jnp
import numpy as np


def variables(model, x, seed: int = 0, **kwargs):
    """Random variables with ``model.init``'s tree: fan-in-scaled normal kernels, small
    biases, scales near 1, positive batch-norm variances."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, **kwargs))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = getattr(path[-1], "key", str(path[-1]))
        z = rng.standard_normal(s.shape)
        if name == "kernel":
            z = z / np.sqrt(max(1, int(np.prod(s.shape[:-1]))))
        elif name in ("scale", "var"):
            z = 1.0 + 0.2 * np.abs(z) if name == "var" else 1.0 + 0.1 * z
        else:  # biases, running means, embeddings
            z = 0.1 * z
        return jnp.asarray(z, s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def normal(seed: int, shape) -> jax.Array:
    """Standard normal float32 values from NumPy."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)
