"""What extract and compute_maps promise at the edges: errors that name the fix, one NaN
contract, defined results for empty inputs, warnings for maps that cannot mean much.

Every case is made for real (a model in training mode, a NaN pixel, a traced class id
out of range), and results are compared with the same call on clean inputs.
"""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

import camjax
from camjax.methods import METHODS, compute_maps
from camjax.methods.checks import CamjaxWarning

SIZE, C = 16, 4


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(8, (3, 3), use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, axis_name="batch", name="bn")(x)
        return nn.relu(x)


class Net(nn.Module):
    """A GAP classifier with batch norm over a named axis and a `train` flag (True by
    default, as many training codebases write it)."""

    extra_conv: bool = False

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = Block(name="block")(x, train)
        if self.extra_conv:  # a layer between the map and the pooling
            x = nn.relu(nn.Conv(8, (3, 3), name="late")(x))
        return nn.Dense(C, name="fc")(x.mean(axis=(1, 2)))


class NeedsKeyword(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv")(x))
        return nn.Dense(C, name="fc")(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def net():
    model = Net()
    return model, variables(model, jnp.zeros((1, SIZE, SIZE, 3)), train=False)


@pytest.fixture(scope="module")
def images():
    return normal(7, (3, SIZE, SIZE, 3))


EVAL = {"apply_kwargs": {"train": False}}
IDS = jnp.array([[1, 0], [2, 3], [0, 0]])


def test_training_mode_names_apply_kwargs(net, images):
    model, v = net
    with pytest.raises(ValueError, match=r"training mode.*apply_kwargs=\{'train': False\}"):
        camjax.extract(model, v, images, 1, layer="block")
    with pytest.raises(ValueError, match="training mode.*apply_kwargs"):
        compute_maps("gradcam", model, v, images, IDS, layer="block")
    # Without the named axis, batch norm in training mode wants to update its statistics.
    bn_model = nn.Sequential([nn.Conv(8, (3, 3)), nn.BatchNorm(use_running_average=False)])
    bv = bn_model.init(jax.random.key(0), images)
    with pytest.raises(ValueError, match="updates a variable collection.*apply_kwargs"):
        compute_maps("backprop", bn_model, bv, images, per_image_sum())


def per_image_sum():
    from camjax.methods import per_image

    return per_image(lambda o: o.sum()[None])


def test_missing_keyword_names_apply_kwargs(images):
    model = NeedsKeyword()
    v = variables(model, jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    with pytest.raises(ValueError, match=r"__call__.*'train'.*apply_kwargs"):
        camjax.extract(model, v, images, 1, method="gradcam", layer="conv")
    with pytest.raises(ValueError, match=r"unexpected keyword.*apply_kwargs"):
        compute_maps("gradcam", model, v, images, IDS, layer="conv",
                     apply_kwargs={"train": False, "dropout": False})  # fmt: skip
    out = camjax.extract(model, v, images, 1, method="gradcam", layer="conv", **EVAL)
    assert out["maps"].shape == (3, 1, SIZE, SIZE)


def test_variables_of_another_model(net, images):
    model, v = net
    with pytest.raises(ValueError, match="variables do not fit this model"):
        compute_maps("gradcam", model, {"params": {"fc": v["params"]["fc"]}}, images, IDS,
                     layer="block", **EVAL)  # fmt: skip


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_nan_contract(method, net, images):
    """A non-finite pixel: NaN raw maps (compute_maps), NaN logits/probs and zero maps and
    boxes (extract); the other images as if alone."""
    model, v = net
    bad = images.at[1, 3, 4, 0].set(jnp.nan).at[2, 0, 0, 1].set(jnp.inf)
    kw = {"layer": "block", **EVAL}
    maps = compute_maps(method, model, v, bad, IDS, **kw)
    assert np.isnan(np.asarray(maps[1:])).all()
    clean = compute_maps(method, model, v, images[:1], IDS[:1], **kw)
    np.testing.assert_allclose(maps[:1], clean, rtol=1e-5, atol=1e-6)
    out = camjax.extract(model, v, bad, 2, method=method, **kw)
    assert np.isnan(np.asarray(out["logits"][1:])).all()
    assert np.isnan(np.asarray(out["probs"][1:])).all()
    assert not np.asarray(out["maps"][1:]).any() and not np.asarray(out["boxes"][1:]).any()
    assert np.isfinite(np.asarray(out["maps"][0])).all()


def test_out_of_range_class_ids(net, images):
    model, v = net
    kw = {"layer": "block", **EVAL}
    ids = jnp.array([[1, C], [2, -1], [0, 0]])
    # Concrete ids are checked, for both entry points.
    with pytest.raises(ValueError, match=rf"class_ids must lie in \[0, {C}\)"):
        compute_maps("gradcam", model, v, images, ids, **kw)
    with pytest.raises(ValueError, match=rf"class_ids must lie in \[0, {C}\)"):
        camjax.extract(model, v, images, layer="block", class_ids=ids, **EVAL)
    # Traced ids cannot be: the documented result is NaN raw maps for those slots ...
    for method in ("cam", "gradcam", "scorecam"):
        f = jax.jit(lambda i, m=method: compute_maps(m, model, v, images, i, **kw))
        maps = np.asarray(f(ids))
        assert np.isnan(maps[:2, 1]).all() and np.isfinite(maps[:, 0]).all()
        np.testing.assert_allclose(
            maps[:, 0], compute_maps(method, model, v, images, ids[:, :1], **kw)[:, 0],
            rtol=1e-5, atol=1e-6,
        )  # fmt: skip
    # ... and for extract NaN probabilities, zero maps and boxes for those slots.
    g = jax.jit(lambda i: camjax.extract(model, v, images, layer="block", class_ids=i,
                                         method="gradcam", **EVAL))  # fmt: skip
    out = g(ids)
    assert np.isnan(np.asarray(out["probs"][:2, 1])).all()
    assert not np.asarray(out["maps"][:2, 1]).any() and not np.asarray(out["boxes"][:2, 1]).any()
    assert np.isfinite(np.asarray(out["probs"][:, 0])).all()


def test_empty_and_missing_inputs(net, images):
    model, v = net
    kw = {"layer": "block", **EVAL}
    for method in sorted(METHODS):  # a batch of 0 gives 0 maps, for every method
        maps = compute_maps(method, model, v, images[:0], IDS[:0], **kw)
        assert maps.shape[:2] == (0, 2)
    with pytest.raises(ValueError, match="targets is required"):
        compute_maps("gradcam", model, v, images, None, **kw)
    with pytest.raises(ValueError, match="targets is required"):
        compute_maps("gradcam", model, v, images, **kw)
    with pytest.raises(ValueError, match="class_ids is empty"):
        compute_maps("gradcam", model, v, images, [], **kw)
    with pytest.raises(ValueError, match="class_ids is empty"):
        camjax.extract(model, v, images, class_ids=[], **kw)
    raw = (images * 40 + 128).clip(0, 255).astype(jnp.uint8)
    with pytest.raises(ValueError, match="images must be float"):
        compute_maps("gradcam", model, v, raw, IDS, **kw)
    with pytest.raises(ValueError, match="images must be float"):
        camjax.extract(model, v, raw, **kw)
    # [N] ids are the same classes for every image, as in extract.
    np.testing.assert_allclose(
        compute_maps("gradcam", model, v, images, [1, 0], **kw),
        compute_maps("gradcam", model, v, images, jnp.array([[1, 0]] * 3), **kw),
    )


def test_plain_cam_identity_warning(images):
    ok = Net()
    v = variables(ok, jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamjaxWarning)
        compute_maps("cam", ok, v, images, IDS, layer="block", **EVAL)  # GAP of bn: holds
    late = Net(extra_conv=True)
    lv = variables(late, jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    with pytest.warns(CamjaxWarning, match="identity.*does not hold at layer 'block'"):
        compute_maps("cam", late, lv, images, IDS, layer="block", **EVAL)
    # Reported by the call that compiles; the next identical call is silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamjaxWarning)
        compute_maps("cam", late, lv, images, IDS, layer="block", **EVAL)
