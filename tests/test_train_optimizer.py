"""camjax.train.optimizer: schedules, parameter groups, Caffe-style weight decay."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from camjax.train import optimizer


def _cfg(**kw):
    base = dict(
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        head_lr_multiplier=10.0,
        schedule="step",
        lr_decay_every=10,
        lr_decay_factor=0.1,
        warmup_steps=0,
    )
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_step_schedule_drops_by_factor_every_n():
    s = optimizer.learning_rate_schedule(_cfg(), 100)
    # 0.1 * 0.1 ** floor(t / 10)
    np.testing.assert_allclose(
        [float(s(t)) for t in (0, 9, 10, 25)], [0.1, 0.1, 0.01, 0.001], rtol=1e-6
    )


def test_cosine_schedule_warmup_peak_and_end():
    s = optimizer.learning_rate_schedule(_cfg(schedule="cosine", warmup_steps=10), 110)
    # linear warm-up: 0.1 * 5 / 10 at t=5; peak 0.1 at t=10; half-way through the cosine
    # (t = 10 + 50) the lr is 0.1 * (1 + cos(pi/2)) / 2 = 0.05; zero at the end.
    np.testing.assert_allclose(
        [float(s(t)) for t in (5, 10, 60, 110)], [0.05, 0.1, 0.05, 0.0], atol=1e-6
    )


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="'linear'"):
        optimizer.learning_rate_schedule(_cfg(schedule="linear"), 10)


def test_labels_follow_tree_path():
    params = {"backbone": {"conv0": {"kernel": 0}}, "head": {"classifier": {"bias": 0}}}
    assert optimizer.param_labels(params) == {
        "backbone": {"conv0": {"kernel": "backbone"}},
        "head": {"classifier": {"bias": "head"}},
    }


def test_first_update_is_caffe_sgd_with_head_multiplier_and_kernel_only_decay():
    params = {
        "backbone": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)},
        "head": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)},
    }
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optimizer.create_optimizer(_cfg(), 100)
    updates, state = tx.update(grads, tx.init(params), params)
    # First step, empty momentum: update = -lr * (g + wd * w) on kernels, -lr * g on biases.
    # backbone kernel: -0.1 * (1 + 5e-4 * 2) = -0.1001; head kernel: ten times that.
    np.testing.assert_allclose(updates["backbone"]["kernel"], -0.1001, rtol=1e-6)
    np.testing.assert_allclose(updates["backbone"]["bias"], -0.1, rtol=1e-6)
    np.testing.assert_allclose(updates["head"]["kernel"], -1.001, rtol=1e-6)
    np.testing.assert_allclose(updates["head"]["bias"], -1.0, rtol=1e-6)
    # Second step with the same gradient: momentum trace = g' + 0.9 * g' (bias: 1.9).
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["backbone"]["bias"], -0.19, rtol=1e-6)


def test_multipliers_as_released_and_as_the_benchmark():
    # First SGD step = -lr * multiplier * g (momentum buffer starts at g; no decay here).
    opt = optimizer

    cfg = ml_collections.ConfigDict(
        {
            "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.0,
            "head_lr_multiplier": 10.0, "bias_lr_multiplier": 2.0,
            "lr_multipliers": "backbone/layer4=10", "schedule": "constant",
            "lr_decay_every": 0, "lr_decay_factor": 0.1, "warmup_steps": 0,
        }
    )  # fmt: skip
    params = {
        "head": {"classifier": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}},
        "backbone": {
            "layer4_0": {"kernel": jnp.ones((1, 1))},  # not under "layer4/": no match
            "layer4": {"conv": {"kernel": jnp.ones((1, 1)), "bias": jnp.ones(1)}},
        },
    }
    tx = opt.create_optimizer(cfg, 10)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    got = jax.tree.map(lambda u: float(np.asarray(u).ravel()[0]), updates)
    assert got["head"]["classifier"] == {"kernel": -1.0, "bias": pytest.approx(-2.0)}
    assert got["backbone"]["layer4_0"]["kernel"] == pytest.approx(-0.1)
    assert got["backbone"]["layer4"]["conv"] == {
        "kernel": pytest.approx(-1.0),
        "bias": pytest.approx(-2.0),
    }
    with pytest.raises(ValueError, match="bias_lr_multiplier"):
        opt.create_optimizer(
            ml_collections.ConfigDict({**cfg.to_dict(), "bias_lr_multiplier": 0}), 10
        )
