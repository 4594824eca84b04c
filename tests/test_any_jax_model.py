"""Any JAX model as two pure functions (camjax.methods.Functions): a plain-JAX CNN with a
params dict, an Equinox CNN, a Keras 3 model (JAX backend, stateless_call), and a Flax
model split by hand, each written the way its users write it.

References: Grad-CAM from a gradient taken by hand with jax.vjp; the GAP identity for
plain CAM (mean_ij M_c + b_c = S_c, Zhou et al. 2016, Eq. 2-3); the Flax layer path on
the same network (every method, the smoothing options, extract's top-k, maps and boxes).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

import camjax
from camjax.methods import (
    METHODS,
    TTA,
    ClassProbability,
    Functions,
    SmoothGrad,
    compute_maps,
    programs,
)

SIZE, C = 16, 5
IDS = jnp.array([[4, 0], [1, 1], [2, 3]])


def gradcam_by_hand(a, after, ids):
    """Grad-CAM with the gradient of `after` (A -> logits) by jax.vjp, one class slot at
    a time."""
    logits, vjp = jax.vjp(after, a)
    maps = []
    for n in range(ids.shape[1]):
        (g,) = vjp(jax.nn.one_hot(ids[:, n], logits.shape[-1]))
        w = g.mean(axis=(1, 2))  # [B, K]
        maps.append(jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, w)))
    return np.stack(maps, 1)


def assert_gap_identity(cams, logits, bias, ids):
    got = np.asarray(cams.mean((-2, -1))) + np.asarray(bias)[np.asarray(ids)]
    want = np.take_along_axis(np.asarray(logits), np.asarray(ids), 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def images():
    return normal(2, (3, SIZE, SIZE, 3))


# The same CNN three ways: Flax (the reference), plain jax.numpy on Flax's params tree,
# and below Equinox and Keras (their own weights).


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(self.features, (3, 3))(x))


class Net(nn.Module):
    def setup(self):
        self.block1 = Block(8)
        self.block2 = Block(12)
        self.fc = nn.Dense(C)

    def features(self, x):
        return self.block2(nn.max_pool(self.block1(x), (2, 2), (2, 2)))

    def classify(self, a):
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x):
        return self.classify(self.features(x))


@pytest.fixture(scope="module")
def flax_net():
    model = Net()
    v = variables(model, jnp.zeros((1, SIZE, SIZE, 3)))
    v["params"]["fc"]["bias"] = jnp.linspace(-1.0, 1.0, C)  # a bias that shows if dropped
    return model, v


def conv_relu(x, p):
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
    return jax.nn.relu(y + p["bias"])


def jax_features(p, x):
    x = conv_relu(x, p["block1"]["Conv_0"])
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return conv_relu(x, p["block2"]["Conv_0"])


def jax_head(p, a):
    return a.mean(axis=(1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"]


def jax_classifier(p):
    return p["fc"]["kernel"], p["fc"]["bias"]


JAX_CNN = Functions(jax_features, jax_head, classifier=jax_classifier)


# --- plain JAX, a params dict ---------------------------------------------------------


def test_plain_jax_gradcam_matches_hand_vjp_and_cam_the_gap_identity(flax_net, images):
    p = flax_net[1]["params"]
    a = jax_features(p, images)
    want = gradcam_by_hand(a, lambda f: jax_head(p, f), IDS)
    got = compute_maps("gradcam", JAX_CNN, p, images, IDS)
    assert got.shape == want.shape == (3, 2, 8, 8) and want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    cams = compute_maps("cam", JAX_CNN, p, images, IDS)
    assert_gap_identity(cams, jax_head(p, a), p["fc"]["bias"], IDS)
    # The kernel read off a head that is mean + dense, when the user says so: the same.
    from_head = Functions(jax_features, jax_head, classifier="head")
    np.testing.assert_allclose(compute_maps("cam", from_head, p, images, IDS), cams, atol=1e-5)
    # Without the bias (kernel only) CAM is the same map; the identity is not checked.
    kernel_only = compute_maps(
        "cam", JAX_CNN, p, images, IDS, classifier=lambda q: q["fc"]["kernel"]
    )
    np.testing.assert_allclose(kernel_only, cams, atol=1e-6)


def test_plain_jax_new_params_reuse_the_program_and_jit_batches(flax_net, images):
    p = flax_net[1]["params"]
    traced = []

    def features(q, x):
        traced.append(1)  # runs only while JAX traces
        return jax_features(q, x)

    fns = Functions(features, jax_head)
    first = compute_maps("gradcam", fns, p, images, IDS)
    n = len(traced)
    scaled = jax.tree.map(lambda x: 1.5 * x, p)
    second = compute_maps("gradcam", fns, scaled, images, IDS)
    assert len(traced) == n, "new weights of the same shapes traced the model again"
    assert not np.allclose(first, second)
    want = gradcam_by_hand(jax_features(scaled, images), lambda f: jax_head(scaled, f), IDS)
    np.testing.assert_allclose(second, want, rtol=1e-4, atol=1e-5 * want.max())
    # Inside the caller's jit, params a traced argument, and vmapped over images.
    inside = jax.jit(lambda q, x: compute_maps("gradcam", fns, q, x, IDS))(scaled, images)
    np.testing.assert_allclose(inside, second, rtol=1e-5, atol=1e-6)
    one = lambda x, i: compute_maps("gradcam", fns, scaled, x[None], i[None])[0]  # noqa: E731
    np.testing.assert_allclose(jax.vmap(one)(images, IDS), second, rtol=1e-4, atol=1e-6)


def test_plain_jax_tta_is_the_mean_of_the_mirrored_maps(flax_net, images):
    p = flax_net[1]["params"]
    plain = compute_maps("gradcam", JAX_CNN, p, images, IDS)
    mirrored = compute_maps("gradcam", JAX_CNN, p, images[:, :, ::-1], IDS)[..., ::-1]
    tta = compute_maps("gradcam", JAX_CNN, p, images, IDS, tta=TTA(flips=(False, True)))
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-4, atol=1e-6)


# --- a Flax model split by hand equals the layer path ------------------------------------


def hand_split(model):
    return Functions(
        lambda v, x: model.apply(v, x, method=Net.features),
        lambda v, a: model.apply(v, a, method=Net.classify),
        classifier=lambda v: (v["params"]["fc"]["kernel"], v["params"]["fc"]["bias"]),
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_flax_split_by_hand_equals_the_layer_path(method, flax_net, images):
    model, v = flax_net
    want = compute_maps(method, model, v, images, IDS, layer="block2")
    got = compute_maps(method, hand_split(model), v, images, IDS)
    assert np.abs(np.asarray(want)).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize(
    "options",
    [
        {"tta": TTA(flips=(False, True), scales=(1.0, 1.5))},
        {"smoothgrad": SmoothGrad(samples=3)},
        {"eigen": True},
    ],
    ids=["tta", "smoothgrad", "eigen"],
)
def test_flax_split_by_hand_equals_the_layer_path_smoothed(options, flax_net, images):
    model, v = flax_net
    method = "gradcampp" if "smoothgrad" in options else "gradcam"
    want = compute_maps(method, model, v, images, IDS, layer="block2", **options)
    got = compute_maps(method, hand_split(model), v, images, IDS, **options)
    assert np.abs(np.asarray(want)).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_extract_on_plain_jax_equals_the_flax_network(flax_net, images):
    model, v = flax_net
    for method in ("cam", "gradcam"):
        kw = {"method": method, "gt_labels": IDS[:, 0]}
        want = camjax.extract(model, v, images, 3, layer="block2", **kw)
        got = camjax.extract(JAX_CNN, v["params"], images, 3, **kw)
        assert set(got) == set(want)
        np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got["class_ids"], want["class_ids"])
        np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-5)
        np.testing.assert_allclose(got["maps"], want["maps"], atol=1e-5)
        np.testing.assert_allclose(got["gt_maps"], want["gt_maps"], atol=1e-5)
        np.testing.assert_array_equal(got["boxes"], want["boxes"])
        np.testing.assert_array_equal(got["gt_boxes"], want["gt_boxes"])
    feat = camjax.extract(JAX_CNN, v["params"], images, 2, map_resolution="feature")
    assert feat["maps"].shape == (3, 2, 8, 8)
    target = ClassProbability(IDS)
    want = camjax.extract(model, v, images, 2, method="gradcam", layer="block2", target=target)
    got = camjax.extract(JAX_CNN, v["params"], images, 2, method="gradcam", target=target)
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["maps"], want["maps"], atol=1e-5)


# --- errors: the Flax path's where they apply, and the two-function model's own -----------


def test_errors_name_the_problem(flax_net, images):
    p = flax_net[1]["params"]
    tokens = Functions(lambda q, x: jax_features(q, x).reshape(3, 64, 12), jax_head)
    with pytest.raises(
        ValueError, match=r"'features' output has shape \[3, 64, 12\].*reshape=True"
    ):
        compute_maps("gradcam", tokens, p, images, IDS)
    with pytest.raises(ValueError, match=r"class_ids must lie in \[0, 5\)"):
        compute_maps("gradcam", JAX_CNN, p, images, IDS + 3)
    with pytest.raises(ValueError, match="its target must be class ids"):
        compute_maps("cam", JAX_CNN, p, images, lambda out: out[:, :2])
    with pytest.raises(ValueError, match=r"classifier=lambda params.*'head'"):
        compute_maps("cam", Functions(jax_features, jax_head), p, images, IDS)
    with pytest.raises(ValueError, match=r"kernel \[5, 12\].*K = 12"):
        compute_maps("cam", JAX_CNN, p, images, IDS, classifier=lambda q: q["fc"]["kernel"].T)
    with pytest.raises(ValueError, match=r"bias has shape \[4\]"):
        short_bias = lambda q: (q["fc"]["kernel"], q["fc"]["bias"][:4])  # noqa: E731
        compute_maps("cam", JAX_CNN, p, images, IDS, classifier=short_bias)
    with pytest.raises(ValueError, match="an array: lambda params: kernel"):
        Functions(jax_features, jax_head, classifier=np.zeros((12, C)))
    with pytest.raises(ValueError, match="layer does not apply"):
        compute_maps("gradcam", JAX_CNN, p, images, IDS, layer="block2")
    with pytest.raises(ValueError, match="takes no apply_kwargs"):
        compute_maps("gradcam", JAX_CNN, p, images, IDS, apply_kwargs={"train": False})
    with pytest.raises(ValueError, match="extract needs a classifier's logits"):
        camjax.extract(Functions(jax_features, lambda q, a: a.mean((1, 2, 3))), p, images)
    # Tokens [B, h*w, K] with reshape=True: the same maps as the map itself.
    token_head = lambda q, t: jax_head(q, t.reshape(3, 8, 8, 12))  # noqa: E731
    from_tokens = Functions(tokens.features, token_head)
    np.testing.assert_allclose(
        compute_maps("gradcam", from_tokens, p, images, IDS, reshape=True),
        compute_maps("gradcam", JAX_CNN, p, images, IDS),
        rtol=1e-5,
        atol=1e-7,
    )


def test_a_warning_when_the_head_is_not_mean_plus_dense(flax_net, images):
    p = flax_net[1]["params"]

    # A max-pooling head: the kernel read off it scores no spatial mean, and the call says so.
    def gmp_head(q, a):
        return a.max(axis=(1, 2)) @ q["fc"]["kernel"] + q["fc"]["bias"]

    gmp = Functions(jax_features, gmp_head, classifier="head")
    with pytest.warns(camjax.methods.CamjaxWarning, match="identity"):
        compute_maps("cam", gmp, p, images, IDS)


# --- Equinox --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eqx_net():
    eqx = pytest.importorskip("equinox")

    class CNN(eqx.Module):  # one image [C, H, W] in, logits out; batches by jax.vmap
        conv1: eqx.nn.Conv2d
        pool: eqx.nn.MaxPool2d
        conv2: eqx.nn.Conv2d
        fc: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.conv1 = eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1)
            self.pool = eqx.nn.MaxPool2d(2, 2)
            self.conv2 = eqx.nn.Conv2d(8, 12, 3, padding=1, key=k2)
            self.fc = eqx.nn.Linear(12, C, key=k3)

        def features(self, x):
            return jax.nn.relu(self.conv2(self.pool(jax.nn.relu(self.conv1(x)))))

        def head(self, a):
            return self.fc(jnp.mean(a, axis=(1, 2)))

        def __call__(self, x):
            return self.head(self.features(x))

    return CNN, eqx


# Two lambdas: the layout (camjax's NHWC, Equinox's CHW) and the batch (jax.vmap).
EQX = Functions(
    lambda net, x: jax.vmap(net.features)(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1),
    lambda net, a: jax.vmap(net.head)(a.transpose(0, 3, 1, 2)),
    classifier=lambda net: (net.fc.weight.T, net.fc.bias),
)


def test_equinox_cnn(eqx_net, images):
    CNN, eqx = eqx_net
    net = CNN(jax.random.key(0))
    # The module is params as it stands: its MaxPool2d keeps a function and a float.
    assert not all(isinstance(x, jax.Array) for x in jax.tree.leaves(net))
    a = EQX.features(net, images)
    want = gradcam_by_hand(a, lambda f: EQX.head(net, f), IDS)
    got = compute_maps("gradcam", EQX, net, images, IDS)
    assert got.shape == (3, 2, 8, 8) and want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    logits = jax.vmap(net)(images.transpose(0, 3, 1, 2))
    assert_gap_identity(compute_maps("cam", EQX, net, images, IDS), logits, net.fc.bias, IDS)
    out = camjax.extract(EQX, net, images, 2, method="gradcam")
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    assert out["maps"].shape == (3, 2, SIZE, SIZE) and out["boxes"].shape == (3, 2, 4)
    # New weights (eqx.tree_at, as Equinox users update a module) reuse the program.
    size = programs.size()
    other = eqx.tree_at(lambda m: m.fc.bias, net, net.fc.bias + 1.0)
    again = compute_maps("cam", EQX, other, images, IDS)
    assert programs.size() == size
    assert_gap_identity(again, jax.vmap(other)(images.transpose(0, 3, 1, 2)), other.fc.bias, IDS)


# --- Keras 3 on the JAX backend --------------------------------------------------------


@pytest.fixture(scope="module")
def keras_net():
    if "keras" not in __import__("sys").modules:
        with pytest.MonkeyPatch.context() as mp:  # the test's environment, not camjax's
            mp.setenv("KERAS_BACKEND", "jax")
            keras = pytest.importorskip("keras")
    else:
        import keras
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend")
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(12, 3, padding="same", activation="relu"),
    ])  # fmt: skip
    head = keras.Sequential([
        keras.Input((SIZE // 2, SIZE // 2, 12)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(C, bias_initializer="random_normal"),
    ])  # fmt: skip
    return backbone, head


def test_keras_model_through_stateless_call(keras_net, images):
    backbone, head = keras_net

    def state(m):
        return [v.value for v in m.trainable_variables], [
            v.value for v in m.non_trainable_variables
        ]

    params = {"features": state(backbone), "head": state(head)}
    fns = Functions(
        lambda p, x: backbone.stateless_call(*p["features"], x, training=False)[0],
        lambda p, a: head.stateless_call(*p["head"], a, training=False)[0],
        classifier="head",  # GlobalAveragePooling2D then Dense
    )
    a = fns.features(params, images)
    want = gradcam_by_hand(a, lambda f: fns.head(params, f), IDS)
    got = compute_maps("gradcam", fns, params, images, IDS)
    assert got.shape == (3, 2, 8, 8) and want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())
    kernel, bias = params["head"][0]
    cams = compute_maps("cam", fns, params, images, IDS)
    assert_gap_identity(cams, fns.head(params, a), bias, IDS)
    named = compute_maps("cam", fns, params, images, IDS, classifier=lambda p: tuple(p["head"][0]))
    np.testing.assert_allclose(named, cams, atol=1e-5)
    np.testing.assert_allclose(kernel, head.layers[-1].kernel.value)


def test_faithfulness_metrics_equal_the_flax_network(flax_net, images):
    # The one evaluation loop with the two-function model's maps and probabilities.
    from camjax.evaluation.runner import evaluate_stream

    model, v = flax_net
    p = v["params"]
    batch = {"image": np.asarray(images), "label": np.array([4, 1, 2]), "valid": np.ones(3, bool)}

    def evaluate(forward, predict):
        probs = jax.jit(lambda x: jax.nn.softmax(forward(x)))
        results, _ = evaluate_stream(
            [batch],
            predict,
            methods=("cam", "gradcam"),
            metrics=("insertion_deletion", "average_drop"),
            include_centre=False,
            score_fn=lambda x: np.asarray(probs(x)),
            options={"faithfulness_steps": 4},
        )
        return results["methods"]

    want = evaluate(
        lambda x: model.apply(v, x),
        lambda m, b: camjax.extract(model, v, b["image"], method=m, gt_labels=b["label"],
                                    layer="block2"),
    )  # fmt: skip
    got = evaluate(
        lambda x: JAX_CNN.apply(p, x),
        lambda m, b: camjax.extract(JAX_CNN, p, b["image"], method=m, gt_labels=b["label"]),
    )
    flat_want, tree = jax.tree.flatten(want)
    flat_got, tree_got = jax.tree.flatten(got)
    assert tree_got == tree and len(flat_want) >= 4
    assert len({round(float(x), 6) for x in flat_want}) > 1  # not all one value
    for g, w in zip(flat_got, flat_want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
