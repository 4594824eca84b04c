"""CAM methods on Flax models camjax does not own, written here the way a user would: a
small ResNet (setup-style, batch norm, a `train` flag) and a small ViT (class token).

References: Grad-CAM from a gradient taken by hand with jax.vjp on the model split in
two by its own methods; the GAP identity for plain CAM; batch == each image alone.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

import camjax
from camjax.methods import CamjaxWarning, ClassLogit, compute_maps

SIZE, C = 16, 5


class Block(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, name=name)  # noqa: E731
        y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, name="conv1")(x)
        y = nn.relu(bn("bn1")(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False, name="conv2")(y)
        y = bn("bn2")(y)
        if x.shape[-1] != self.features or self.strides != 1:
            x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False, name="proj")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    num_classes: int = C

    def setup(self):
        self.stem = nn.Conv(8, (3, 3), use_bias=False)
        self.stem_bn = nn.BatchNorm()
        self.stage1 = Block(8)
        self.stage2 = Block(12, strides=2)
        self.fc = nn.Dense(self.num_classes)

    def features(self, x, train: bool = False):
        x = nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
        return self.stage2(self.stage1(x, train), train)

    def classify(self, a):
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x, train: bool = False):
        return self.classify(self.features(x, train))


class EncoderBlock(nn.Module):
    dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2)(y, y)
        y = nn.LayerNorm()(x)
        return x + nn.Dense(self.dim)(nn.gelu(nn.Dense(2 * self.dim)(y)))


class ViT(nn.Module):
    num_classes: int = C
    dim: int = 16
    patch: int = 4

    def setup(self):
        self.embed = nn.Conv(self.dim, (self.patch, self.patch), self.patch)
        self.cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.dim))
        self.pos = self.param("pos", nn.initializers.normal(0.02), (1, 17, self.dim))
        self.block0 = EncoderBlock(self.dim)
        self.block1 = EncoderBlock(self.dim)
        self.norm = nn.LayerNorm()
        self.head = nn.Dense(self.num_classes)

    def tokens(self, x):
        t = self.embed(x)
        t = t.reshape(t.shape[0], -1, self.dim)
        cls = jnp.broadcast_to(self.cls, (t.shape[0], 1, self.dim))
        return self.block1(self.block0(jnp.concatenate([cls, t], 1) + self.pos))

    def after(self, t):
        return self.head(self.norm(t)[:, 0])

    def __call__(self, x):
        return self.after(self.tokens(x))


@pytest.fixture(scope="module")
def resnet():
    model = ResNet()
    # Non-trivial BN statistics and a non-zero bias (a method that adds it shows up).
    v = variables(model, jnp.zeros((1, SIZE, SIZE, 3)))
    v["params"]["fc"]["bias"] = jnp.linspace(-1.0, 1.0, C)
    return model, v


@pytest.fixture(scope="module")
def vit():
    model = ViT()
    return model, variables(model, jnp.zeros((1, SIZE, SIZE, 3)), seed=1)


@pytest.fixture(scope="module")
def images():
    return normal(2, (3, SIZE, SIZE, 3))


IDS = jnp.array([[4, 0], [1, 1], [2, 3]])
EVAL = {"train": False}


def _gradcam_by_hand(a, after, ids):
    """Grad-CAM with the gradient of `after` (features -> logits) by jax.vjp."""
    logits, vjp = jax.vjp(after, a)
    maps = []
    for n in range(ids.shape[1]):
        (g,) = vjp(jax.nn.one_hot(ids[:, n], logits.shape[-1]))
        w = g.mean(axis=(1, 2))  # [B, K]
        maps.append(jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, w)))
    return np.stack(maps, 1)


@pytest.mark.parametrize("layer", ["stage2", "stage1"])
def test_resnet_gradcam_matches_hand_vjp(layer, resnet, images):
    model, v = resnet
    if layer == "stage2":
        a = model.apply(v, images, method=ResNet.features)
        after = lambda f: model.apply(v, f, method=ResNet.classify)  # noqa: E731
    else:
        a = model.apply(v, images, method=lambda m, x: m.stage1(
            nn.relu(m.stem_bn(m.stem(x), use_running_average=True))))  # fmt: skip
        after = lambda f: model.apply(v, f, method=lambda m, f: m.classify(m.stage2(f)))  # noqa: E731
    want = _gradcam_by_hand(a, after, IDS)
    got = compute_maps("gradcam", model, v, images, IDS, layer=layer, apply_kwargs=EVAL)
    assert got.shape == want.shape and want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())


def test_resnet_cam_gap_identity_and_auto_classifier(resnet, images):
    model, v = resnet
    maps = compute_maps("cam", model, v, images, IDS, layer="stage2", apply_kwargs=EVAL)
    logits = model.apply(v, images)
    bias = v["params"]["fc"]["bias"]
    # GAP network: mean_ij M_c + b_c = S_c (Zhou et al. 2016, Eq. 2-3).
    got = np.asarray(maps.mean((-2, -1))) + np.asarray(bias)[np.asarray(IDS)]
    np.testing.assert_allclose(got, np.take_along_axis(logits, IDS, 1), rtol=1e-5, atol=1e-5)
    named = compute_maps("cam", model, v, images, IDS, layer="stage2", classifier="fc")
    np.testing.assert_allclose(named, maps, rtol=1e-6, atol=1e-6)
    # Grad-CAM at the pooled layer is ReLU(CAM) / (h w): the same identity the paper's
    # GAP networks have.
    grad = compute_maps("gradcam", model, v, images, IDS, layer="stage2")
    np.testing.assert_allclose(grad, np.maximum(maps, 0) / 64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcampp", "scorecam", "hirescam", "backprop"])
def test_resnet_batch_equals_alone(name, resnet, images):
    model, v = resnet
    batch = np.asarray(compute_maps(name, model, v, images, IDS, layer="stage2"))
    assert np.abs(batch).max() > 0
    for b in range(3):
        alone = compute_maps(name, model, v, images[b : b + 1], IDS[b : b + 1], layer="stage2")
        np.testing.assert_allclose(batch[b : b + 1], alone, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_vit_gradcam_tokens_match_hand_vjp(vit, images):
    model, v = vit
    tokens = model.apply(v, images, method=ViT.tokens)  # [B, 1 + 16, D]
    lead = tokens[:, :1]
    a = tokens[:, 1:].reshape(3, 4, 4, -1)

    def after(f):
        t = jnp.concatenate([lead, f.reshape(3, 16, -1)], 1)
        return model.apply(v, t, method=ViT.after)

    want = _gradcam_by_hand(a, after, IDS)

    def maps(name, x, ids, reshape=True):  # jitted: the ViT has many small ops
        fn = lambda x, ids: compute_maps(name, model, v, x, ids, layer="block1", reshape=reshape)  # noqa: E731
        return np.asarray(jax.jit(fn)(x, ids))

    for reshape in (True, (4, 4)):
        got = maps("gradcam", images, IDS, reshape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    batch = maps("layercam", images, IDS)
    for b in range(3):
        alone = maps("layercam", images[b : b + 1], IDS[b : b + 1])
        np.testing.assert_allclose(batch[b : b + 1], alone, rtol=1e-4, atol=1e-6)


def test_extract_on_user_models(resnet, vit, images):
    model, v = resnet
    out = camjax.extract(model, v, images, 2, method="gradcam", layer="stage2", gt_labels=IDS[:, 0])
    logits = model.apply(v, images)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    want_ids = np.argsort(-np.asarray(logits), 1)[:, :2]
    np.testing.assert_array_equal(out["class_ids"], want_ids)
    assert out["maps"].shape == (3, 2, SIZE, SIZE) and out["gt_maps"].shape == (3, 1, SIZE, SIZE)
    feat = camjax.extract(model, v, images, 2, layer="stage2", map_resolution="feature")
    assert feat["maps"].shape == (3, 2, 8, 8)
    chosen = camjax.extract(model, v, images, layer="stage2", class_ids=[3])
    np.testing.assert_array_equal(chosen["class_ids"], [[3]] * 3)
    vm, vv = vit
    # The head reads only the class token: the last block's gradient is zero, and said so.
    with pytest.warns(CamjaxWarning, match="identically zero"):
        vout = camjax.extract(vm, vv, images, 1, method="gradcam", layer="block1", reshape=True)
    assert vout["maps"].shape == (3, 1, SIZE, SIZE) and vout["boxes"].shape == (3, 1, 4)


def test_errors_name_the_problem(resnet, vit, images):
    model, v = resnet
    with pytest.raises(
        ValueError, match=r"layer 'stage9' is not a submodule.*stage2 \[3, 8, 8, 12\]"
    ):
        compute_maps("gradcam", model, v, images, IDS, layer="stage9")
    with pytest.raises(ValueError, match="layer is required"):
        compute_maps("gradcam", model, v, images, IDS)
    with pytest.raises(ValueError, match=r"classifier 'fc' has kernel \[12, 5\].*'stage1'.*K = 8"):
        compute_maps("cam", model, v, images, IDS, layer="stage1")
    with pytest.raises(ValueError, match="classifier 'nope' has no params"):
        compute_maps("cam", model, v, images, IDS, layer="stage2", classifier="nope")
    with pytest.raises(ValueError, match=r"layer 'fc' output has shape \[3, 5\], not a map"):
        compute_maps("gradcam", model, v, images, IDS, layer="fc")
    with pytest.raises(ValueError, match=r"class_ids must lie in \[0, 5\)"):
        compute_maps("gradcam", model, v, images, IDS + 3, layer="stage2")
    with pytest.raises(ValueError, match="the variables do not fit this model"):
        camjax.extract(model, {"params": {"stem": v["params"]["stem"]}}, images, layer="stage2")
    vm, vv = vit
    with pytest.raises(ValueError, match=r"\[3, 17, 16\].*reshape=True"):
        compute_maps("gradcam", vm, vv, images, IDS, layer="block1")
    with pytest.raises(ValueError, match="does not fit layer 'block1'"):
        compute_maps("gradcam", vm, vv, images, IDS, layer="block1", reshape=(5, 5))
    with pytest.raises(ValueError, match="reshape turns tokens"):
        compute_maps("gradcam", vm, vv, images, IDS, layer="head", reshape=True)
    with pytest.raises(ValueError, match="its target must be class ids"):
        compute_maps("cam", model, v, images, lambda out: out[:, :2], layer="stage2")
    # The target object form of class ids is accepted by CAM.
    np.testing.assert_allclose(
        compute_maps("cam", model, v, images, ClassLogit(IDS), layer="stage2"),
        compute_maps("cam", model, v, images, IDS, layer="stage2"),
        rtol=1e-6,
    )
