"""Backbones of the paper (Zhou et al., CVPR 2016) and the WSOL benchmark, through the registry.

Full-size networks only through ``jax.eval_shape`` (shapes, counts); real forward passes at
small inputs so that the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camjax import models

PAPER_MODELS = [
    "vgg16_gap",
    "alexnet_gap",
    "alexnet_star_gap",
    "googlenet_gap",
    "googlenet_gmp",
    "resnet50_gap",
]
BN_MODELS = ["googlenet_gap", "googlenet_gmp", "resnet50_gap"]


def _shapes(model, size: int, batch: int = 2):
    """(variables, logits, features, backbone map) as ShapeDtypeStructs, no compute."""
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    logits, features = jax.eval_shape(model.apply, variables, x)
    trunk, _ = jax.eval_shape(model.backbone.init_with_output, jax.random.key(0), x)
    return variables, logits, features, trunk


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


# (name, input side, backbone map side, backbone channels, head width K).
# VGG16: four 2x2 pools, 224 / 16 = 14. AlexNet: conv1 11x11/4 pad 2 gives
# floor((224 + 4 - 11) / 4) + 1 = 55 (56 at 227), two 3x3/2 pools: 55 -> 27 -> 13
# (56 -> 27 -> 13). GoogLeNet: 224 -> 112 (conv1) -> 56 -> 28 -> 14 (ceil-mode pools).
# ResNet-50: 224 / 16 = 14 with layer4 at stride 1.
RESOLUTIONS = [
    ("vgg16_gap", 224, 14, 512, 1024),
    ("alexnet_gap", 224, 13, 256, 1024),
    ("alexnet_gap", 227, 13, 256, 1024),
    ("alexnet_star_gap", 224, 13, 256, 512),
    ("alexnet_star_gap", 227, 13, 256, 512),
    ("googlenet_gap", 224, 14, 832, 1024),
    ("googlenet_gmp", 224, 14, 832, 1024),
    ("resnet50_gap", 224, 14, 2048, 1024),
]


@pytest.mark.parametrize("name,size,side,channels,width", RESOLUTIONS)
def test_map_resolution(name, size, side, channels, width):
    _, logits, features, trunk = _shapes(models.create(name, 7), size)
    assert trunk.shape == (2, side, side, channels)
    assert features.shape == (2, side, side, width)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32


# Independently known figures for the truncated trunks:
# - VGG16 conv layers: 14,714,688 (Keras VGG16(include_top=False).count_params()).
# - torchvision AlexNet ``features``: 23,296 + 307,392 + 663,936 + 884,992 + 590,080
#   = 2,469,696 (conv weights + biases, 64-192-384-256-256 channels).
# - torchvision ResNet-50: 25,557,032 in all (torchvision's weight docs) minus fc
#   2048 * 1000 + 1000 = 2,049,000 -> 23,508,032.
# - torchvision GoogLeNet: 6,624,904 in all (torchvision's weight docs, no aux heads)
#   minus fc 1024 * 1000 + 1000 = 1,025,000, minus inception5a and 5b. A BasicConv2d
#   i -> o with k x k kernel has i*o*k*k + 2*o (bias-free conv, BN scale and shift):
#   5a (832; 256, 160->320, 32->128, 128): 213,504 + 133,440 + 461,440 + 26,688 + 37,120
#   + 106,752 = 978,944; 5b (832; 384, 192->384, 48->128, 128): 320,256 + 160,128
#   + 664,320 + 40,032 + 55,552 + 106,752 = 1,347,040. Trunk: 3,273,920.
TRUNK_PARAMS = {
    "vgg16_gap": 14_714_688,
    "alexnet_gap": 2_469_696,
    "alexnet_star_gap": 2_469_696,
    "googlenet_gap": 6_624_904 - 1_025_000 - 978_944 - 1_347_040,
    "googlenet_gmp": 6_624_904 - 1_025_000 - 978_944 - 1_347_040,
    "resnet50_gap": 25_557_032 - 2_049_000,
}
TRUNK_CHANNELS = {
    "vgg16_gap": 512,
    "alexnet_gap": 256,
    "alexnet_star_gap": 256,
    "googlenet_gap": 832,
    "googlenet_gmp": 832,
    "resnet50_gap": 2048,
}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_parameter_counts(name):
    num_classes = 1000
    variables, *_ = _shapes(models.create(name, num_classes), 64, batch=1)
    assert _count(variables["params"]["backbone"]) == TRUNK_PARAMS[name]
    # Head: 3x3 convs with bias, then the dense layer K * C + C.
    widths = (512, 512) if name == "alexnet_star_gap" else (1024,)
    head, fan_in = 0, TRUNK_CHANNELS[name]
    for w in widths:
        head += 9 * fan_in * w + w
        fan_in = w
    head += fan_in * num_classes + num_classes
    assert _count(variables["params"]["head"]) == head
    assert set(variables["params"]) == {"backbone", "head"}


def test_batch_stats_only_for_bn_models():
    for name in PAPER_MODELS:
        variables, *_ = _shapes(models.create(name, 3), 64, batch=1)
        assert ("batch_stats" in variables) == (name in BN_MODELS), name


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_min_input_size_is_tight(name):
    model = models.create(name, 3)
    m = model.min_input_size
    _, _, features, _ = _shapes(model, m, batch=1)
    assert min(features.shape[1:3]) >= 1
    with pytest.raises(ValueError, match="minimum input size"):
        _shapes(model, m - 1, batch=1) if m > 1 else _shapes(model, 0, batch=1)
    if m > 1:
        # One pixel less and the bare trunk has no map left: it fails or comes out empty.
        x = jax.ShapeDtypeStruct((1, m - 1, m - 1, 3), jnp.float32)
        try:
            trunk, _ = jax.eval_shape(model.backbone.init_with_output, jax.random.key(0), x)
        except (ValueError, TypeError):
            return
        assert min(trunk.shape[1:3]) < 1


def test_create_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown model 'vgg19_gap'"):
        models.create("vgg19_gap", 10)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            models.create("resnet50_gap", bad)
    with pytest.raises(ValueError, match="3 channels"):
        _shapes_gray = jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
        jax.eval_shape(models.create("alexnet_gap", 3).init, jax.random.key(0), _shapes_gray)


def test_backbone_protocol_is_checked(monkeypatch):
    monkeypatch.setattr(models, "REGISTRY", dict(models.REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        models.register("tiny_gap", models.REGISTRY["tiny_gap"])
    with pytest.raises(TypeError, match="keyword dtype="):
        models.register("no_dtype", lambda num_classes, width=4: None)
    with pytest.raises(TypeError, match="num_classes first"):
        models.register("keyword_only", lambda *, num_classes, dtype=None: None)
    # Not a CAMNet: refused by name when built, not deep inside a method later.
    models.register("bare", lambda num_classes, dtype=None: models.CAMHead(num_classes))
    with pytest.raises(TypeError, match="backbone 'bare' built a CAMHead"):
        models.create("bare", 3)
    # A factory that forwards **kw is accepted; it is registered and built by name.
    models.register(
        "forwarding", lambda num_classes, **kw: models.REGISTRY["tiny_gap"](num_classes, **kw)
    )
    assert isinstance(models.create("forwarding", 3, dtype=jnp.bfloat16), models.CAMNet)


def test_every_registered_backbone_is_in_the_readme_table():
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in models.REGISTRY:
        assert f"| `{name}` |" in readme, f"README's model table has no row for {name!r}"


def test_sync_batch_norm_reaches_only_models_that_take_it():
    from camjax.train import loop
    from configs import default

    bn = {name for name in models.REGISTRY if models.takes_bn_axis_name(name)}
    assert set(BN_MODELS) <= bn and "vgg16_gap" not in bn and "alexnet_gap" not in bn
    config = default.get_config()
    config.model.sync_batch_norm = True
    config.cpu.shifted_depthwise = False
    for name in ("vgg16_gap", "resnet50_gap"):
        config.model.name = name
        model = loop.build_model(config, 3)  # vgg16_gap used to reject bn_axis_name
        axis = getattr(model.backbone, "bn_axis_name", None)
        assert axis == ("batch" if name in bn else None), name


def test_dtype_bfloat16_keeps_params_and_logits_float32():
    model = models.create("resnet50_gap", 5, dtype=jnp.bfloat16)
    variables, logits, features, trunk = _shapes(model, 64)
    assert trunk.dtype == jnp.bfloat16 and features.dtype == jnp.bfloat16
    assert logits.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


def _random_variables(model, size: int, seed: int):
    """Random variables with the model's tree, filled in numpy (no init compile).

    He-normal kernels (std sqrt(2 / fan_in)) keep activations O(1) through the deep trunks;
    biases, BN shifts and running means N(0, 0.1); BN scales 1 + N(0, 0.1); running
    variances U(0.5, 1.5). The classifier bias is non-zero, so the ``+ b_c`` term counts.
    """
    rng = np.random.default_rng(seed)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)
        if name == "scale":
            return (1 + rng.normal(0, 0.1, leaf.shape)).astype(np.float32)
        if name == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0, 0.1, leaf.shape).astype(np.float32)  # bias, mean

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def googlenet32():
    gap = models.create("googlenet_gap", 5)
    variables = _random_variables(gap, 32, seed=2)
    images = jax.random.normal(jax.random.key(4), (2, 32, 32, 3))
    return gap, variables, images


@pytest.mark.slow
def test_gmp_pools_with_max_and_differs_from_gap(googlenet32):
    gap, variables, images = googlenet32
    gmp = models.create("googlenet_gmp", 5)
    # Same parameter tree: GMP changes only the pooling, so GAP weights load into GMP.
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(gmp.init, jax.random.key(0), images)
    )
    logits_gap, f_gap = jax.jit(gap.apply)(variables, images)
    logits_gmp, f_gmp = jax.jit(gmp.apply)(variables, images)
    np.testing.assert_allclose(f_gmp, f_gap, rtol=1e-5, atol=1e-6)  # same map
    kernel, bias = models.classifier(variables)
    pooled_max = f_gmp.max(axis=(1, 2))
    np.testing.assert_allclose(logits_gmp, pooled_max @ kernel + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        logits_gap, f_gap.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-5, atol=1e-5
    )
    # A 2x2 map that is not constant: max > mean somewhere, so the logits differ.
    assert float(jnp.max(pooled_max - f_gap.mean(axis=(1, 2)))) > 1e-3
    assert float(jnp.max(jnp.abs(logits_gmp - logits_gap))) > 1e-4


def test_batchnorm_train_updates_stats_eval_does_not(googlenet32):
    gap, variables, images = googlenet32

    def run(train):
        return jax.jit(lambda v, x: gap.apply(v, x, train=train, mutable=["batch_stats"]))(
            variables, images
        )[1]["batch_stats"]

    # Eval mode needs no axis name and leaves the statistics alone.
    for a, b in zip(
        jax.tree.leaves(run(False)), jax.tree.leaves(variables["batch_stats"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    stats = run(True)
    # Every BN layer moved its running statistics.
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(variables["batch_stats"]), strict=True):
        assert not np.allclose(a, b)
    # conv1's BN by hand, Flax momentum 0.9: mean' = 0.9 mean + 0.1 * batch mean of conv1's
    # output, var' = 0.9 var + 0.1 * batch variance (biased, as Flax keeps it).
    kernel = variables["params"]["backbone"]["conv1"]["conv"]["kernel"]
    y = jax.lax.conv_general_dilated(
        images, kernel, (2, 2), ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    new, old = stats["backbone"]["conv1"]["bn"], variables["batch_stats"]["backbone"]["conv1"]["bn"]
    want_mean = 0.9 * old["mean"] + 0.1 * y.mean(axis=(0, 1, 2))
    want_var = 0.9 * old["var"] + 0.1 * y.var(axis=(0, 1, 2))
    np.testing.assert_allclose(new["mean"], want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new["var"], want_var, rtol=1e-4, atol=1e-5)


def test_synchronised_batchnorm_under_pmap_equals_global_batch():
    # One ResNet bottleneck (with its downsample branch) on 8 simulated devices, 2 images
    # each: with bn_axis_name the statistics are those of all 16 images; without, device 0's.
    import functools

    import flax.linen as nn

    from camjax.models.resnet import Bottleneck

    n = jax.local_device_count()
    x = jax.random.normal(jax.random.key(5), (n, 2, 6, 6, 8))
    conv = functools.partial(nn.Conv, use_bias=False)
    synced, local = (
        Bottleneck(
            4,
            conv,
            functools.partial(nn.BatchNorm, use_running_average=False, axis_name=a),
            stride=2,
        )
        for a in ("batch", None)
    )
    variables = jax.jit(local.init)(jax.random.key(6), x[0])

    def train(module):
        return lambda v, xs: module.apply(v, xs, mutable=["batch_stats"])

    (y_sync, s_sync) = jax.pmap(train(synced), axis_name="batch", in_axes=(None, 0))(variables, x)
    y_all, s_all = jax.jit(train(local))(variables, x.reshape(-1, *x.shape[2:]))
    np.testing.assert_allclose(y_sync.reshape(y_all.shape), y_all, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s_sync), jax.tree.leaves(s_all), strict=True):
        np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6)  # same on every device
        np.testing.assert_allclose(a[-1], b, rtol=1e-4, atol=1e-6)
    _, s_dev0 = jax.jit(train(local))(variables, x[0])
    mean_all = s_all["batch_stats"]["bn1"]["mean"]
    assert not np.allclose(s_dev0["batch_stats"]["bn1"]["mean"], mean_all, atol=1e-4)


@pytest.mark.parametrize("name", BN_MODELS)
def test_factories_pass_bn_axis_name_and_momentum(name):
    model = models.create(name, 3, bn_axis_name="devices", bn_momentum=0.5)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # eval mode: no axis needed
    jax.eval_shape(model.apply, variables, x)
    # Train mode outside any mapped axis must name the missing axis.
    with pytest.raises(NameError, match="devices"):
        jax.eval_shape(
            lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
        )
    assert model.backbone.bn_momentum == 0.5
