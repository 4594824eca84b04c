"""CAM (the registered method) against its formula and the CAM identity on the registered
backbones; camjax.maps: upsample, normalize."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cam_reference import cam_reference

from camjax import models
from camjax.maps import normalize, upsample
from camjax.methods import METHODS
from camjax.methods.compute import run
from camjax.methods.layer import Cut
from camjax.methods.targets import ClassLogit


def _random_variables(model, images, seed: int = 0) -> dict:
    """Variables of ``model`` drawn with numpy from the shapes of its init (the identity
    holds for any parameters): traces ``init`` without compiling it, which costs more than
    the forward pass on these CPUs. Kernels ~ N(0, 1/fan_in) keep deep activations finite;
    every bias, the classifier's included, is random and nonzero (a zero bias would let a
    missing bias term go unnoticed); BatchNorm variances lie in [0.5, 1.5]."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name.rsplit("[", 1)[-1]:
            return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


# Every registered backbone, so a new one is covered without editing this file; the deep
# ones compile slowly and run in the whole suite only.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[] if n == "tiny_gap" else [pytest.mark.slow]) for n in models.REGISTRY],
)
def test_gap_identity(name):
    num_classes = 6
    model = models.create(name, num_classes)
    if model.head.pool != "avg":
        pytest.skip(f"{name} pools by max: the GAP identity does not apply")
    # At least 64 px: every registered backbone leaves a map of >= 2x2 (asserted below), so
    # the spatial mean is a real mean.
    size = max(64, model.min_input_size)
    images = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    # Different classes per image, a repeated class, and not sorted.
    class_ids = jnp.array([[5, 0, 2, 2], [1, 4, 3, 0]])
    variables = _random_variables(model, images)

    @jax.jit
    def run(variables, images):
        logits, features = model.apply(variables, images, train=False)
        kernel, bias = models.classifier(variables)
        maps = _registered_cam(features, kernel, class_ids)
        return logits, maps, bias, features

    logits, maps, bias, features = run(variables, images)
    assert np.all(np.abs(bias) > 0)
    assert maps.shape == (2, 4) + features.shape[1:3]
    assert min(features.shape[1:3]) >= 2
    lhs = maps.mean((-2, -1)) + bias[class_ids]
    rhs = jnp.take_along_axis(logits, class_ids, axis=1)
    assert np.all(np.isfinite(rhs))
    scale = float(jnp.abs(rhs).max()) + 1e-6
    np.testing.assert_allclose(lhs, rhs, atol=2e-4 * scale, rtol=1e-4)


def _registered_cam(features, kernel, class_ids):
    """camjax's CAM (camjax.methods.cam) on a network's features and dense kernel."""
    cut = Cut(None, None, jnp.asarray(features), None, None, lambda: jnp.asarray(kernel), "head")
    return run(METHODS["cam"], cut, ClassLogit(jnp.asarray(class_ids)))


def test_cam_matches_loop_reference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 4, 5, 7)).astype(np.float32)
    kernel = rng.normal(size=(7, 9)).astype(np.float32)
    class_ids = np.array([[8, 0], [3, 3], [1, 7]])
    ref = np.zeros((3, 2, 4, 5), np.float32)
    for b in range(3):
        for n in range(2):
            for k in range(7):
                ref[b, n] += kernel[k, class_ids[b, n]] * features[b, :, :, k]
    out = _registered_cam(features, kernel, class_ids)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # The einsum reference the other tests use is the same formula, to float rounding.
    np.testing.assert_allclose(
        cam_reference(features, kernel, class_ids), ref, rtol=1e-5, atol=1e-5
    )


def test_cam_out_of_range_class_id_under_jit_is_a_nan_map():
    # Under jit the ids cannot be checked (compute_maps refuses concrete ones, see
    # test_saliency.py): the documented result is a NaN map.
    features, kernel = jnp.ones((2, 3, 3, 4)), jnp.ones((4, 5))
    out = jax.jit(_registered_cam)(features, kernel, jnp.array([[0], [5]]))
    assert np.all(out[0] == 4.0) and np.all(np.isnan(out[1]))


def test_upsample_bilinear_hand_values_and_opencv():
    # Half-pixel centres: output x = 0..3 samples input at (x + 0.5) / 2 - 0.5 =
    # -0.25, 0.25, 0.75, 1.25; clamped at the edges, [0, 1] -> [0, 0.25, 0.75, 1].
    out = upsample(jnp.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)
    rng = np.random.default_rng(1)
    small = rng.normal(size=(7, 5)).astype(np.float32)
    ref = cv2.resize(small, (20, 28), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(upsample(jnp.asarray(small), (28, 20)), ref, atol=1e-5)
    # Leading axes are carried through.
    batch = upsample(jnp.asarray(np.stack([small, -small]))[None], 14)
    assert batch.shape == (1, 2, 14, 14)
    np.testing.assert_allclose(batch[0, 1], -batch[0, 0], atol=1e-6)


def test_upsample_bicubic_reproduces_a_linear_ramp_inside():
    # A cubic convolution kernel reproduces linear functions exactly away from the edges.
    ramp = jnp.tile(jnp.arange(8.0), (8, 1))
    out = np.asarray(upsample(ramp, 32, "bicubic"))
    x = (np.arange(32) + 0.5) / 4 - 0.5
    np.testing.assert_allclose(out[:, 8:24], np.tile(x[8:24], (32, 1)), atol=1e-4)
    with pytest.raises(ValueError, match="upsample method"):
        upsample(ramp, 16, "nearest")


def test_normalize_hand_values():
    m = jnp.array([[1.0, 3.0], [5.0, 9.0]])
    # minmax: (m - 1) / 8.
    np.testing.assert_allclose(normalize(m), [[0.0, 0.25], [0.5, 1.0]])
    # max: max(m, 0) / 9.
    np.testing.assert_allclose(normalize(m, "max"), np.array([[1.0, 3.0], [5.0, 9.0]]) / 9.0)
    neg = jnp.array([[-2.0, 2.0], [4.0, 8.0]])
    np.testing.assert_allclose(normalize(neg, "max"), [[0.0, 0.25], [0.5, 1.0]])
    # relu first: [0, 2, 4, 8] -> minmax (x - 0) / 8.
    np.testing.assert_allclose(normalize(neg, relu=True), [[0.0, 0.25], [0.5, 1.0]])
    # Each map on its own.
    both = normalize(jnp.stack([m, 10 * m + 3]))
    np.testing.assert_allclose(both[0], both[1], atol=1e-6)


@pytest.mark.parametrize("mode", ["minmax", "max"])
def test_normalize_degenerate_maps_give_zeros(mode):
    maps = jnp.stack(
        [
            jnp.full((3, 3), 2.5),  # constant
            jnp.zeros((3, 3)),  # constant zero
            -jnp.arange(1.0, 10.0).reshape(3, 3),  # all negative
        ]
    )
    for fn in (normalize, jax.jit(normalize, static_argnums=(1, 2))):
        out = np.asarray(fn(maps, mode, True))
        assert np.all(out == 0.0)
        out = np.asarray(fn(maps, mode, False))
        assert np.all(np.isfinite(out))
        assert np.all(out[:2] == 0.0)  # a constant map is zeros in both modes
        if mode == "max":
            assert np.all(out[2] == 0.0)
        else:
            # An all-negative map still has a range: -1 is the max, -9 the min.
            np.testing.assert_allclose(out[2].ravel(), np.linspace(1.0, 0.0, 9), atol=1e-6)


def test_normalize_non_finite_pixels_are_left_out():
    m = jnp.array([[1.0, jnp.nan], [5.0, 9.0]])
    # NaN excluded: min 1, max 9 -> (m - 1) / 8, the NaN pixel -> 0.
    expected = [[0.0, 0.0], [0.5, 1.0]]
    np.testing.assert_allclose(normalize(m), expected)
    np.testing.assert_allclose(jax.jit(normalize)(m), expected)
    m_inf = jnp.array([[1.0, jnp.inf], [5.0, -jnp.inf]])
    np.testing.assert_allclose(normalize(m_inf), [[0.0, 0.0], [1.0, 0.0]])
    assert np.all(normalize(jnp.full((2, 2), jnp.nan)) == 0.0)


def test_nan_input_features_give_finite_maps():
    features = np.ones((1, 4, 4, 3), np.float32)
    features[0, 1, 2, 0] = np.nan
    features[0, 3, 3, :] = 2.0
    kernel = jnp.ones((3, 2))
    maps = _registered_cam(features, kernel, jnp.array([[0, 1]]))
    assert np.isnan(maps[0, 0, 1, 2])
    # At feature resolution the NaN pixel is left out: sums 3 -> 0, 6 -> 1, NaN -> 0.
    direct = np.asarray(normalize(maps))
    expected = np.zeros((4, 4))
    expected[3, 3] = 1.0
    np.testing.assert_array_equal(direct[0, 0], expected)
    np.testing.assert_array_equal(direct[0, 1], expected)
    # Resizing spreads the NaN over the whole map (documented), which then becomes zeros.
    up = upsample(maps, 8)
    assert np.all(np.isnan(up))
    assert np.all(np.asarray(normalize(up)) == 0.0)
