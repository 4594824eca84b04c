"""Targets beyond a class id, against gradients taken by hand with jax.vjp."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

import camjax
from camjax.maps import normalize, upsample
from camjax.methods import ClassProbability, RegionSum, Similarity, compute_maps, per_image

SIZE, C, D = 8, 4, 6


class Net(nn.Module):
    """conv -> conv ("feat") -> GAP -> Dense; ``seg=True``: a 1x1 conv per pixel instead."""

    out: int = C
    seg: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        a = nn.relu(nn.Conv(5, (3, 3), name="feat")(x))
        if self.seg:
            return nn.Conv(self.out, (1, 1), name="pixel")(a)
        return nn.Dense(self.out, name="fc")(a.mean((1, 2)))


def _model(out=C, seg=False):
    m = Net(out, seg)
    return m, variables(m, jnp.zeros((1, SIZE, SIZE, 3)), seed=out + seg)


def _features_and_after(model, v, images):
    captured = {}

    def grab(next_fun, args, kwargs, ctx):
        out = next_fun(*args, **kwargs)
        if ctx.module.path == ("feat",):
            captured["a"] = out
        return out

    with nn.intercept_methods(grab):
        model.apply(v, images)
    return captured["a"]


def _after(model, v):
    """The network after "feat" (a Conv; its ReLU comes after), written out by hand."""
    p = v["params"]
    if model.seg:
        k, bias = p["pixel"]["kernel"][0, 0], p["pixel"]["bias"]
        return lambda a: jnp.einsum("bhwk,kc->bhwc", jax.nn.relu(a), k) + bias
    return lambda a: jax.nn.relu(a).mean((1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"]


def _gradcam(a, after, score):
    """Grad-CAM with d score[:, n] / dA by jax.vjp (score: output -> [B, N])."""
    s, vjp = jax.vjp(lambda f: score(after(f)), a)
    maps = []
    for n in range(s.shape[1]):
        (g,) = vjp(jnp.zeros_like(s).at[:, n].set(1.0))
        maps.append(jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, g.mean((1, 2)))))
    return np.stack(maps, 1)


@pytest.fixture(scope="module")
def images():
    return normal(3, (3, SIZE, SIZE, 3))


IDS = jnp.array([[0, 3], [2, 2], [1, 0]])


def _check(model, v, images, target, score):
    a = _features_and_after(model, v, images)
    want = _gradcam(a, _after(model, v), score)
    got = compute_maps("gradcam", model, v, images, target, layer="feat")
    assert want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    for b in range(3):  # per-image target arrays line up with their images
        sliced = jax.tree.map(lambda t, b=b: t[b : b + 1] if t.shape[:1] == (3,) else t, target)
        alone = compute_maps("gradcam", model, v, images[b : b + 1], sliced, layer="feat")
        np.testing.assert_allclose(alone, got[b : b + 1], rtol=1e-4, atol=1e-5 * want.max())
    return got


def test_class_probability(images):
    model, v = _model()
    _check(model, v, images, ClassProbability(IDS),
           lambda out: jnp.take_along_axis(jax.nn.softmax(out), IDS, 1))  # fmt: skip


def test_per_image_function(images):
    model, v = _model()
    margin = lambda out, c: out[c] - jnp.mean(out)  # noqa: E731  one image, one class
    ids = jnp.array([3, 0, 1])
    _check(model, v, images, per_image(margin, ids),
           lambda out: (out[jnp.arange(3), ids] - out.mean(1))[:, None])  # fmt: skip


def test_similarity_to_embeddings(images):
    model, v = _model(out=D)
    emb = normal(9, (3, 2, D))

    def cos(out):
        num = jnp.einsum("bd,bnd->bn", out, emb)
        return num / (jnp.linalg.norm(out, axis=1)[:, None] * jnp.linalg.norm(emb, axis=2))

    _check(model, v, images, Similarity(emb), cos)


def test_region_sum_on_a_segmentation_output(images):
    model, v = _model(seg=True)
    mask = jnp.zeros((3, 2, SIZE, SIZE)).at[:, 0, :4, :4].set(1.0).at[:, 1, 2:, 3:].set(1.0)

    def region(out):  # [B, H, W, C]
        per = jnp.stack([out[b, :, :, IDS[b]].transpose(0, 1, 2) for b in range(3)])
        return (per * mask).sum((-2, -1))

    _check(model, v, images, RegionSum(IDS, mask), region)
    # No Dense after the layer: plain CAM says so and names the layer.
    with pytest.raises(ValueError, match="no nn.Dense is called after layer 'feat'"):
        compute_maps("cam", model, v, images, IDS, layer="feat")


def test_extract_with_a_target(images):
    model, v = _model(out=D)
    emb = normal(9, (2, D))
    out = camjax.extract(
        model, v, images, 2, method="gradcam", layer="feat", target=Similarity(emb)
    )
    logits = model.apply(v, images)
    want = Similarity(emb)(logits)
    np.testing.assert_allclose(out["scores"], want, rtol=1e-5, atol=1e-6)
    raw = compute_maps("gradcam", model, v, images, Similarity(emb), layer="feat")
    full = normalize(upsample(raw, SIZE))
    np.testing.assert_allclose(out["maps"], full, atol=1e-5)
    assert out["class_ids"].shape == (3, 2) and out["boxes"].shape == (3, 2, 4)
    # class_target="probability": the class maps explain softmax(S)_c.
    prob = camjax.extract(
        model, v, images, 2, method="gradcam", layer="feat", class_target="probability"
    )
    ids = jnp.asarray(prob["class_ids"])
    raw = compute_maps("gradcam", model, v, images, ClassProbability(ids), layer="feat")
    full = normalize(upsample(raw, SIZE))
    np.testing.assert_allclose(prob["maps"], full, atol=1e-5)
    with pytest.raises(ValueError, match="class_target"):
        camjax.extract(model, v, images, layer="feat", class_target="softmax")
    with pytest.raises(ValueError, match="not both"):
        camjax.extract(model, v, images, layer="feat", target=Similarity(emb), class_ids=[1])
    with pytest.raises(ValueError, match="target must give scores"):
        camjax.extract(model, v, images, layer="feat", target=lambda out: out[:, 0])
