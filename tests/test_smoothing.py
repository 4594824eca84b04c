"""Smoothing: TTA, SmoothGrad and eigen smoothing against references built by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

from camjax.methods import TTA, SmoothGrad, compute_maps
from camjax.methods.combine import combine

SIZE, C = 8, 3


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        a = nn.relu(nn.Conv(6, (3, 3), (2, 2), name="feat")(x))
        return nn.Dense(C, name="fc")(a.mean((1, 2)))


@pytest.fixture(scope="module")
def net():
    m = Net()
    return m, variables(m, jnp.zeros((1, SIZE, SIZE, 3)))


@pytest.fixture(scope="module")
def images():
    return normal(1, (2, SIZE, SIZE, 3))


IDS = jnp.array([[0, 2], [1, 1]])


def _maps(model, v, x, **kw):
    return np.asarray(compute_maps("gradcam", model, v, x, IDS, layer="feat", **kw))


def test_tta_flips_and_scales_are_mapped_back(net, images):
    model, v = net
    plain = _maps(model, v, images)
    flipped = _maps(model, v, images[:, :, ::-1])[..., ::-1]
    assert not np.allclose(plain, flipped)  # the net is not mirror-symmetric
    got = _maps(model, v, images, tta=TTA(flips=(True,)))
    np.testing.assert_allclose(got, flipped, rtol=1e-5, atol=1e-7)
    got = _maps(model, v, images, tta=TTA())
    np.testing.assert_allclose(got, (plain + flipped) / 2, rtol=1e-5, atol=1e-7)
    big = jax.image.resize(images, (2, 2 * SIZE, 2 * SIZE, 3), "bilinear")
    up = _maps(model, v, big)  # 8x8 maps, mapped back to the plain 4x4
    want = (plain + np.asarray(jax.image.resize(up, plain.shape, "bilinear"))) / 2
    got = _maps(model, v, images, tta=TTA(flips=(False,), scales=(1.0, 2.0)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_smoothgrad_is_the_mean_over_noisy_copies(net, images):
    model, v = net
    plain = _maps(model, v, images)
    np.testing.assert_allclose(
        _maps(model, v, images, smoothgrad=SmoothGrad(samples=1, noise=0.0)), plain, rtol=1e-5
    )
    spec = SmoothGrad(samples=3, noise=0.2, seed=4)
    span = images.max((1, 2, 3), keepdims=True) - images.min((1, 2, 3), keepdims=True)
    keys = jax.random.split(jax.random.key(4), 3)
    want = np.mean(
        [_maps(model, v, images + 0.2 * span * jax.random.normal(k, images.shape)) for k in keys],
        axis=0,
    )
    got = _maps(model, v, images, smoothgrad=spec)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, plain)
    # Jitted as a whole, smoothing included.
    fn = jax.jit(lambda x: compute_maps("gradcam", model, v, x, IDS, layer="feat",
                                        smoothgrad=spec, tta=TTA(flips=(True,))))  # fmt: skip
    eager = _maps(model, v, images[:, :, ::-1], smoothgrad=spec)[..., ::-1]
    np.testing.assert_allclose(fn(images), eager, rtol=1e-4, atol=1e-6)


def _eigen_reference(a, w):
    """First principal component of the weighted activations, by NumPy's SVD, with the
    sign that correlates with the plain sum."""
    out = np.zeros(w.shape[:2] + a.shape[1:3])
    for b in range(a.shape[0]):
        for n in range(w.shape[1]):
            x = (a[b] * w[b, n]).reshape(-1, a.shape[-1]).astype(np.float64)
            xc = x - x.mean(0)
            p = xc @ np.linalg.svd(xc, full_matrices=False)[2][0]
            p = -p if p @ x.sum(1) < 0 else p
            out[b, n] = p.reshape(a.shape[1:3])
    return out


def test_eigen_smoothing_hand_and_reference():
    # Rank one: A(i, j, k) = s(i, j) u_k, so X = s (w * u) and the projection is
    # (s - mean s) * |w * u|, positive because sum_k w_k u_k > 0.
    s = np.arange(12, dtype=np.float32).reshape(1, 3, 4) ** 1.5
    u = np.array([1.0, -2.0, 0.5], np.float32)
    a = s[..., None] * u
    w = np.array([[[2.0, -1.0, 4.0]]], np.float32)  # sum w u = 2 + 2 + 2 = 6
    got = np.asarray(combine(jnp.asarray(a), jnp.asarray(w), relu=False, eigen=True))
    want = (s - s.mean()) * np.linalg.norm(w[0, 0] * u)
    np.testing.assert_allclose(got[0, 0], want[0], rtol=1e-4, atol=1e-4)
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5)).astype(np.float32)
    w = rng.normal(size=(2, 2, 5)).astype(np.float32)
    got = combine(jnp.asarray(a), jnp.asarray(w), relu=False, eigen=True)
    np.testing.assert_allclose(got, _eigen_reference(a, w), rtol=1e-3, atol=1e-5)
    relu = combine(jnp.asarray(a), jnp.asarray(w), relu=True, eigen=True)
    np.testing.assert_allclose(relu, np.maximum(_eigen_reference(a, w), 0), rtol=1e-3, atol=1e-5)


def test_eigen_through_a_method_and_bad_combinations(net, images):
    model, v = net
    got = _maps(model, v, images, eigen=True)
    assert got.shape == (2, 2, 4, 4) and got.min() >= 0 and got.max() > 0
    with pytest.raises(ValueError, match="SmoothGrad averages gradients; 'cam'"):
        compute_maps("cam", model, v, images, IDS, layer="feat", smoothgrad=SmoothGrad())
    with pytest.raises(ValueError, match="eigen smoothing needs layer features; 'backprop'"):
        compute_maps("backprop", model, v, images, IDS, eigen=True)
    with pytest.raises(ValueError, match="positive scales"):
        TTA(scales=(0.0,))
    with pytest.raises(ValueError, match="samples >= 1"):
        SmoothGrad(samples=0)
