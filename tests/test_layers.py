"""camjax's own layers against the Flax and XLA ones they replace: the max-pool with a
first-maximum backward, the batch norm with a closed-form backward, the convolution with
a fenced weight gradient, and the XLA:CPU flag."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from camjax import xla_cpu
from camjax.models.batch_norm import BatchNorm
from camjax.models.convolution import conv_general_dilated
from camjax.models.pooling import max_pool

POOLS = [  # shape, window, strides, padding (every pool the backbones use)
    ((3, 8, 8, 4), (2, 2), (2, 2), "VALID"),
    ((2, 13, 13, 5), (3, 3), (2, 2), "VALID"),
    ((2, 13, 13, 5), (3, 3), (2, 2), ((0, 1), (0, 1))),  # GoogLeNet ceil mode
    ((2, 9, 9, 4), (3, 3), (1, 1), ((1, 1), (1, 1))),  # Inception pool branch
    ((2, 10, 11, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet stem
]


@pytest.mark.parametrize("shape,window,strides,padding", POOLS)
def test_max_pool_matches_flax_with_ties(shape, window, strides, padding):
    rs = np.random.RandomState(0)
    # ReLU-like input: half the values are exactly 0, so windows tie often.
    x = jnp.asarray(np.maximum(rs.randint(-3, 3, shape), 0), jnp.float32)
    ref = lambda v: nn.max_pool(v, window, strides=strides, padding=padding)
    ours = lambda v: max_pool(v, window, strides, padding)
    y_ref, vjp_ref = jax.vjp(ref, x)
    y, vjp = jax.vjp(ours, x)
    np.testing.assert_array_equal(y, y_ref)
    g = jnp.asarray(rs.randn(*y.shape), jnp.float32)
    np.testing.assert_allclose(vjp(g)[0], vjp_ref(g)[0], rtol=0, atol=1e-6)
    # Each window's gradient lands on exactly one input (the first maximum).
    (ones,) = vjp(jnp.ones_like(y))
    assert float(ones.sum()) == y.size


def test_max_pool_first_maximum_by_hand():
    x = jnp.array([[1.0, 5.0], [5.0, 2.0]]).reshape(1, 2, 2, 1)
    (dx,) = jax.vjp(lambda v: max_pool(v, (2, 2)), x)[1](jnp.full((1, 1, 1, 1), 7.0))
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0.0, 7.0], [0.0, 0.0]])


def test_max_pool_jit_vmap_and_bad_input():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(
        jax.jit(lambda v: max_pool(v, (2, 2)))(x), nn.max_pool(x, (2, 2), strides=(2, 2))
    )
    batched = jax.vmap(lambda v: max_pool(v, (2, 2)))(x[:, None])
    np.testing.assert_array_equal(batched[:, 0], max_pool(x, (2, 2)))
    with pytest.raises(ValueError, match="rank 4"):
        max_pool(x[0], (2, 2))
    with pytest.raises(ValueError, match="larger than"):
        max_pool(x, (5, 5))
    with pytest.raises(ValueError, match="padding"):
        max_pool(x, (2, 2), padding="SAME")


def _bn_loss(module, variables, x, w):
    y, updates = module.apply(variables, x, mutable=["batch_stats"])
    return (jnp.tanh(y) * w).sum(), updates


def _variables(rs, features):
    return {
        "params": {
            "scale": jnp.asarray(rs.rand(features) + 0.5, jnp.float32),
            "bias": jnp.asarray(rs.randn(features), jnp.float32),
        },
        "batch_stats": {
            "mean": jnp.asarray(rs.randn(features), jnp.float32),
            "var": jnp.asarray(rs.rand(features) + 0.5, jnp.float32),
        },
    }


class _FlaxBNReLU(nn.Module):
    use_running_average: bool
    momentum: float
    epsilon: float

    @nn.compact
    def __call__(self, x):
        bn = nn.BatchNorm(self.use_running_average, momentum=self.momentum, epsilon=self.epsilon)
        return nn.relu(bn(x))


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_matches_flax_values_grads_and_stats(relu):
    rs = np.random.RandomState(1)
    x = jnp.asarray(rs.randn(6, 5, 5, 4) * 3 + 2, jnp.float32)
    w = jnp.asarray(rs.randn(6, 5, 5, 4), jnp.float32)
    kw = dict(momentum=0.9, epsilon=1e-3)

    def flax_module(train):
        if relu:
            return _FlaxBNReLU(use_running_average=not train, **kw)
        return nn.BatchNorm(use_running_average=not train, **kw)

    v_ref = flax_module(True).init(jax.random.key(0), x)
    v = BatchNorm(use_running_average=False, relu=relu, **kw).init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(
        jnp.shape,
        jax.tree.map(
            lambda a: a,
            {"params": _unwrap(v_ref["params"]), "batch_stats": _unwrap(v_ref["batch_stats"])},
        ),
    )
    variables = _variables(rs, 4)
    wrapped = {k: {"BatchNorm_0": v} for k, v in variables.items()} if relu else variables
    for train in (True, False):
        ref_m = flax_module(train)
        our_m = BatchNorm(use_running_average=not train, relu=relu, **kw)
        grad = jax.value_and_grad(_bn_loss, argnums=(1, 2), has_aux=True)
        (loss_ref, u_ref), g_ref = grad(ref_m, wrapped, x, w)
        (loss, u), g = grad(our_m, variables, x, w)
        # Statistics summed in another order (the native CPU kernel) differ in the last
        # bits; test_native.py checks both against float64.
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
        ours = jax.tree.leaves((u, g))
        ref = jax.tree.leaves((u_ref, g_ref))
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _unwrap(tree):
    return tree.get("BatchNorm_0", tree)


def test_batch_norm_gradient_through_returned_statistics():
    """The statistics' cotangents reach x: d/dx of sum(mean) + sum(var)."""
    from camjax.models.batch_norm import batch_norm_train

    rs = np.random.RandomState(2)
    x = jnp.asarray(rs.randn(4, 3, 3, 2), jnp.float32)
    scale, bias = jnp.ones(2), jnp.zeros(2)

    def ours(v):
        _, mean, var = batch_norm_train(v, scale, bias, 1e-5, None, jnp.float32, False)
        return mean.sum() + 3.0 * var.sum()

    def plain(v):
        return v.mean((0, 1, 2)).sum() + 3.0 * v.var((0, 1, 2)).sum()

    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(plain)(x), rtol=1e-5, atol=1e-6)


def test_batch_norm_synchronised_under_pmap_equals_global_batch():
    n = jax.local_device_count()
    rs = np.random.RandomState(3)
    x = jnp.asarray(rs.randn(2 * n, 4, 4, 3) * 2 - 1, jnp.float32)
    w = jnp.asarray(rs.randn(2 * n, 4, 4, 3), jnp.float32)
    variables = _variables(rs, 3)
    glob = BatchNorm(use_running_average=False, momentum=0.8)
    (_, u_glob), (g_glob, dx_glob) = jax.value_and_grad(_bn_loss, argnums=(1, 2), has_aux=True)(
        glob, variables, x, w
    )
    sync = BatchNorm(use_running_average=False, momentum=0.8, axis_name="d")

    def per_device(xs, ws):
        (_, u), g = jax.value_and_grad(_bn_loss, argnums=(1, 2), has_aux=True)(
            sync, variables, xs, ws
        )
        return u, g

    u, (g, dx) = jax.pmap(per_device, axis_name="d")(
        x.reshape(n, 2, 4, 4, 3), w.reshape(n, 2, 4, 4, 3)
    )
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_glob), strict=True):
        np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)  # same on every device
    for a, b in zip(jax.tree.leaves(g["params"]), jax.tree.leaves(g_glob["params"]), strict=True):
        np.testing.assert_allclose(a.sum(0), b, rtol=1e-5, atol=1e-5)  # device sums = global
    np.testing.assert_allclose(dx.reshape(x.shape), dx_glob, rtol=1e-5, atol=1e-6)


def test_xla_cpu_flag_rules():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_cpu.apply(env)
    assert env["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=8",
        xla_cpu.CONV_FLAG,
    ]
    assert not xla_cpu.apply(env)  # already there: not added twice
    own = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=reduce"}
    assert not xla_cpu.apply(own) and own["XLA_FLAGS"].endswith("=reduce")
    opted_out = {xla_cpu.OPT_OUT: "1"}
    assert not xla_cpu.apply(opted_out) and "XLA_FLAGS" not in opted_out
    empty: dict[str, str] = {}
    assert xla_cpu.apply(empty) and empty["XLA_FLAGS"] == xla_cpu.CONV_FLAG


NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # as Flax builds it


@pytest.mark.parametrize(
    "strides,padding,groups",
    [
        ((1, 1), ((1, 1), (1, 1)), 1),
        ((1, 1), ((2, 0), (0, 1)), 1),
        ((1, 1), "SAME", 1),
        ((1, 1), "VALID", 1),
        ((2, 2), ((1, 1), (1, 1)), 1),  # strided: the ordinary path
        ((1, 1), ((1, 1), (1, 1)), 2),  # grouped: the ordinary path
    ],
)
def test_conv_values_and_gradients_equal_lax(strides, padding, groups):
    rs = np.random.RandomState(4)
    x = jnp.asarray(rs.randn(3, 9, 8, 4), jnp.float32)
    w = jnp.asarray(rs.randn(3, 3, 4 // groups, 6), jnp.float32)

    def run(fn):
        return lambda a, b: fn(
            a, b, strides, padding, dimension_numbers=NHWC, feature_group_count=groups
        )

    y_ref, vjp_ref = jax.vjp(run(lax.conv_general_dilated), x, w)
    y, vjp = jax.vjp(run(conv_general_dilated), x, w)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    g = jnp.asarray(rs.randn(*y_ref.shape), jnp.float32)
    for a, b in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv_weight_gradient_by_hand_and_under_jit_vmap():
    """1x1 input channel, 1x1 kernel: dL/dw = sum(x * g), a number worked by hand."""
    x = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)  # 1 2 / 3 4
    w = jnp.ones((1, 1, 1, 1))
    loss = lambda w, x: conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC).sum()
    assert float(jax.grad(loss)(w, x).reshape(())) == 10.0
    xs = jnp.stack([x, 2 * x])
    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, xs)
    np.testing.assert_array_equal(per_example.reshape(2), [10.0, 20.0])
