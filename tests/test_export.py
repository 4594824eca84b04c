"""The training step and ``camjax.extract`` export for GPU and TPU with ``jax.export``.

No device is needed: lowering for a platform is enough. The exported modules must hold no
host callback (the CPU box kernel is chosen only when the program is lowered for CPU), no
custom call of any kind, and the training step no conditional at all (``stablehlo.case``:
0.1.0 fenced its convolution gradients with one): nothing that exists for the development
CPU's sake. The box functions choose their backend with ``lax.platform_dependent``, which
leaves a switch on a constant platform index in the StableHLO; XLA folds it before it
compiles, so only the callback's absence matters there.
"""

import re

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import camjax
from camjax import boxes, models
from camjax.train import state as state_lib
from camjax.train import step as step_lib

ACCELERATORS = [("cuda",), ("tpu",)]


def _abstract(tree, sharding=None):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _check_clean(exported, conditionals: bool = True) -> None:
    text = exported.mlir_module()
    assert "callback" not in text
    assert re.findall(r"custom_call @([\w.]+)", text) == []
    if not conditionals:
        assert "stablehlo.case" not in text


@pytest.fixture(scope="module")
def tiny():
    model = models.create("tiny_gap", 5, widths=(4, 8, 8), head_features=8)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return model, variables


def test_boxes_pick_their_backend_when_lowered():
    f = jax.jit(lambda m: boxes.largest_component_box(m, 0.2))
    maps = jax.ShapeDtypeStruct((2, 16, 16), jnp.float32)
    # Lowered for the CPU the host kernel is there (so the check below can fail) ...
    assert "callback" in f.trace(maps).lower(lowering_platforms=("cpu",)).as_text()
    # ... and lowered for an accelerator it is not.
    for platforms in ACCELERATORS:
        _check_clean(jax.export.export(f, platforms=platforms)(maps))
    g = jax.jit(lambda m: boxes.component_boxes(m, jnp.linspace(0, 0.9, 10), max_components=4))
    for platforms in ACCELERATORS:
        _check_clean(jax.export.export(g, platforms=platforms)(maps))


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_extract_exports_for_gpu_and_tpu(tiny, method):
    model, variables = tiny
    f = jax.jit(lambda v, x: camjax.extract(model, v, x, top_k=3, method=method))
    images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    for platforms in ACCELERATORS:
        _check_clean(jax.export.export(f, platforms=platforms)(variables, images))
    exported = jax.export.export(f, platforms=("cuda", "tpu"))(variables, images)
    assert exported.platforms == ("cuda", "tpu")


def test_train_step_exports_for_gpu_and_tpu(tiny):
    model, variables = tiny
    tx = optax.sgd(0.1, momentum=0.9)
    state = jax.eval_shape(lambda v: state_lib.create_train_state(v, tx), variables)
    mesh = jax.make_mesh((1,), (step_lib.AXIS,))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(step_lib.AXIS))
    step = jax.jit(
        jax.shard_map(
            step_lib.make_train_step(model, tx),
            mesh=mesh,
            in_specs=(P(), P(step_lib.AXIS), P()),
            out_specs=(P(), P()),
        )
    )
    batch = {
        "image": jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32, sharding=split),
        "label": jax.ShapeDtypeStruct((4,), jnp.int32, sharding=split),
    }
    key = jax.random.key(0)
    for platforms in ACCELERATORS:
        _check_clean(
            jax.export.export(step, platforms=platforms)(_abstract(state, replicated), batch, key),
            conditionals=False,
        )


@pytest.mark.parametrize("name", ["vgg16_gap", "resnet50_gap", "googlenet_gap"])
def test_backbone_gradients_export_without_conditionals(name):
    model = models.create(name, 5)
    images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)

    def loss(params, stats, x, y):
        v = {"params": params, **({"batch_stats": stats} if stats else {})}
        (logits, _), _ = model.apply(v, x, train=True, mutable=["batch_stats"])
        return step_lib.cross_entropy(logits, y)

    grad = jax.jit(jax.grad(loss))
    labels = jax.ShapeDtypeStruct((2,), jnp.int32)
    args = (variables["params"], variables.get("batch_stats", {}), images, labels)
    for platforms in ACCELERATORS:
        _check_clean(jax.export.export(grad, platforms=platforms)(*args), conditionals=False)
