"""Every registered model differentiates like any JAX code, forward mode included.

``jax.jvp`` and ``jax.linearize`` through ``apply`` (inference and training mode) trace
for every model (a custom VJP anywhere would refuse forward mode at trace time); for the
small models their values are checked against central finite differences, and a
Hessian-vector product of the training loss (forward over reverse) against finite
differences of the gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camjax import models
from camjax.train.step import cross_entropy

SIDE = 32
# Small enough that GoogLeNet (minimum 15) and AlexNet (31) still give a map.
ALL = sorted(models.REGISTRY)


def _build(name, side=SIDE, classes=4):
    model = models.create(name, classes)
    x = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
    return model, x


def _train_logits(model, variables, x):
    if "batch_stats" in variables:
        (logits, _), _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    else:
        logits, _ = model.apply(variables, x, train=True)
    return logits


# GoogLeNet-GMP shares GoogLeNet-GAP's backbone, and Lite0's forward mode is also checked
# in test_cpu.py: both run in the whole suite, not the edit-test loop.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow)
        if n in ("googlenet_gmp", "efficientnet_lite0_gap")
        else n
        for n in ALL
    ],
)
def test_forward_mode_traces_for_every_model(name):
    model, x = _build(name)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)

    def infer(v, x):
        return model.apply(v, x, train=False)[0]

    def train(v, p, x):
        return _train_logits(model, {**v, "params": p}, x)

    # make_jaxpr traces with abstract values only: cheap for VGG16 and ResNet-50 too.
    jax.make_jaxpr(lambda v, x: jax.jvp(lambda x: infer(v, x), (x,), (x,)))(variables, x)
    jax.make_jaxpr(lambda v, x: jax.linearize(lambda x: infer(v, x), x)[1](x))(variables, x)
    p = variables["params"]
    jax.make_jaxpr(lambda v, p, x: jax.jvp(lambda p: train(v, p, x), (p,), (p,)))(variables, p, x)
    jax.make_jaxpr(lambda v, p, x: jax.linearize(lambda p: train(v, p, x), p)[1](p))(
        variables, p, x
    )


@pytest.mark.slow
def test_jvp_and_linearize_agree_with_reverse_mode(name="tiny_gap"):
    """Forward mode against reverse mode, two independent derivations of one Jacobian:
    ``<u, J t> == <J^T u, t>`` for random ``u`` and ``t``, and ``linearize`` equals ``jvp``.
    (Finite differences of a ReLU network in float32 cross kinks too often to be a
    sharp reference for the forward map; the loss's curvature is checked that way below.)"""
    model, _ = _build(name)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, SIDE, SIDE, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(1), x)
    t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    u = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    for train in (False, True):

        def f(x, train=train):
            if train:
                return _train_logits(model, variables, x)
            return model.apply(variables, x, train=False)[0]

        _, jt = jax.jit(lambda x, t: jax.jvp(f, (x,), (t,)))(x, t)
        (jtu,) = jax.jit(lambda x, u: jax.vjp(f, x)[1](u))(x, u)
        lhs, rhs = float(jnp.vdot(u, jt)), float(jnp.vdot(jtu, t))
        # Cauchy-Schwarz scale of the dot products; float32 sums stay far inside 1e-5 of it.
        scale = float(jnp.linalg.norm(jtu) * jnp.linalg.norm(t))
        assert abs(lhs) > 1e-4 * scale  # not a vanishing product
        assert abs(lhs - rhs) <= 1e-5 * scale, (lhs, rhs)
        _, lin = jax.linearize(f, x)
        np.testing.assert_allclose(lin(t), jt, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_hessian_vector_product_of_the_training_loss():
    """``H v`` by forward-over-reverse against two independent references.

    1. Central finite differences of the gradient, ``(g(p + e v) - g(p - e v)) / 2e``, with
       ``v`` on the classifier (after global pooling): no ReLU or max-pool mask can flip
       along that direction, so the loss is smooth there and the difference converges
       (along a direction that moves pre-activations, a ReLU network's gradient jumps
       wherever a unit crosses zero and finite differences measure the jumps instead).
    2. Reverse over reverse, ``grad(<grad L, v>)``, for ``v`` on every parameter.
    """
    model = models.create("tiny_gap", 3, widths=(4, 8, 8), head_features=8)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(4, 16, 16, 3)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 1])
    variables = jax.jit(model.init)(jax.random.key(4), x)
    stats = variables["batch_stats"]

    def loss(p):
        return cross_entropy(_train_logits(model, {"params": p, "batch_stats": stats}, x), y)

    def inner(q, v):
        pairs = zip(jax.tree.leaves(jax.grad(loss)(q)), jax.tree.leaves(v), strict=True)
        return sum(jnp.vdot(a, b) for a, b in pairs)

    p = variables["params"]
    grad = jax.jit(jax.grad(loss))
    fwd_rev = jax.jit(lambda p, v: jax.jvp(jax.grad(loss), (p,), (v,))[1])
    rev_rev = jax.jit(jax.grad(inner))

    def flat(tree):
        return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])

    def normal_like(tree):
        return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), tree)

    # 1. Finite differences along the classifier.
    v = jax.tree.map(jnp.zeros_like, p)
    v["head"]["classifier"] = normal_like(p["head"]["classifier"])
    hv = flat(fwd_rev(p, v))
    eps = 1e-2
    plus = grad(jax.tree.map(lambda a, b: a + eps * b, p, v))
    minus = grad(jax.tree.map(lambda a, b: a - eps * b, p, v))
    fd = (flat(plus) - flat(minus)) / (2 * eps)
    assert np.abs(hv).max() > 1e-3  # a real curvature, not a zero vector
    # Truncation error eps^2 |L'''| / 6 and float32 rounding ~1e-7 |g| / eps: < 1% here.
    assert np.linalg.norm(hv - fd) < 1e-2 * np.linalg.norm(hv)
    # 2. Every parameter: forward-over-reverse equals reverse-over-reverse.
    v = normal_like(p)
    a, b = flat(fwd_rev(p, v)), flat(rev_rev(p, v))
    assert np.linalg.norm(a - b) < 1e-4 * np.linalg.norm(a)
