"""timm's ResNet-50 and VGG16 files map onto the backbones like torchvision's.

timm's names (timm 1.0.31 source): ResNet-50 is ``conv1``, ``bn1``, ``layer1``-``layer4``
(``models/resnet.py`` ``make_blocks``: "weight compat requires it") with
``downsample.0/1`` and ``fc``, torchvision's names; VGG16 keeps ``features.N`` and renames
``classifier.0/3/6`` to ``pre_logits.fc1``, ``pre_logits.fc2`` (as [4096, 512, 7, 7] and
[4096, 4096, 1, 1] convolutions) and ``head.fc`` (``models/vgg.py`` ``_filter_fn``).

Files are written as safetensors by the ``safetensors`` package (the reference writer);
each backbone leaf must be exactly the array written under its name, transposed OIHW ->
HWIO. The classifier tensors are ignored by name, so small stand-ins replace timm's
411 MB ``pre_logits.fc1.weight``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from camjax import models
from camjax.pretrained import MappingError, load_into
from camjax.pretrained.torchvision import source_naming, torch_key

st_numpy = pytest.importorskip("safetensors.numpy")

TIMM_VGG16_HEAD = ("pre_logits.fc1", "pre_logits.fc2", "head.fc")
TORCHVISION_VGG16_HEAD = ("classifier.0", "classifier.3", "classifier.6")


def _shapes(name: str):
    model = models.create(name, 10)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def _trunk(shapes, dtype, seed=0) -> dict[str, np.ndarray]:
    """A random tensor, torch layout, for every backbone leaf, under its torch name."""
    rng = np.random.default_rng(seed)
    out = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        if path[1] != "backbone":
            continue
        shape = leaf.shape if len(leaf.shape) != 4 else tuple(leaf.shape[i] for i in (3, 2, 0, 1))
        out[torch_key(path)] = rng.standard_normal(shape).astype(dtype)
    return out


def _head(prefixes) -> dict[str, np.ndarray]:
    return {f"{p}.{leaf}": np.full(3, i, np.float32) for i, p in enumerate(prefixes)
            for leaf in ("weight", "bias")}  # fmt: skip


def _assert_backbone_is(variables, trunk) -> None:
    n = 0
    for path, leaf in traverse_util.flatten_dict(variables).items():
        if path[1] != "backbone":
            continue
        want = trunk[torch_key(path)].astype(np.float32)
        want = want.transpose(2, 3, 1, 0) if want.ndim == 4 else want
        np.testing.assert_array_equal(np.asarray(leaf), want, err_msg=str(path))
        n += 1
    assert n == len(trunk)


def test_timm_vgg16_safetensors_maps_like_torchvision(tmp_path):
    shapes = _shapes("vgg16_gap")
    trunk = _trunk(shapes, np.float32)
    timm_file = tmp_path / "vgg16.safetensors"
    st_numpy.save_file({**trunk, **_head(TIMM_VGG16_HEAD)}, timm_file, metadata={"f": "timm"})
    tv_file = tmp_path / "vgg16_tv.safetensors"
    st_numpy.save_file({**trunk, **_head(TORCHVISION_VGG16_HEAD)}, tv_file)
    _assert_backbone_is(load_into("vgg16_gap", timm_file, shapes), trunk)
    _assert_backbone_is(load_into("vgg16_gap", tv_file, shapes), trunk)
    assert source_naming("vgg16", {**trunk, **_head(TIMM_VGG16_HEAD)}) == "timm"
    assert source_naming("vgg16", {**trunk, **_head(TORCHVISION_VGG16_HEAD)}) == "torchvision"


def test_timm_vgg16_with_torchvision_classifier_keys_is_refused(tmp_path):
    """The two namings are not mixed: a timm file's classifier.* keys are unexpected."""
    shapes = _shapes("vgg16_gap")
    trunk = _trunk(shapes, np.float32)
    path = tmp_path / "mixed.safetensors"
    head = {**_head(TIMM_VGG16_HEAD), "classifier.0.weight": np.zeros(2, np.float32)}
    st_numpy.save_file({**trunk, **head}, path)
    with pytest.raises(MappingError, match=r"timm vgg16 .*unexpected \(1\): classifier.0.weight"):
        load_into("vgg16_gap", path, shapes)


def test_timm_resnet50_float16_safetensors(tmp_path):
    """timm's ResNet-50 names are torchvision's (fc included); float16 casts to float32."""
    shapes = _shapes("resnet50_gap")
    trunk = _trunk(shapes, np.float16, seed=1)
    bn_counts = {k.replace("running_var", "num_batches_tracked"): np.array(7, np.int64)
                 for k in trunk if k.endswith("running_var")}  # fmt: skip
    path = tmp_path / "resnet50.safetensors"
    fc = {"fc.weight": np.ones((1000, 2048), np.float16), "fc.bias": np.zeros(1000, np.float16)}
    st_numpy.save_file({**trunk, **bn_counts, **fc}, path)
    assert source_naming("resnet50", trunk) == "torchvision"
    _assert_backbone_is(load_into("resnet50_gap", path, shapes), trunk)
