"""camjax.train.step: the per-device step under pmap and shard_map on 8 simulated devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from camjax import models
from camjax.train import optimizer, state, step

NUM_CLASSES, SIZE, BATCH = 4, 16, 16


def _setup(lr=0.1):
    cfg = ml_collections.ConfigDict(
        dict(
            learning_rate=lr,
            momentum=0.9,
            weight_decay=5e-4,
            head_lr_multiplier=2.0,
            schedule="constant",
            lr_decay_every=0,
            lr_decay_factor=0.1,
            warmup_steps=0,
        )
    )
    # The plain variant (one conv per stage, no BatchNorm): per-device batch statistics
    # would make a data-parallel step differ from the full-batch step compared against.
    model = models.create(
        "tiny_gap",
        NUM_CLASSES,
        widths=(4, 8),
        head_features=8,
        convs_per_stage=1,
        batch_norm=False,
    )
    tx = optimizer.create_optimizer(cfg, 10)
    s0 = state.create_train_state(state.init_variables(model, jax.random.key(0), SIZE), tx)
    return model, tx, s0


def _batches(n, seed=0):
    rs = np.random.RandomState(seed)
    return [
        {
            "image": rs.randn(BATCH, SIZE, SIZE, 3).astype(np.float32),
            "label": rs.randint(0, NUM_CLASSES, BATCH).astype(np.int32),
        }
        for _ in range(n)
    ]


def _run(parallel, model, tx, s0, batches):
    runner = step.create_runner(parallel, step.make_train_step(model, tx))
    d = runner.put_state(s0)
    losses = []
    for i, b in enumerate(batches):
        d, m = runner.train_step(d, runner.put_batch(b), jax.random.key(i))
        losses.append(float(runner.metrics(m)["loss"]))
    return runner.host_state(d), losses


def test_pmap_and_shard_map_give_the_same_params_on_8_devices():
    assert jax.device_count() == 8
    model, tx, s0 = _setup()
    batches = _batches(4)
    a, la = _run("pmap", model, tx, s0, batches)
    b, lb = _run("shard_map", model, tx, s0, batches)
    assert int(a.step) == int(b.step) == 4
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("parallel", ["pmap", "shard_map"])
def test_one_step_equals_full_batch_sgd_on_one_device(parallel):
    # pmean of 8 per-device mean losses over equal shares == the global-batch mean loss,
    # so one data-parallel step must equal optax applied to the full-batch gradient.
    # (Catches a psum/pmean mix-up: shard_map's AD would otherwise sum gradients.)
    model, tx, s0 = _setup()
    (batch,) = _batches(1)
    got, _ = _run(parallel, model, tx, s0, [batch])

    def loss(p):
        logits, _ = model.apply({"params": p}, batch["image"], train=True)
        return step.cross_entropy(logits, batch["label"])

    g = jax.grad(loss)(s0.params)
    upd, _ = tx.update(g, s0.opt_state, s0.params)
    want = optax.apply_updates(s0.params, upd)
    for x, y in zip(jax.tree.leaves(got.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_same_seed_same_params_and_loss_decreases():
    model, tx, s0 = _setup(lr=0.05)
    # Learnable toy task: the class is which quadrant holds a bright square.
    rs = np.random.RandomState(1)
    batches = []
    for _ in range(30):
        labels = rs.randint(0, NUM_CLASSES, BATCH)
        img = 0.1 * rs.randn(BATCH, SIZE, SIZE, 3).astype(np.float32)
        for i, c in enumerate(labels):
            y, x = divmod(int(c), 2)
            img[i, y * 8 : y * 8 + 8, x * 8 : x * 8 + 8] += 1.0
        batches.append({"image": img, "label": labels.astype(np.int32)})
    a, la = _run("pmap", model, tx, s0, batches)
    b, lb = _run("pmap", model, tx, s0, batches)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.mean(la[-5:]) < 0.8 * np.mean(la[:5]), la  # 1.40 -> 0.93 observed


def test_bad_batch_split_is_named():
    model, tx, s0 = _setup()
    runner = step.create_runner("pmap", step.make_train_step(model, tx))
    with pytest.raises(ValueError, match="not divisible by 8"):
        runner.put_batch({"image": np.zeros((12, SIZE, SIZE, 3), np.float32)})
    with pytest.raises(ValueError, match="unknown parallel"):
        step.create_runner("pjit", step.make_train_step(model, tx))


def test_bfloat16_compute_keeps_float32_params():
    model = models.create(
        "tiny_gap", NUM_CLASSES, widths=(4, 8), head_features=8, dtype=jnp.bfloat16
    )
    _, tx, _ = _setup()
    s0 = state.create_train_state(state.init_variables(model, jax.random.key(0), SIZE), tx)
    got, losses = _run("shard_map", model, tx, s0, _batches(2))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(got.params))
    assert np.isfinite(losses).all()
