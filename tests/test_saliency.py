"""camjax.methods: CAM's relatives against hand-derived and NumPy reference formulas."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camjax.methods import METHODS, compute_maps, cut
from camjax.methods.gradients import feature_gradients
from camjax.methods.targets import ClassLogit
from camjax.models.head import CAMHead, CAMNet
from camjax.models.tiny import TinyBackbone

SIZE = 16  # tiny backbone: two 2x2 pools -> 4x4 map
K = 6  # head channels
C = 5  # classes
HW = (SIZE // 4) ** 2


def _net(pool: str) -> CAMNet:
    return CAMNet(
        backbone=TinyBackbone(widths=(4, 8, 8)),
        head=CAMHead(C, conv_features=(K,), pool=pool),
        min_input_size=4,
    )


def _variables(model, key=0):
    v = model.init(jax.random.key(key), jnp.zeros((1, SIZE, SIZE, 3)))
    # A non-zero bias, so that a method that wrongly includes it shows up.
    v["params"]["head"]["classifier"]["bias"] = jnp.linspace(-1.0, 1.0, C)
    return v


@pytest.fixture(scope="module")
def gap():
    model = _net("avg")
    return model, _variables(model)


@pytest.fixture(scope="module")
def gmp():
    model = _net("max")
    return model, _variables(model, key=3)


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.key(7), (3, SIZE, SIZE, 3))


CLASS_IDS = jnp.array([[4, 0], [1, 1], [2, 3]])


def test_gradcam_and_hirescam_on_gap_are_scaled_cam(gap, images):
    model, v = gap
    cam = np.asarray(compute_maps("cam", model, v, images, CLASS_IDS))
    assert cam.min() < 0 < cam.max()  # so that the ReLU matters
    # GAP: dS_c/dA_k(i, j) = w_kc / (h w) everywhere, so Grad-CAM's channel weight is
    # w_kc / (h w) and Grad-CAM = ReLU(CAM) / (h w); HiResCAM = sum_k w_kc / (h w) A_k.
    g = np.asarray(feature_gradients(cut(model, v, images), ClassLogit(CLASS_IDS)))
    kernel = np.asarray(v["params"]["head"]["classifier"]["kernel"])
    want = kernel.T[np.asarray(CLASS_IDS)][:, :, None, None, :] / HW
    np.testing.assert_allclose(g, np.broadcast_to(want, g.shape), rtol=1e-6)
    gradcam = compute_maps("gradcam", model, v, images, CLASS_IDS)
    np.testing.assert_allclose(gradcam, np.maximum(cam, 0) / HW, rtol=1e-5, atol=1e-7)
    hires = compute_maps("hirescam", model, v, images, CLASS_IDS)
    np.testing.assert_allclose(hires, cam / HW, rtol=1e-5, atol=1e-7)
    # XGrad-CAM: w_k = sum_ij A_k(i,j) / sum A_k * w_kc / (h w) = w_kc / (h w) too.
    xgrad = compute_maps("xgradcam", model, v, images, CLASS_IDS)
    np.testing.assert_allclose(xgrad, cam / HW, rtol=1e-5, atol=1e-7)


def _reference_grads(a: np.ndarray, kernel: np.ndarray, class_ids: np.ndarray, pool: str):
    """dS_c / dA by hand: GAP spreads w_kc / (h w); GMP puts w_kc on each channel's
    arg-max (shared equally among ties, JAX's convention for max's gradient)."""
    b, h, w, k = a.shape
    n = class_ids.shape[1]
    wsel = kernel.T[class_ids]  # [B, N, K]
    if pool == "avg":
        return np.broadcast_to(wsel[:, :, None, None, :] / (h * w), (b, n, h, w, k))
    at_max = (a == a.max(axis=(1, 2), keepdims=True)).astype(np.float64)
    share = at_max / at_max.sum(axis=(1, 2), keepdims=True)
    return share[:, None] * wsel[:, :, None, None, :]


def _reference_maps(name: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The papers' formulas in NumPy; a [B, h, w, K], g [B, N, h, w, K] -> [B, N, h, w]."""
    a = a.astype(np.float64)[:, None]
    relu = lambda x: np.maximum(x, 0.0)
    combine = lambda wk: np.einsum("bnhwk,bnk->bnhw", np.broadcast_to(a, g.shape), wk)
    if name == "gradcam":
        return relu(combine(g.mean(axis=(2, 3))))
    if name == "gradcampp":
        total = a.sum(axis=(2, 3), keepdims=True)
        den = 2 * g**2 + total * g**3
        alpha = np.divide(g**2, den, out=np.zeros_like(g), where=den != 0)
        return relu(combine((alpha * relu(g)).sum(axis=(2, 3))))
    if name == "hirescam":
        return (a * g).sum(-1)
    if name == "xgradcam":
        total = a.sum(axis=(2, 3), keepdims=True)
        share = np.divide(a, total, out=np.zeros_like(a), where=total != 0)
        return combine((share * g).sum(axis=(2, 3)))
    if name == "layercam":
        return relu((a * relu(g)).sum(-1))
    raise KeyError(name)


GRADIENT_METHODS = ["gradcam", "gradcampp", "hirescam", "xgradcam", "layercam"]


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_match_numpy_reference(name, pool, gap, gmp, images):
    model, v = gap if pool == "avg" else gmp
    a = np.asarray(model.apply(v, images)[1])
    assert (a > 0).any() and (a == 0).any()
    kernel = np.asarray(v["params"]["head"]["classifier"]["kernel"], np.float64)
    ids = np.asarray(CLASS_IDS)
    ref = _reference_maps(name, a, _reference_grads(a, kernel, ids, pool))
    out = compute_maps(name, model, v, images, CLASS_IDS)
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(out, ref, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_backbone_layer_matches_per_image_grad(name, gap, images):
    # layer="backbone": A is before the head's conv; gradients taken one image and one
    # class at a time with jax.grad, then the NumPy formulas.
    model, v = gap
    a = model.apply(v, images, method=lambda m, x: m.backbone(x))
    head_vars = {"params": v["params"]["head"]}
    g = np.zeros((3, 2) + a.shape[1:])
    for b in range(3):
        for n in range(2):
            c = int(CLASS_IDS[b, n])
            score = lambda f, c=c: model.head.apply(head_vars, f[None])[0][0, c]
            g[b, n] = jax.grad(score)(a[b])
    ref = _reference_maps(name, np.asarray(a), g)
    out = compute_maps(name, model, v, images, CLASS_IDS, layer="backbone")
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(out, ref, atol=1e-5 * scale, rtol=1e-4)


def test_scorecam_matches_numpy_reference(gap, images):
    model, v = gap
    a = np.asarray(model.apply(v, images)[1])
    ref = np.zeros((3, 2, 4, 4))
    for b in range(3):
        masked = []
        for k in range(K):
            up = cv2.resize(a[b, :, :, k], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
            masked.append(np.asarray(images[b]) * mask[..., None])
        logits = np.asarray(model.apply(v, jnp.asarray(np.stack(masked)))[0], np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for n in range(2):
            weights = probs[:, int(CLASS_IDS[b, n])]  # [K]
            ref[b, n] = np.maximum(np.einsum("hwk,k->hw", a[b], weights), 0.0)
    assert ref.max() > 0
    for chunk in (4, 16):  # 4 does not divide K = 6: the padded-chunk path
        out = compute_maps("scorecam", model, v, images, CLASS_IDS, chunk_size=chunk)
        np.testing.assert_allclose(out, ref, atol=1e-5 * ref.max(), rtol=1e-4)


def test_backprop_is_per_image_max_abs_input_gradient(gap, images):
    model, v = gap
    out = np.asarray(compute_maps("backprop", model, v, images, CLASS_IDS))
    assert out.shape == (3, 2, SIZE, SIZE)
    for b in range(3):
        for n in range(2):
            c = int(CLASS_IDS[b, n])
            grad = jax.grad(lambda x, c=c: model.apply(v, x[None])[0][0, c])(images[b])
            np.testing.assert_allclose(out[b, n], np.abs(grad).max(-1), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_batch_equals_each_image_alone(name, gmp, images):
    # GMP, so every gradient method's map depends on its image and class (not just W).
    model, v = gmp
    batch = np.asarray(compute_maps(name, model, v, images, CLASS_IDS))
    assert np.abs(batch).max() > 0
    for b in range(3):
        alone = compute_maps(name, model, v, images[b : b + 1], CLASS_IDS[b : b + 1])
        np.testing.assert_allclose(batch[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    # Each image's own class drives its map: image 1 with two different classes.
    two = np.asarray(compute_maps(name, model, v, images[1:2], jnp.array([[0, 4]])))
    assert not np.allclose(two[0, 0], two[0, 1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_jit_vmap_pmap_match_eager(name, gmp):
    model, v = gmp
    fn = lambda x, c: compute_maps(name, model, v, x, c)
    groups = jax.random.normal(jax.random.key(11), (8, 1, SIZE, SIZE, 3))
    ids = jnp.arange(16).reshape(8, 1, 2) % C
    eager = np.stack([np.asarray(fn(groups[i], ids[i])) for i in range(8)])
    np.testing.assert_allclose(jax.jit(fn)(groups[0], ids[0]), eager[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(groups[:3], ids[:3]), eager[:3], rtol=1e-5, atol=1e-6)
    assert jax.device_count() == 8
    np.testing.assert_allclose(jax.pmap(fn)(groups, ids), eager, rtol=1e-5, atol=1e-6)


def test_bad_arguments(gap, images):
    model, v = gap
    with pytest.raises(ValueError, match=r"class_ids must lie in \[0, 5\)"):
        compute_maps("gradcam", model, v, images, jnp.array([[0], [1], [5]]))
    with pytest.raises(ValueError, match="class_ids must be"):
        compute_maps("backprop", model, v, images, jnp.array([[0], [1]]))
    with pytest.raises(ValueError, match="layer 'conv3' is not a submodule"):
        compute_maps("layercam", model, v, images, CLASS_IDS, layer="conv3")
    with pytest.raises(TypeError, match="takes no option"):
        compute_maps("gradcam", model, v, images, CLASS_IDS, chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size"):
        compute_maps("scorecam", model, v, images, CLASS_IDS, chunk_size=0)


def test_every_registered_method_is_complete_and_documented():
    # Iterates the registry: a new method needs no edit here, only its file, its
    # registration and its line in the README's method list.
    import pathlib

    import camjax.methods as methods

    assert METHODS is methods.METHODS
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    displays = [m.display for m in METHODS.values()]
    assert len(set(displays)) == len(displays), displays
    for name, m in METHODS.items():
        assert name.isidentifier() and name == name.lower(), name
        assert (m.weights is None) != (m.maps is None) and m.paper, name
        assert f"`{name}`" in readme, f"README's method list does not name {name!r}"
    assert {"cam", "gradcam", "backprop"} <= set(METHODS)  # the paper's CAM and baseline
    with pytest.raises(ValueError, match="already registered"):
        methods.register(METHODS["cam"])


def test_a_new_method_is_one_function_registered_once(gmp, images):
    # "Grad-CAM without ReLU, weights from the gradient's maximum": one weights function
    # and one register call reach compute_maps and extract.
    import camjax
    from camjax.methods import Method, register
    from camjax.methods.gradients import feature_gradients as grads

    model, v = gmp
    register(Method("gradmax", "Grad-Max", "test", weights=lambda c, t: grads(c, t).max((2, 3))))
    try:
        out = np.asarray(compute_maps("gradmax", model, v, images, CLASS_IDS))
        a = np.asarray(model.apply(v, images)[1], np.float64)
        kernel = np.asarray(v["params"]["head"]["classifier"]["kernel"], np.float64)
        g = _reference_grads(a, kernel, np.asarray(CLASS_IDS), "max")
        want = np.einsum("bhwk,bnk->bnhw", a, g.max(axis=(2, 3)))
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
        ext = camjax.extract(model, v, images, 2, method="gradmax")
        assert ext["maps"].shape == (3, 2, SIZE, SIZE)
    finally:
        METHODS.pop("gradmax")
