"""The per-device training and evaluation steps and the two data-parallel runners.

The step is written once for one device's share of the batch, with gradients averaged by
``lax.pmean`` over the named axis ``AXIS``. :class:`PmapRunner` runs it under
``jax.pmap`` (state replicated along a leading device axis); :class:`ShardMapRunner`
under ``jax.shard_map`` over a 1-D mesh (state replicated, batch split along ``AXIS``).
Both compute the same thing; ``config.parallel`` chooses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from camjax.train.state import TrainState

AXIS = "batch"  # the data-parallel axis name; pass it as ``bn_axis_name`` to sync BN


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy ``-log softmax(z)_y`` over the batch (float32)."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    ).mean()


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """Per-device step ``(state, batch, rng) -> (state, metrics)``; must run under ``AXIS``.

    ``grads = pmean_d(grad L_d)``: the mean over devices of equal shares equals the
    gradient of the global-batch mean loss. BatchNorm statistics from the per-device
    forward are averaged too, so that replicas stay identical (when the model was built
    with ``bn_axis_name=AXIS`` they are already equal). ``rng`` is folded with the
    device index so that dropout differs between devices but is fixed by (seed, step).
    """

    def step(state: TrainState, batch: dict, rng: jax.Array) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(rng, lax.axis_index(AXIS))
        images, labels = batch["image"], batch["label"]
        use_bn = bool(state.batch_stats)

        def loss_fn(params):
            variables = {"params": params}
            if use_bn:
                variables["batch_stats"] = state.batch_stats
                (logits, _), updated = model.apply(
                    variables,
                    images,
                    train=True,
                    mutable=["batch_stats"],
                    rngs={"dropout": rng},
                )
                new_stats = updated["batch_stats"]
            else:
                logits, _ = model.apply(variables, images, train=True, rngs={"dropout": rng})
                new_stats = state.batch_stats
            return cross_entropy(logits, labels), (logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            _varying(state.params)
        )
        grads = lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_stats = lax.pmean(new_stats, AXIS)
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        metrics = {"loss": lax.pmean(loss, AXIS), "accuracy": lax.pmean(accuracy, AXIS)}
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state
        )
        return new_state, metrics

    return step


def _varying(tree: Any) -> Any:
    """Mark replicated (device-invariant) leaves as varying over ``AXIS``.

    Under ``shard_map`` with ``P()`` inputs, JAX's AD would psum the gradient of an
    invariant input across devices by itself; differentiating a per-device copy instead
    gives per-device gradients, so the explicit ``pmean`` means the same under
    ``shard_map`` as under ``pmap`` (where inputs are per-device already, and the cast is a no-op).
    """

    return jax.tree.map(lambda x: lax.pcast(x, AXIS, to="varying"), tree)


def make_eval_step(model: nn.Module) -> Callable[[dict, dict], dict]:
    """Per-device ``(variables, batch) -> {logits, features}`` in inference mode."""

    def step(variables: dict, batch: dict) -> dict:
        logits, features = model.apply(variables, batch["image"], train=False)
        return {"logits": logits, "features": features.astype(jnp.float32)}

    return step


class PmapRunner:
    """Runs the per-device step with ``jax.pmap`` over this process's local devices."""

    def __init__(self, train_step: Callable, eval_step: Callable | None = None):
        self.devices = jax.local_devices()
        self.num_local = len(self.devices)
        local_mesh = jax.sharding.Mesh(np.array(self.devices), (AXIS,))
        self.sharding = NamedSharding(local_mesh, P(AXIS))
        self._train = jax.pmap(
            train_step, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,)
        )
        self._eval = jax.pmap(eval_step, axis_name=AXIS) if eval_step else None

    def put_state(self, state: TrainState) -> TrainState:
        return self._replicate(state)

    def _replicate(self, tree):
        # One copy per local device along a new leading axis (what pmap expects);
        # jax.device_put_replicated is deprecated since JAX 0.8.1.
        def rep(x):
            x = host_array(x)[None]
            shards = [jax.device_put(x, d) for d in self.devices]
            return jax.make_array_from_single_device_arrays(
                (self.num_local,) + x.shape[1:], self.sharding, shards
            )

        return jax.tree.map(rep, tree)

    def host_state(self, dstate: TrainState) -> TrainState:
        """The state as numpy arrays (replicas are identical: pmean'd updates)."""
        # addressable_data(0) is device 0's [1, ...] slice of the leading device axis.
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], dstate)

    def put_batch(self, batch: dict) -> dict:
        return {k: _split(np.asarray(v), self.num_local) for k, v in batch.items()}

    def train_step(self, dstate, dbatch, rng):
        return self._train(dstate, dbatch, rng)

    def metrics(self, m: dict) -> dict:
        return jax.tree.map(lambda x: x[0], m)

    def eval_step(self, dvariables, dbatch) -> dict:
        out = self._eval(dvariables, dbatch)
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), out)


class ShardMapRunner:
    """Runs the per-device step with ``jax.shard_map`` over a 1-D mesh of all devices.

    Works across processes: each process gives its own batch share and
    ``make_array_from_process_local_data`` assembles the global batch.
    """

    def __init__(self, train_step: Callable, eval_step: Callable | None = None):
        self.mesh = jax.make_mesh((jax.device_count(),), (AXIS,))
        self.replicated = NamedSharding(self.mesh, P())
        self.split = NamedSharding(self.mesh, P(AXIS))
        sm = jax.shard_map(
            train_step, mesh=self.mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P())
        )
        self._train = jax.jit(sm, donate_argnums=(0,))
        self._eval = None
        if eval_step:
            self._eval = jax.jit(
                jax.shard_map(eval_step, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS))
            )

    def _replicate(self, tree):
        def rep(x):
            x = host_array(x)
            return jax.make_array_from_process_local_data(self.replicated, x, x.shape)

        return jax.tree.map(rep, tree)

    def put_state(self, state: TrainState) -> TrainState:
        return self._replicate(state)

    def host_state(self, dstate: TrainState) -> TrainState:
        """The state as numpy arrays (this process's replica)."""
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), dstate)

    def put_batch(self, batch: dict) -> dict:
        return {
            k: jax.make_array_from_process_local_data(self.split, np.asarray(v))
            for k, v in batch.items()
        }

    def train_step(self, dstate, dbatch, rng):
        return self._train(dstate, dbatch, rng)

    def metrics(self, m: dict) -> dict:
        return jax.tree.map(lambda x: x.addressable_data(0), m)

    def eval_step(self, dvariables, dbatch) -> dict:
        out = self._eval(dvariables, dbatch)
        # This process's rows, in the order it gave them.
        return jax.tree.map(_local_rows, out)


def host_array(x: Any) -> np.ndarray:
    """``x`` as numpy; for a (replicated) jax.Array, this process's first copy."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def replicate_global(tree: Any) -> Any:
    """Every leaf as a jax.Array replicated on all devices of all processes.

    The form checkpoints are saved and restored in: Orbax writes a replicated array once
    (from its replica 0), whichever runner or process count produced it.
    """
    mesh = jax.make_mesh((jax.device_count(),), (AXIS,))
    sharding = NamedSharding(mesh, P())

    def rep(x):
        x = host_array(x)
        # global_shape given: without it a 0-d leaf comes back with shape (1,).
        return jax.make_array_from_process_local_data(sharding, x, x.shape)

    return jax.tree.map(rep, tree)


def _split(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] % n:
        raise ValueError(f"per-process batch {x.shape[0]} is not divisible by {n} local devices")
    return x.reshape((n, x.shape[0] // n) + x.shape[1:])


def _local_rows(x: jax.Array) -> np.ndarray:
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


RUNNERS: dict[str, type] = {"pmap": PmapRunner, "shard_map": ShardMapRunner}


def create_runner(parallel: str, train_step: Callable, eval_step: Callable | None = None):
    """The runner named by ``config.parallel``: ``"pmap"`` or ``"shard_map"``."""
    if parallel not in RUNNERS:
        raise ValueError(f"unknown parallel {parallel!r}; known: {', '.join(RUNNERS)}")
    return RUNNERS[parallel](train_step, eval_step)
