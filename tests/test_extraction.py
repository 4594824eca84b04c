"""camjax.extract: one jitted call from images to top-k maps and boxes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import camjax
from camjax.maps import normalize, upsample
from camjax.methods import METHODS, compute_maps
from camjax.models.head import CAMHead, CAMNet
from camjax.models.tiny import TinyBackbone

SIZE, C = 16, 6


@pytest.fixture(scope="module")
def net():
    model = CAMNet(
        backbone=TinyBackbone(widths=(4, 8, 8)),
        head=CAMHead(C, conv_features=(8,), pool="avg"),
        min_input_size=4,
    )
    v = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
    v["params"]["head"]["classifier"]["bias"] = jnp.linspace(-0.5, 0.5, C)
    return model, v


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(5), (3, SIZE, SIZE, 3))


def _reference_box(m: np.ndarray, threshold: float) -> list[int]:
    """Largest 8-connected component of m >= t * max(m), by pixel count (SciPy)."""
    labels, n = ndimage.label(m >= threshold * m.max(), structure=np.ones((3, 3)))
    assert n >= 1
    counts = np.bincount(labels.ravel())[1:]
    assert (counts == counts.max()).sum() == 1  # no tie, so the rule picks one box
    ys, xs = np.nonzero(labels == 1 + np.argmax(counts))
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def test_extract_values(net, images):
    model, v = net
    out = camjax.extract(model, v, images, 3, threshold=0.5)
    logits, _ = model.apply(v, images)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-6, atol=1e-6)
    want_ids = np.argsort(-np.asarray(logits), axis=1)[:, :3]
    np.testing.assert_array_equal(out["class_ids"], want_ids)
    assert out["class_ids"].dtype == jnp.int32
    probs = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(out["probs"], np.take_along_axis(probs, want_ids, 1), rtol=1e-5)
    raw = compute_maps("cam", model, v, images, jnp.asarray(want_ids))
    maps = np.asarray(normalize(upsample(raw, SIZE)))
    np.testing.assert_allclose(out["maps"], maps, atol=1e-6)
    assert out["maps"].shape == (3, 3, SIZE, SIZE)
    assert np.all(out["maps"].min((-2, -1)) == 0) and np.allclose(out["maps"].max((-2, -1)), 1)
    assert out["boxes"].shape == (3, 3, 4) and out["boxes"].dtype == jnp.int32
    for b in range(3):
        for n in range(3):
            assert list(out["boxes"][b, n]) == _reference_box(maps[b, n], 0.5)
    # Top-1 box only: the same first box.
    one = camjax.extract(model, v, images, 3, threshold=0.5, num_boxes=1)
    np.testing.assert_array_equal(one["boxes"], out["boxes"][:, :1])
    np.testing.assert_array_equal(one["maps"], out["maps"])
    none = camjax.extract(model, v, images, 3, num_boxes=0)
    assert none["boxes"].shape == (3, 0, 4)


def test_gt_known_maps_and_boxes(net, images):
    model, v = net
    top = camjax.extract(model, v, images, 2)
    # Image 0 asks for its own top-1 class; the others for a class outside their top 2.
    top1 = np.asarray(top["class_ids"][:, 0])
    other = [int(np.setdiff1d(np.arange(C), top["class_ids"][b])[0]) for b in range(3)]
    gt = jnp.array([top1[0], other[1], other[2]])
    out = camjax.extract(model, v, images, 2, gt_labels=gt)
    assert out["gt_maps"].shape == (3, 1, SIZE, SIZE) and out["gt_boxes"].shape == (3, 1, 4)
    # Two compiled programs (with and without the GT map): equal up to float rounding
    # (XLA may fuse them differently, e.g. 1 ulp apart on a CPU without AVX-512).
    np.testing.assert_allclose(out["maps"], top["maps"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["gt_maps"][0], top["maps"][0, :1], atol=1e-6)
    raw = compute_maps("cam", model, v, images, gt[:, None])
    np.testing.assert_allclose(out["gt_maps"], normalize(upsample(raw, SIZE)), atol=1e-6)
    # Boxes are checked against each map of this program, not the other program's boxes
    # (a 1-ulp difference at the threshold could move a pixel in or out).
    for b in range(3):
        assert list(out["gt_boxes"][b, 0]) == _reference_box(np.asarray(out["gt_maps"][b, 0]), 0.2)
        for n in range(2):
            assert list(out["boxes"][b, n]) == _reference_box(np.asarray(out["maps"][b, n]), 0.2)
    # The top-1 GT map of image 0 is the same map as its top-1 map, in this one program.
    np.testing.assert_array_equal(out["gt_maps"][0, 0], out["maps"][0, 0])
    np.testing.assert_array_equal(out["gt_boxes"][0], out["boxes"][0, :1])


@pytest.mark.parametrize("method", ["cam", "backprop"])
def test_feature_resolution_maps(method, net, images):
    model, v = net
    gt = jnp.array([0, 3, 5])
    kw = dict(method=method, gt_labels=gt)
    full = camjax.extract(model, v, images, 2, **kw)
    feat = camjax.extract(model, v, images, 2, **kw, map_resolution="feature")
    side = SIZE // 4 if method == "cam" else SIZE  # backprop maps live at the input size
    assert feat["maps"].shape == (3, 2, side, side) and feat["gt_maps"].shape == (3, 1, side, side)
    ids = jnp.concatenate([feat["class_ids"], gt[:, None]], axis=1)
    raw = compute_maps(method, model, v, images, ids)
    np.testing.assert_allclose(feat["maps"], normalize(raw[:, :2]), atol=1e-6)
    np.testing.assert_allclose(feat["gt_maps"], normalize(raw[:, 2:]), atol=1e-6)
    # Boxes are those of the input-size maps (two programs: compare to the reference rule).
    up = np.asarray(normalize(upsample(raw, SIZE)))
    for b in range(3):
        for n in range(2):
            assert list(feat["boxes"][b, n]) == _reference_box(up[b, n], 0.2)
        assert list(feat["gt_boxes"][b, 0]) == _reference_box(up[b, 2], 0.2)
    np.testing.assert_array_equal(feat["class_ids"], full["class_ids"])
    with pytest.raises(ValueError, match="map_resolution"):
        camjax.extract(model, v, images, 2, map_resolution="native")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_batch_equals_alone_and_matches_registry(name, net, images):
    model, v = net
    out = camjax.extract(model, v, images, 2, method=name)
    raw = compute_maps(name, model, v, images, out["class_ids"])
    want = normalize(upsample(raw, SIZE))
    np.testing.assert_allclose(out["maps"], want, atol=1e-5)
    for b in range(3):
        alone = camjax.extract(model, v, images[b : b + 1], 2, method=name)
        for key in ("logits", "probs", "maps"):
            np.testing.assert_allclose(alone[key][0], out[key][b], rtol=1e-5, atol=1e-5)
        for key in ("class_ids", "boxes"):
            np.testing.assert_array_equal(alone[key][0], out[key][b])


def test_options_reach_the_maps(net, images):
    model, v = net
    out = camjax.extract(model, v, images, 2, normalization="max", upsample_method="bicubic")
    raw = compute_maps("cam", model, v, images, out["class_ids"])
    want = normalize(upsample(raw, SIZE, "bicubic"), "max")
    np.testing.assert_allclose(out["maps"], want, atol=1e-6)
    assert not np.allclose(out["maps"], camjax.extract(model, v, images, 2)["maps"])


def test_vmap_and_pmap_match_eager(net):
    model, v = net
    groups = jax.random.normal(jax.random.key(9), (8, 2, SIZE, SIZE, 3))
    fn = lambda x: camjax.extract(model, v, x, 2)
    eager = [fn(groups[i]) for i in range(8)]
    vm = jax.vmap(fn)(groups[:2])
    pm = jax.pmap(fn)(groups)
    for key in ("logits", "probs", "maps", "class_ids", "boxes"):
        want = np.stack([np.asarray(e[key]) for e in eager])
        np.testing.assert_allclose(vm[key], want[:2], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pm[key], want, rtol=1e-5, atol=1e-5)


def test_nan_image_gives_finite_maps(net, images):
    model, v = net
    bad = images.at[1, 3, 4, 0].set(jnp.nan)
    out = camjax.extract(model, v, bad, 2)
    maps = np.asarray(out["maps"])
    assert np.all(np.isfinite(maps)) and maps.min() >= 0 and maps.max() <= 1
    # The NaN stays in image 1: image 0 and 2 are untouched, image 1's maps are zeros
    # (its features carry NaN through the resize) and boxed as "no pixel kept".
    clean = camjax.extract(model, v, images, 2)
    np.testing.assert_allclose(maps[[0, 2]], clean["maps"][jnp.array([0, 2])], atol=1e-6)
    assert np.all(maps[1] == 0) and np.all(out["boxes"][1] == 0)


def test_non_finite_images_give_nan_logits_on_a_default_tiny_gap():
    # The default tiny_gap at 32 px: XLA:CPU's fused relu -> mean maps an all-NaN image's
    # logits to 0 (jaxlib 0.10); extract makes them NaN and the maps zero explicitly.
    model = camjax.models.create("tiny_gap", 4)
    v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    x = x.at[0, 3, 3, 0].set(jnp.nan).at[1].set(jnp.nan).at[2, 0, 0, 1].set(jnp.inf)
    out = camjax.extract(model, v, x, 2, gt_labels=jnp.array([0, 1, 2, 3]))
    bad = np.array([True, True, True, False])
    assert np.isnan(out["logits"][bad]).all() and np.isnan(out["probs"][bad]).all()
    assert np.isfinite(out["logits"][~bad]).all()
    assert np.all(out["maps"][bad] == 0) and np.all(out["gt_maps"][bad] == 0)
    assert np.all(out["boxes"][bad] == 0) and np.all(out["gt_boxes"][bad] == 0)
    alone = camjax.extract(model, v, x[3:], 2)
    np.testing.assert_allclose(out["logits"][3:], alone["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["maps"][3:], alone["maps"], atol=1e-5)


def test_bad_arguments(net, images):
    model, v = net
    with pytest.raises(ValueError, match="unknown method"):
        camjax.extract(model, v, images, method="gradcam2")
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, 6\]"):
        camjax.extract(model, v, images, 7)
    with pytest.raises(ValueError, match="num_boxes"):
        camjax.extract(model, v, images, 2, num_boxes=3)
    with pytest.raises(ValueError, match=r"gt_labels must lie in \[0, 6\)"):
        camjax.extract(model, v, images, 2, gt_labels=jnp.array([0, 6, 1]))
    with pytest.raises(ValueError, match="gt_labels must be int"):
        camjax.extract(model, v, images, 2, gt_labels=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="threshold"):
        camjax.extract(model, v, images, 2, threshold=1.5)
    with pytest.raises(ValueError, match="images must be"):
        camjax.extract(model, v, images[0], 2)
    # Variables of another network: a message, not KeyError: 'head' (#18).
    with pytest.raises(ValueError, match="variables do not fit this model.*head/cam_conv0"):
        camjax.extract(model, {"params": {"backbone": v["params"]["backbone"]}, **{
            k: v[k] for k in v if k != "params"}}, images, 2)  # fmt: skip
    with pytest.raises(ValueError, match="variables do not fit this model"):
        camjax.extract(model, {"params": {}}, images, 2)


def test_localize_spec_is_checked_hashable_and_what_extract_runs(net, images):
    from camjax.localize import LocalizeSpec, localize, localize_features

    model, v = net
    spec = LocalizeSpec(top_k=2, class_ids=(4, 1), threshold=0.5, apply_kwargs={"train": False})
    same = LocalizeSpec(top_k=2, class_ids=[4, 1], threshold=0.5, apply_kwargs={"train": False})
    assert spec == same and hash(spec) == hash(same)  # one compiled program for both
    out = localize(model, v, images, spec, gt_labels=jnp.array([0, 1, 2]))
    ref = camjax.extract(model, v, images, class_ids=[4, 1], threshold=0.5, gt_labels=[0, 1, 2])
    assert set(out) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key])
    assert np.all(np.asarray(out["class_ids"]) == [4, 1])
    # Plain CAM from the features the network already computed: the same outputs.
    logits, features = model.apply(v, images, train=False)
    kernel = v["params"]["head"]["classifier"]["kernel"]
    feat = localize_features(features, kernel, logits, np.ones(3, bool), np.array([0, 1, 2]),
                             (SIZE, SIZE), LocalizeSpec(top_k=2, threshold=0.5))  # fmt: skip
    top = camjax.extract(model, v, images, 2, threshold=0.5, gt_labels=[0, 1, 2])
    np.testing.assert_array_equal(feat["class_ids"], top["class_ids"])
    np.testing.assert_allclose(feat["maps"], top["maps"], atol=1e-6)
    np.testing.assert_array_equal(feat["boxes"], top["boxes"])
    np.testing.assert_array_equal(feat["gt_boxes"], top["gt_boxes"])
    for bad, field in ((dict(upsample_method="nearest"), "upsample_method"),
                       (dict(num_boxes=-1), "num_boxes"), (dict(class_ids=()), "class_ids"),
                       (dict(map_resolution="native"), "map_resolution")):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            LocalizeSpec(**bad)
