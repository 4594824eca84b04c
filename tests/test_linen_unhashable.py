"""Linen modules as their authors write them: unhashable fields (a list of stage sizes,
a dict config, a block class passed with functools.partial), a `train` flag defaulting
to True, batch norm over a named axis. camjax.extract and compute_maps take them as they
are, compile once per model and input shape, and do not keep the model alive.

Reference: Grad-CAM from the gradient of the model's own head taken by hand with jax.vjp.
"""

import functools
import gc
import weakref

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_variables import normal, variables

import camjax
from camjax.maps import normalize, upsample
from camjax.methods import compute_maps, programs

SIZE = 16
EVAL = {"apply_kwargs": {"train": False}}
TRACES = {"n": 0}


class ResBlock(nn.Module):
    filters: int
    strides: tuple = (1, 1)
    norm: object = nn.BatchNorm

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(x)
        y = nn.relu(self.norm()(y))
        y = nn.Conv(self.filters, (3, 3), use_bias=False)(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        if x.shape[-1] != self.filters or self.strides != (1, 1):
            x = nn.Conv(self.filters, (1, 1), self.strides, use_bias=False, name="proj")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    stage_sizes: list  # unhashable, as in users' code
    block_cls: type
    config: dict
    num_classes: int = 4

    @nn.compact
    def __call__(self, x, train: bool = True):
        TRACES["n"] += 1  # Python runs only when traced
        norm = functools.partial(
            nn.BatchNorm, use_running_average=not train, momentum=0.9, axis_name="batch"
        )
        x = nn.relu(norm(name="bn_init")(nn.Conv(8, (3, 3), use_bias=False)(x)))
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = self.block_cls(8 * 2**i, strides, norm, name=f"stage{i}_block{j}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name=self.config["head_name"])(x)


def _resnet():
    return functools.partial(
        ResNet, stage_sizes=[1, 1], block_cls=ResBlock, config={"head_name": "head"}
    )()


@pytest.fixture(scope="module")
def net():
    model = _resnet()
    v = variables(model, jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    return model, v


@pytest.fixture(scope="module")
def images():
    return normal(5, (2, SIZE, SIZE, 3))


def test_model_is_unhashable(net):
    with pytest.raises(TypeError):
        hash(net[0])


def test_extract_matches_hand_vjp(net, images):
    model, v = net
    ids = jnp.array([[2], [0]])
    keep = lambda m, _: m.name == "stage1_block0"  # noqa: E731
    _, state = model.apply(v, images, False, mutable=["intermediates"], capture_intermediates=keep)
    a = state["intermediates"]["stage1_block0"]["__call__"][0]
    head = v["params"]["head"]
    logits, vjp = jax.vjp(lambda f: f.mean(axis=(1, 2)) @ head["kernel"] + head["bias"], a)
    (g,) = vjp(jax.nn.one_hot(ids[:, 0], 4))
    want = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, g.mean(axis=(1, 2))))[:, None]
    got = compute_maps("gradcam", model, v, images, ids, layer="stage1_block0", **EVAL)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    out = camjax.extract(model, v, images, 1, method="gradcam", layer="stage1_block0",
                         class_ids=ids, **EVAL)  # fmt: skip
    full = normalize(upsample(want, (SIZE, SIZE), "bilinear"), "minmax")
    np.testing.assert_allclose(out["maps"], full, atol=1e-4)
    np.testing.assert_allclose(out["logits"], model.apply(v, images, False), rtol=1e-5)


def test_repeated_calls_trace_once(net, images):
    model, v = net
    kw = {"method": "gradcam", "layer": "stage1_block0", **EVAL}
    first = camjax.extract(model, v, images, 2, **kw)
    n = TRACES["n"]
    for _ in range(3):
        again = camjax.extract(model, v, images, 2, **kw)
    assert TRACES["n"] == n  # no trace, no jax.eval_shape of the model per call
    np.testing.assert_array_equal(again["maps"], first["maps"])
    # New weights of the same structure reuse the program too.
    v2 = jax.tree.map(lambda t: t * 1.5, v)
    camjax.extract(model, v2, images, 2, **kw)
    ids = jnp.array([[1], [3]])
    compute_maps("gradcam", model, v, images, ids, layer="stage1_block0", **EVAL)
    n = TRACES["n"]
    compute_maps("gradcam", model, v2, images, ids + 0, layer="stage1_block0", **EVAL)
    assert TRACES["n"] == n


def test_equal_models_share_and_dead_models_leave_the_cache(images):
    model = _resnet()
    v = variables(model, jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    camjax.extract(model, v, images, 1, method="gradcam", layer="stage0_block0", **EVAL)
    before = programs.size()
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the compiled program did not keep the model alive
    assert programs.size() == before - 1


def test_inside_the_callers_jit(net, images):
    model, v = net
    f = jax.jit(lambda v, x: camjax.extract(model, v, x, 2, method="gradcam",
                                            layer="stage1_block0", **EVAL))  # fmt: skip
    got = f(v, images)
    want = camjax.extract(model, v, images, 2, method="gradcam", layer="stage1_block0", **EVAL)
    np.testing.assert_allclose(got["maps"], want["maps"], atol=1e-5)
