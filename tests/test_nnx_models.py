"""CAM methods on Flax NNX models, written here the way a user writes them (Flax's docs
style: submodules built in __init__ with rngs, batch norm, an nnx.List of blocks).

References: Grad-CAM from gradients taken by hand with jax.vjp on the model's own
submodules; the GAP identity for plain CAM; a batch equals its images taken alone.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import camjax
from camjax.maps import normalize, upsample
from camjax.methods import METHODS, TTA, ClassProbability, SmoothGrad, compute_maps, per_image
from camjax.methods.checks import CamjaxWarning

SIZE, C = 16, 5


class ConvBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
        self.proj = nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(self.proj(x) + y)


class Backbone(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.layer1 = ConvBlock(8, 8, 1, rngs=rngs)
        self.layer2 = ConvBlock(8, 12, 2, rngs=rngs)

    def __call__(self, x):
        return self.layer2(self.layer1(nnx.relu(self.stem(x))))


class ResNet(nnx.Module):
    def __init__(self, num_classes: int = C, *, rngs: nnx.Rngs):
        self.backbone = Backbone(rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.fc = nnx.Linear(12, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.fc(self.dropout(self.backbone(x).mean(axis=(1, 2))))


class EncoderBlock(nnx.Module):
    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(2, dim, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.mlp2 = nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp2(nnx.gelu(self.mlp1(self.norm2(x))))


class ViT(nnx.Module):
    def __init__(self, num_classes: int = C, dim: int = 16, patch: int = 4, *, rngs: nnx.Rngs):
        self.dim = dim
        self.embed = nnx.Conv(3, dim, (patch, patch), strides=patch, rngs=rngs)
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim)))
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 17, dim)))
        self.blocks = nnx.List([EncoderBlock(dim, rngs=rngs) for _ in range(2)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, x):
        t = self.embed(x).reshape(x.shape[0], -1, self.dim)
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, self.dim))
        t = jnp.concatenate([cls, t], axis=1) + self.pos[...]
        for block in self.blocks:
            t = block(t)
        return self.head(self.norm(t)[:, 0])


def _with_stats(model: ResNet) -> ResNet:
    """Non-trivial batch-norm statistics and classifier bias (a method that drops the
    bias or uses batch statistics shows up)."""
    rng = np.random.default_rng(3)
    for _, m in nnx.iter_graph(model):
        if isinstance(m, nnx.BatchNorm):
            k = m.mean[...].shape
            m.mean[...] = jnp.asarray(rng.normal(0, 0.3, k), jnp.float32)
            m.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, k), jnp.float32)
    model.fc.bias[...] = jnp.linspace(-1.0, 1.0, C)
    return model


@pytest.fixture(scope="module")
def resnet():
    model = _with_stats(ResNet(rngs=nnx.Rngs(0)))
    model.eval()
    return model


@pytest.fixture(scope="module")
def vit():
    model = ViT(rngs=nnx.Rngs(1))
    model.eval()
    return model


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(2), (3, SIZE, SIZE, 3))


IDS = jnp.array([[4, 0], [1, 1], [2, 3]])


def _gradcam_by_hand(a, after, ids):
    """Grad-CAM with the gradient of ``after`` (features -> logits) by jax.vjp."""
    logits, vjp = jax.vjp(after, a)
    maps = []
    for n in range(ids.shape[1]):
        (g,) = vjp(jax.nn.one_hot(ids[:, n], logits.shape[-1]))
        maps.append(jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, g.mean(axis=(1, 2)))))
    return np.stack(maps, 1)


def test_resnet_gradcam_matches_hand_vjp(resnet, images):
    b = resnet.backbone
    a = b.layer2(b.layer1(nnx.relu(b.stem(images))))
    want = _gradcam_by_hand(a, lambda f: resnet.fc(f.mean(axis=(1, 2))), IDS)
    got = compute_maps("gradcam", resnet, images, IDS, layer="backbone.layer2")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # The same layer one level up ("backbone"): the same map.
    top = compute_maps("gradcam", resnet, images, IDS, layer="backbone")
    np.testing.assert_allclose(top, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_gap_identity_and_classifier_lookup(resnet, images):
    logits = resnet(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamjaxWarning)  # the identity holds: no warning
        cams = compute_maps("cam", resnet, images, IDS, layer="backbone.layer2")
    lhs = cams.mean(axis=(-2, -1)) + resnet.fc.bias[...][IDS]
    np.testing.assert_allclose(lhs, jnp.take_along_axis(logits, IDS, 1), rtol=1e-4, atol=1e-4)
    named = compute_maps("cam", resnet, images, IDS, layer="backbone.layer2", classifier="fc")
    np.testing.assert_allclose(named, cams, rtol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_batch_equals_single(method, resnet, images):
    opts = {"chunk_size": 4} if method == "scorecam" else {}
    got = compute_maps(method, resnet, images, IDS, layer="backbone.layer2", **opts)[1:2]
    one = compute_maps(method, resnet, images[1:2], IDS[1:2], layer="backbone.layer2", **opts)
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_allclose(got, one, rtol=2e-4, atol=1e-5 * (np.abs(one).max() + 1e-12))


def test_train_mode_model_runs_in_eval_on_a_copy(images):
    model = _with_stats(ResNet(rngs=nnx.Rngs(0)))  # as built: train mode (BN batch stats)
    assert model.backbone.layer1.bn1.use_running_average is False
    mean_before = np.asarray(model.backbone.layer1.bn1.mean[...])
    got = compute_maps("gradcam", model, images, IDS, layer="backbone.layer2")
    # The user's model is untouched: still in train mode, statistics unchanged.
    assert model.backbone.layer1.bn1.use_running_average is False
    assert model.dropout.deterministic is False
    np.testing.assert_array_equal(model.backbone.layer1.bn1.mean[...], mean_before)
    model.eval()
    want = compute_maps("gradcam", model, images, IDS, layer="backbone.layer2")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_extract(resnet, images):
    out = camjax.extract(resnet, images, 2, method="gradcam", layer="backbone.layer2")
    np.testing.assert_array_equal(out["class_ids"], jax.lax.top_k(resnet(images), 2)[1])
    raw = compute_maps("gradcam", resnet, images, out["class_ids"], layer="backbone.layer2")
    np.testing.assert_allclose(
        out["maps"], normalize(upsample(raw, (SIZE, SIZE), "bilinear"), "minmax"), atol=1e-5
    )
    assert out["boxes"].shape == (3, 2, 4)
    # Plain CAM (the default method) finds the nnx.Linear by itself; chosen classes.
    cam = camjax.extract(resnet, images, layer="backbone.layer2", class_ids=[3, 1])
    assert cam["maps"].shape == (3, 2, SIZE, SIZE)
    # The explicit pure form: extract(model, state, images, top_k).
    pure = camjax.extract(resnet, nnx.state(resnet), images, 2, method="gradcam",
                          layer="backbone.layer2")  # fmt: skip
    np.testing.assert_allclose(pure["maps"], out["maps"], atol=1e-6)


def test_targets_and_smoothing(resnet, images):
    kw = {"layer": "backbone.layer2"}
    probs = compute_maps("gradcampp", resnet, images, ClassProbability(IDS), **kw)
    own = compute_maps("hirescam", resnet, images, per_image(lambda o: o[:2]), **kw)
    assert probs.shape == (3, 2, 8, 8) and own.shape == (3, 2, 8, 8)
    plain = compute_maps("layercam", resnet, images, IDS, **kw)
    flip1 = compute_maps("layercam", resnet, images, IDS, tta=TTA(flips=(False,)), **kw)
    np.testing.assert_allclose(flip1, plain, rtol=1e-6)
    for extra in ({"tta": TTA()}, {"smoothgrad": SmoothGrad(samples=2)}, {"eigen": True}):
        m = compute_maps("xgradcam", resnet, images, IDS, **extra, **kw)
        assert m.shape == (3, 2, 8, 8) and np.isfinite(np.asarray(m)).all()


@pytest.mark.slow
def test_vit_tokens_match_hand_vjp(vit, images):
    t = jnp.concatenate(
        [jnp.broadcast_to(vit.cls[...], (3, 1, 16)), vit.embed(images).reshape(3, -1, 16)], 1
    )
    t0 = vit.blocks[0](t + vit.pos[...])

    def after(a):  # patch tokens as a map -> logits, the class token held
        tokens = jnp.concatenate([t0[:, :1], a.reshape(3, 16, 16)], axis=1)
        return vit.head(vit.norm(vit.blocks[1](tokens))[:, 0])

    want = _gradcam_by_hand(t0[:, 1:].reshape(3, 4, 4, 16), after, IDS)
    for layer in ("blocks.0", "blocks[0]", "blocks/0"):
        got = compute_maps("gradcam", vit, images, IDS, layer=layer, reshape=True)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_vit_pitfalls_are_reported(vit, images):
    # The head reads only the class token: at the last block every gradient is zero.
    with pytest.warns(CamjaxWarning, match="identically zero.*class token"):
        maps = compute_maps("gradcam", vit, images, IDS, layer="blocks.1", reshape=True)
    assert not np.asarray(maps).any()
    # Plain CAM's identity cannot hold on a class-token head.
    with pytest.warns(CamjaxWarning, match="identity"):
        compute_maps("cam", vit, images, IDS, layer="blocks.0", reshape=True)


def test_wrong_layer_and_classifier_errors(resnet, images):
    with pytest.raises(ValueError, match=r"not a submodule.*backbone\.layer2 \[3, 8, 8, 12\]"):
        compute_maps("gradcam", resnet, images, IDS, layer="backbone.layer9")
    with pytest.raises(ValueError, match="layer is required for an NNX model"):
        compute_maps("gradcam", resnet, images, IDS)
    with pytest.raises(ValueError, match="classifier 'backbone.stem' has kernel"):
        compute_maps("cam", resnet, images, IDS, layer="backbone.layer2",
                     classifier="backbone.stem")  # fmt: skip


class NeedsFlag(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(4, C, rngs=rngs)
        self.config = {"classes": C}  # an unhashable static attribute

    def __call__(self, x, *, train: bool):
        type(self).traced += 1  # counts the Python calls: traces, not runs
        return self.fc(self.conv(x).mean(axis=(1, 2)))

    traced = 0


def test_call_keywords_and_one_trace(images):
    model = NeedsFlag(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="apply_kwargs"):
        compute_maps("gradcam", model, images, IDS, layer="conv")
    run = {"layer": "conv", "apply_kwargs": {"train": False}}
    first = compute_maps("gradcam", model, images, IDS, **run)
    n = NeedsFlag.traced
    again = compute_maps("gradcam", model, images, IDS, **run)
    assert NeedsFlag.traced == n  # the compiled program was reused, nothing traced
    np.testing.assert_array_equal(first, again)
    # New weights, same structure: still no trace, and the new weights are used.
    model.fc.kernel[...] = -model.fc.kernel[...]
    flipped = compute_maps("gradcam", model, images, IDS, **run)
    assert NeedsFlag.traced == n
    assert not np.allclose(flipped, first)


def test_inside_the_callers_jit(resnet, images):
    want = compute_maps("gradcam", resnet, images, IDS, layer="backbone.layer2")
    f = jax.jit(lambda x: compute_maps("gradcam", resnet, x, IDS, layer="backbone.layer2"))
    np.testing.assert_allclose(f(images), want, rtol=1e-5, atol=1e-6)

    @nnx.jit
    def g(model, x):
        return compute_maps("gradcam", model, x, IDS, layer="backbone.layer2")

    np.testing.assert_allclose(g(resnet, images), want, rtol=1e-5, atol=1e-6)
