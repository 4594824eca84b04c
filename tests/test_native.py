"""camjax.native: the FFI kernels against XLA and float64 references, their build and
fallbacks. Kernel tests skip where the kernels cannot run (no AVX-512 or no compiler);
test_kernels_build_where_they_can fails if they should run and don't."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from camjax import native
from camjax.models import batch_norm, convolution

NHWC = ("NHWC", "HWIO", "NHWC")
CAN_BUILD = (
    platform.machine().lower() in ("x86_64", "amd64")
    and "avx512f" in native._cpu_flags()
    and native._compiler() is not None
    and os.environ.get("CAMJAX_NATIVE", "1") != "0"
)
needs_kernels = pytest.mark.skipif(not CAN_BUILD, reason="native kernels need AVX-512 and g++")


def test_kernels_build_where_they_can():
    assert (native.kernels() is not None) == CAN_BUILD


def _conv_case(rs, n, h, w, c, o, k):
    x = jnp.asarray(rs.randn(n, h, w, c), jnp.float32)
    kern = jnp.asarray(rs.randn(k, k, c, o), jnp.float32)
    return x, kern


CASES = [  # n, h, w, c, o, k, padding: channel tails (not multiples of 16) included
    (2, 7, 6, 3, 16, 3, ((1, 1), (1, 1))),
    (3, 9, 8, 17, 33, 3, ((1, 1), (1, 1))),
    (2, 8, 8, 5, 20, 3, ((0, 0), (0, 0))),
    (2, 6, 7, 4, 48, 5, ((2, 2), (2, 2))),
    (1, 5, 9, 3, 7, 3, ((2, 0), (0, 1))),  # asymmetric
    (2, 10, 4, 8, 64, 1, ((0, 0), (0, 0))),
    (1, 6, 6, 16, 16, 3, ((3, 3), (3, 3))),  # padding >= kernel: input grad crops
    (3, 4, 4, 96, 128, 3, ((1, 1), (1, 1))),  # four-vector output tiles
]


@needs_kernels
@pytest.mark.parametrize("n,h,w,c,o,k,padding", CASES)
def test_conv_kernels_equal_xla(n, h, w, c, o, k, padding):
    rs = np.random.RandomState(c * o + k)
    x, kern = _conv_case(rs, n, h, w, c, o, k)
    ref = lambda a, b: lax.conv_general_dilated(  # noqa: E731
        a, b, (1, 1), padding, dimension_numbers=NHWC, precision="highest"
    )
    y_ref, vjp = jax.vjp(ref, x, kern)
    g = jnp.asarray(rs.randn(*y_ref.shape), jnp.float32)
    dx_ref, dk_ref = vjp(g)
    every = convolution.Plan(True, True, True)
    y, vjp_native = jax.vjp(lambda a, b: convolution._conv_s1(a, b, padding, every), x, kern)
    dx, dk = jax.jit(vjp_native)(g)
    scale = float(jnp.abs(y_ref).max())
    np.testing.assert_allclose(y, y_ref, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-5 * float(jnp.abs(dx_ref).max()), rtol=0)
    np.testing.assert_allclose(dk, dk_ref, atol=1e-5 * float(jnp.abs(dk_ref).max()), rtol=0)


@needs_kernels
def test_weight_gradient_by_hand_and_bitwise_repeatable():
    """x = 1..4 in a 2x2 image, g = 1: every 3x3 tap sums the pixels it sees."""
    x = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    g = jnp.ones((1, 2, 2, 1))
    dk = native.call("camjax_conv_dw", (3, 3, 1, 1), x, g, pad_top=1, pad_left=1)
    # tap (i, j) sums x[h + i - 1, w + j - 1] over the outputs h, w in {0, 1}: the
    # centre tap sees all four pixels (10), tap (0, 0) only x[0, 0] (1), and so on
    want = [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
    np.testing.assert_array_equal(dk[..., 0, 0], want)
    rs = np.random.RandomState(0)
    big_x = jnp.asarray(rs.randn(16, 20, 20, 8), jnp.float32)
    big_g = jnp.asarray(rs.randn(16, 20, 20, 24), jnp.float32)
    f = jax.jit(
        lambda a, b: native.call("camjax_conv_dw", (3, 3, 8, 24), a, b, pad_top=1, pad_left=1)
    )
    np.testing.assert_array_equal(f(big_x, big_g), f(big_x, big_g))


@needs_kernels
@pytest.mark.parametrize("channels", [16, 24, 3])
def test_batch_statistics_by_float64(channels):
    """Mean and variance (E[x^2] - E[x]^2, as Flax) within float32's rounding of the
    final subtraction, the same bound XLA's reductions meet."""
    rs = np.random.RandomState(channels)
    x = (rs.randn(32, 17, 15, channels) * 3 + 2).astype(np.float32)
    x64 = x.reshape(-1, channels).astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    for use in (True, False):
        mean, var = jax.jit(lambda a, u=use: batch_norm._stats(a, None, u))(jnp.asarray(x))
        np.testing.assert_allclose(mean, x64.mean(0), rtol=0, atol=4 * eps * np.abs(x64).max())
        np.testing.assert_allclose(var, x64.var(0), rtol=0, atol=8 * eps * (x64**2).mean(0).max())


@needs_kernels
@pytest.mark.parametrize("relu", [False, True])
def test_batch_gradient_statistics_by_float64(relu):
    rs = np.random.RandomState(7)
    c = 20  # a 16-wide vector and a 4-channel tail
    x = rs.randn(9, 11, 13, c).astype(np.float32)
    dy = rs.randn(*x.shape).astype(np.float32)
    mean = rs.randn(c).astype(np.float32) * 0.1
    coef = rs.rand(c).astype(np.float32) + 0.5
    bias = rs.randn(c).astype(np.float32) * 0.1
    x[0, 0, 0] = mean - bias / coef  # pre-activation ~0: the mask must agree with XLA's
    sums = native.call(
        "camjax_batch_grad_stats", (2, c), *map(jnp.asarray, (dy, x, mean, coef, bias)), relu=relu
    )
    x64 = x.reshape(-1, c).astype(np.float64)
    g = dy.reshape(-1, c).astype(np.float64)
    if relu:  # float32 arithmetic, as the forward computes the pre-activation
        g = np.where((x.reshape(-1, c) - mean) * coef + bias > 0, g, 0.0)
    want = np.stack([g.sum(0), (g * (x64 - mean)).sum(0)])
    np.testing.assert_allclose(sums, want, rtol=1e-5, atol=1e-3)


@needs_kernels
def test_kernels_under_vmap_and_shard_map():
    rs = np.random.RandomState(3)
    x, kern = _conv_case(rs, 8, 6, 6, 4, 16, 3)
    pad = ((1, 1), (1, 1))
    every = convolution.Plan(True, True, True)

    def loss(k, a):
        return convolution._conv_s1(*native.vary_together(a, k), pad, every).sum()

    def ref_loss(k, a):
        return lax.conv_general_dilated(a, k, (1, 1), pad, dimension_numbers=NHWC).sum()

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(kern, x[:, None])
    want = jax.vmap(jax.grad(ref_loss), in_axes=(None, 0))(kern, x[:, None])
    np.testing.assert_allclose(per_example, want, rtol=1e-4, atol=1e-4)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    sharded = jax.shard_map(
        lambda k, a: lax.psum(jax.grad(loss)(k, a), "batch"),
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("batch")),
        out_specs=PartitionSpec(),
    )
    np.testing.assert_allclose(jax.jit(sharded)(kern, x), jax.grad(ref_loss)(kern, x), rtol=1e-4)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plan_and_fallbacks(tmp_path):
    code = (
        "import warnings, jax.numpy as jnp; warnings.simplefilter('always');"
        "from camjax import native; from camjax.models import convolution as c;"
        "print('KERNELS', native.kernels() is None, c.plan(16, 16, jnp.float32))"
    )
    if CAN_BUILD:
        xla = convolution.Plan(False, False, False)
        assert convolution.plan(16, 16, jnp.float32) == convolution.Plan(True, True, True)
        assert convolution.plan(16, 16, jnp.float32, taps=1) == xla  # a matrix product
        assert convolution.plan(16, 16, jnp.bfloat16) == xla
        assert convolution.plan(512, 512, jnp.float32) == xla
    out = _python(code, CAMJAX_NATIVE="0")
    assert "KERNELS True Plan(forward=False, input_grad=False, weight_grad=False)" in out.stdout
    if not CAN_BUILD:
        return
    false = shutil.which("false") or "/bin/false"
    broken = _python(code, CXX=false, CAMJAX_CACHE_DIR=str(tmp_path))
    assert "KERNELS True" in broken.stdout, broken.stderr
    assert "native kernels unavailable" in broken.stderr
    assert not list(Path(tmp_path).rglob("*.so"))  # nothing half-written is left


@needs_kernels
def test_build_is_cached_by_source_and_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMJAX_CACHE_DIR", str(tmp_path))
    first = native._build(native._compiler())
    stamp = first.stat().st_mtime_ns
    assert native._build(native._compiler()) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files


@needs_kernels
def test_tiny_gap_training_gradients_equal_the_xla_path(monkeypatch):
    """The whole training loss of tiny_gap (BN + ReLU, pools, CAM head) differentiated
    with the native kernels and with XLA alone: same loss, gradients and statistics."""
    import optax

    from camjax import models

    model = models.create("tiny_gap", 5)
    rs = np.random.RandomState(0)
    images = jnp.asarray(rs.randn(8, 32, 32, 3), jnp.float32)
    labels = jnp.asarray(rs.randint(0, 5, 8))
    variables = model.init(jax.random.key(0), images[:1])

    def loss(params):
        (logits, _), updates = model.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
        )
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return ce, updates

    def run():
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    (value, stats), grads = run()
    monkeypatch.setattr(native, "available", lambda dtype: False)
    (value_x, stats_x), grads_x = run()
    np.testing.assert_allclose(value, value_x, rtol=1e-5)
    for a, b in zip(
        jax.tree.leaves((stats, grads)), jax.tree.leaves((stats_x, grads_x)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(jnp.abs(b).max())))
