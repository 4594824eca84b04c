"""camjax.cpu: the opt-in CPU tuning (shifted depthwise convolutions, cores as devices)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from camjax import cpu, models
from camjax.models.efficientnet import EfficientNetLiteBackbone, Stage
from camjax.models.head import CAMHead, CAMNet


def _grouped(x, w, strides, padding):
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
        precision=lax.Precision.HIGHEST,
    )


@pytest.mark.parametrize(
    "size,k,stride,padding",
    [
        ((9, 9), 3, 1, "SAME"),
        ((10, 7), 3, 2, "SAME"),
        ((11, 12), 5, 2, "SAME"),
        ((8, 8), 5, 1, "VALID"),
        ((7, 10), 3, 2, ((2, 0), (1, 3))),
    ],
)
def test_shifted_sum_equals_grouped_convolution(size, k, stride, padding):
    rng = np.random.default_rng(k * 100 + stride)
    x = jnp.asarray(rng.standard_normal((2, *size, 6), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 1, 6), np.float32))
    pads = cpu._pairs(padding, (k, k), (stride, stride), size)
    ref = _grouped(x, w, (stride, stride), pads if not isinstance(padding, str) else padding)
    got = cpu.depthwise_by_shifts(x, w, (stride, stride), pads)
    assert got.shape == ref.shape
    # k*k float32 products summed in another order: rounding of ~k*k ulps of the terms.
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * k * k)


def test_same_padding_is_tensorflows():
    # TF "SAME": total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel at the end.
    assert cpu._pairs("SAME", (3, 5), (2, 2), (10, 11)) == [(0, 1), (2, 2)]
    assert cpu._pairs("SAME", (3, 3), (1, 1), (8, 8)) == [(1, 1), (1, 1)]
    with pytest.raises(ValueError, match="padding must be"):
        cpu._pairs("CIRCULAR", (3, 3), (1, 1), (8, 8))


@pytest.fixture(scope="module")
def lite0():
    """EfficientNet-Lite0's own blocks, two stages of them (3x3/1 and 5x5/2 depthwise)."""
    backbone = EfficientNetLiteBackbone(
        stages=(Stage(1, 3, 1, 16, 1), Stage(6, 5, 2, 24, 2)), head_features=32
    )
    model = CAMNet(backbone=backbone, head=CAMHead(7, conv_features=()))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 24, 24, 3), np.float32))
    return model, cpu.shifted_depthwise(model), x


@pytest.mark.slow
def test_lite0_variables_and_outputs_unchanged(lite0):
    model, shifted, x = lite0
    v = jax.jit(model.init)(jax.random.key(1), x)
    v2 = jax.jit(shifted.init)(jax.random.key(1), x)
    assert jax.tree.structure(v) == jax.tree.structure(v2)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v2), strict=True):
        np.testing.assert_array_equal(a, b)  # same initializers, same rng paths
    v = jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), v)
    for train in (False, True):
        run = jax.jit(lambda m, v, t=train: m.apply(v, x, train=t, mutable=["batch_stats"])[0],
                      static_argnums=0)  # fmt: skip
        la, fa = run(model, v)
        lb, fb = run(shifted, v)
        np.testing.assert_allclose(lb, la, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(fb, fa, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_lite0_gradients_and_forward_mode_agree(lite0):
    model, shifted, x = lite0
    v = jax.jit(model.init)(jax.random.key(2), x)

    def loss(m):
        return lambda p: jnp.sum(m.apply({**v, "params": p}, x)[0] ** 2)

    t = jax.tree.map(jnp.ones_like, v["params"])

    @jax.jit
    def both(p):  # reverse mode and forward mode in one program per model
        return jax.grad(loss(model))(p), jax.jvp(loss(model), (p,), (t,))[1]

    @jax.jit
    def both_shifted(p):
        return jax.grad(loss(shifted))(p), jax.jvp(loss(shifted), (p,), (t,))[1]

    (ga, ja), (gb, jb) = both(v["params"]), both_shifted(v["params"])
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5 * float(jnp.max(jnp.abs(a)) + 1))
    np.testing.assert_allclose(jb, ja, rtol=1e-4)


def test_accelerator_programs_keep_the_native_convolution(lite0):
    _, shifted, x = lite0
    v = jax.jit(shifted.init)(jax.random.key(0), x)
    fn = jax.jit(lambda v, x: shifted.apply(v, x)[0])
    depthwise = "feature_group_count = 96"  # _blocks_1's 5x5 depthwise (16 * 6 channels)
    for platform in ("cuda", "tpu"):
        text = jax.export.export(fn, platforms=(platform,))(v, x).mlir_module()
        assert depthwise in text, platform
    cpu_text = jax.export.export(fn, platforms=("cpu",))(v, x).mlir_module()
    assert depthwise not in cpu_text  # the CPU program has the shifted slices instead


def test_models_without_depthwise_convolutions_trace_the_same_program():
    model = models.create("tiny_gap", num_classes=3)
    x = jnp.zeros((1, 16, 16, 3))
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    shifted = cpu.shifted_depthwise(model)
    assert shifted is not model  # the conv fields were swapped ...
    a = jax.make_jaxpr(lambda v, x: model.apply(v, x))(v, x)
    b = jax.make_jaxpr(lambda v, x: shifted.apply(v, x))(v, x)
    assert str(a) == str(b)  # ... for a constructor that builds the same nn.Conv


@pytest.mark.parametrize("swap", [cpu.shifted_depthwise, cpu.shifted_weight_grad])
@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_every_registered_model_builds_with_it(name, swap):
    # Positional nn.Conv arguments (AlexNet's strides, ResNet's) go through unchanged.
    model = models.create(name, num_classes=5)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    a = jax.eval_shape(model.init, jax.random.key(0), x)
    b = jax.eval_shape(swap(model).init, jax.random.key(0), x)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.leaves(a) == jax.tree.leaves(b)


def _conv(x, w, strides, pads):
    return lax.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )  # fmt: skip


@pytest.mark.parametrize(
    "size,k,stride,pads",
    [((9, 9), 3, 1, ((1, 1), (1, 1))), ((10, 7), 3, 2, ((0, 1), (1, 1))),
     ((8, 8), 1, 1, ((0, 0), (0, 0))), ((11, 12), 5, 2, ((2, 0), (1, 3)))],
)  # fmt: skip
def test_weight_grad_by_shifts_equals_the_convolutions_own(size, k, stride, pads):
    rng = np.random.default_rng(k * 10 + stride)
    x = jnp.asarray(rng.standard_normal((3, *size, 4), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 4, 5), np.float32))
    y, vjp = jax.vjp(lambda w: _conv(x, w, (stride, stride), pads), w)
    g = jnp.asarray(rng.standard_normal(y.shape, np.float32))
    ref = vjp(g)[0]  # XLA's transpose of the convolution in the kernel
    got = cpu.weight_grad_by_shifts(x, g, (k, k), (stride, stride), pads)
    assert got.shape == w.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(ref))))


def test_shifted_weight_grad_trains_as_the_native_model(monkeypatch):
    monkeypatch.setattr(cpu, "WIDE_CHANNELS", 1)  # every layer
    monkeypatch.setattr(cpu, "LARGE_MAP", 1)
    model = models.create("tiny_gap", num_classes=4)
    swapped = cpu.shifted_weight_grad(model)
    x = jnp.asarray(np.random.default_rng(5).standard_normal((4, 16, 16, 3), np.float32))
    v = jax.jit(model.init)(jax.random.key(0), x)
    v2 = jax.jit(swapped.init)(jax.random.key(0), x)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(v2), strict=True):
        np.testing.assert_array_equal(a, b)  # same names, shapes and initial values

    def grads(m):
        def loss(p):
            (logits, _), _ = m.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(jnp.sin(logits))

        return jax.jit(jax.value_and_grad(loss))(v["params"])

    (la, ga), (lb, gb) = grads(model), grads(swapped)
    np.testing.assert_allclose(lb, la, rtol=1e-5)  # the forward program is the same
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(a)) + 1))
    with pytest.raises(TypeError, match="custom_vjp"):  # reverse mode only, as documented
        jax.jvp(lambda x: swapped.apply(v, x)[0], (x,), (x,))


def test_shifted_weight_grad_reaches_only_cpu_programs(monkeypatch):
    monkeypatch.setattr(cpu, "WIDE_CHANNELS", 1)
    monkeypatch.setattr(cpu, "LARGE_MAP", 1)
    model = cpu.shifted_weight_grad(models.create("tiny_gap", num_classes=3, batch_norm=False))
    x = jnp.zeros((2, 8, 8, 3))
    v = jax.jit(model.init)(jax.random.key(0), x)
    fn = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x)[0])))
    convs = sum(leaf.ndim == 4 for leaf in jax.tree.leaves(v["params"]))  # 3x3 kernels
    texts = {p: jax.export.export(fn, platforms=(p,))(v["params"]).mlir_module()
             for p in ("cpu", "cuda", "tpu")}  # fmt: skip
    dots = {p: t.count("stablehlo.dot_general") for p, t in texts.items()}
    assert dots["cuda"] == dots["tpu"]
    assert dots["cpu"] - dots["cuda"] == 9 * convs  # one matmul per 3x3 tap, CPU only


def test_narrow_layers_keep_xlas_kernel_gradient(monkeypatch):
    model = cpu.shifted_weight_grad(models.create("tiny_gap", num_classes=3, batch_norm=False))
    x = jnp.zeros((2, 8, 8, 3))
    v = jax.eval_shape(model.init, jax.random.key(0), x)

    def traced():
        return str(jax.make_jaxpr(lambda v, x: model.apply(v, x))(v, x))

    assert "custom_vjp" not in traced()  # an 8 x 8 map is small
    monkeypatch.setattr(cpu, "LARGE_MAP", 1)
    assert traced().count("custom_vjp") == 2  # 64 -> 64 and the head's 64 -> 128 are wide


class _Grouped(nn.Module):
    conv: models.ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x):
        x = self.conv(8, (3, 3), feature_group_count=2, name="pairs")(x)  # not depthwise
        return self.conv(8, (3, 3), strides=2, feature_group_count=8, name="dw")(x)


def test_grouped_but_not_depthwise_stays_native():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 9, 9, 4), np.float32))
    a, b = _Grouped(), cpu.shifted_depthwise(_Grouped())
    v = jax.jit(a.init)(jax.random.key(0), x)
    assert v["params"]["pairs"]["kernel"].shape == (3, 3, 2, 8)
    assert v["params"]["dw"]["kernel"].shape == (3, 3, 1, 8)
    np.testing.assert_allclose(jax.jit(b.apply)(v, x), jax.jit(a.apply)(v, x), rtol=1e-5, atol=1e-5)
    v2 = jax.jit(b.init)(jax.random.key(0), x)
    for p, q in zip(jax.tree.leaves(v), jax.tree.leaves(v2), strict=True):
        np.testing.assert_array_equal(p, q)


def _devices_after(code: str, xla_flags: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    script = "import jax\nfrom camjax import cpu\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_split_cores():
    r = _devices_after("print(cpu.split_cores(3), jax.device_count())", None)
    assert r.stdout.split() == ["3", "3"], r.stderr[-2000:]
    r = _devices_after("print(cpu.split_cores(0), jax.device_count())", None)
    assert r.stdout.split() == ["0", "1"], r.stderr[-2000:]
    flag = "--xla_force_host_platform_device_count=2"
    r = _devices_after("print(cpu.split_cores(3), jax.device_count())", flag)
    assert r.stdout.split() == ["0", "2"], r.stderr[-2000:]  # the explicit flag wins
    r = _devices_after("jax.devices()\ncpu.split_cores(3)", None)
    assert r.returncode != 0 and "before backends are initialized" in r.stderr
