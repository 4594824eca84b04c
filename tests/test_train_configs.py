"""Every paper config stays runnable: one training step and an evaluation batch on TFDS
mock data (``tfds.testing.mock_data``, offline) at 32 px.

The fast test swaps the architecture for ``tiny_gap`` (the paper backbones take no width
overrides, and compiling VGG16's step alone takes ~100 s on 2 shared cores); the slow
test runs each config's real architecture."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = [
    "vgg16_gap_imagenet", "googlenet_gap_imagenet", "googlenet_gmp_imagenet",
    "alexnet_gap_imagenet", "alexnet_star_gap_imagenet", "resnet50_gap_imagenet",
    "vgg16_gap_cub", "googlenet_gap_cub", "vgg16_gap_imagenet_as_released",
    "alexnet_gap_imagenet_as_released", "googlenet_gap_imagenet_as_released",
]  # fmt: skip


def _scenes(n=8):
    rs = np.random.RandomState(0)
    for i in range(n):
        img = rs.randint(0, 60, (40, 48, 3)).astype(np.uint8)
        img[8:30, 10:40] += 150
        yield i, img


def _imagenet_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    ex = list(_scenes())
    return tf.data.Dataset.from_tensor_slices({
        "image": [tf.io.encode_jpeg(img).numpy() for _, img in ex],
        "label": np.array([i * 100 for i, _ in ex], np.int64),
        "file_name": [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i, _ in ex],
    })  # fmt: skip


def _cub_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    ex = list(_scenes())
    mask = np.zeros((40, 48, 1), np.uint8)
    mask[8:30, 10:40] = 255
    return tf.data.Dataset.from_tensor_slices({
        "image": [tf.io.encode_png(img).numpy() for _, img in ex],
        "label": np.array([i * 20 for i, _ in ex], np.int64),
        "bbox": np.tile(np.array([[8 / 40, 10 / 48, 30 / 40, 40 / 48]], np.float32), (8, 1)),
        "segmentation_mask": [tf.io.encode_png(mask).numpy() for _ in ex],
    })  # fmt: skip


@pytest.fixture
def val_boxes(tmp_path):
    d = tmp_path / "val_xml"
    d.mkdir()
    for i, _ in _scenes():
        (d / f"ILSVRC2012_val_{i + 1:08d}.xml").write_text(
            f"<annotation><filename>ILSVRC2012_val_{i + 1:08d}</filename>"
            "<size><width>48</width><height>40</height><depth>3</depth></size>"
            "<object><name>n01440764</name><bndbox><xmin>10</xmin><ymin>8</ymin>"
            "<xmax>39</xmax><ymax>29</ymax></bndbox></object></annotation>"
        )
    return str(d)


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_loads_checks_and_builds(name):
    config = train.load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    default = train.load_config(os.path.join(ROOT, "configs", "default.py"))
    train.check_config(config, default)
    assert config.model.name in name and config.data.name in ("imagenet2012", "caltech_birds2011")
    model = train.build_model(config, 1000)  # the factory accepts dtype / bn_axis_name
    assert model.head.num_classes == 1000
    assert model.head.pool == ("max" if "gmp" in name else "avg")


# ~45 s each on 2 shared cores (fresh compiles and tf.data set-up per config): two in the
# suite (one ImageNet, one CUB), the other six marked slow.
# Every config trains one step once: four distinct backbones with their own
# architecture, the variants of a backbone already covered (CUB, GMP pooling, the
# released recipes) with the tiny model, which still runs their data set, optimizer and
# evaluation plumbing. (The GMP head and every backbone's gradients are covered in
# test_models.py and test_differentiable.py.)
# GoogLeNet's training graph (the costliest to compile here) is traced with its
# gradients in test_differentiable.py and test_export.py; its forward pass runs in
# test_cam.py and test_models.py.
ARCHITECTURES = [
    "vgg16_gap_imagenet", "alexnet_gap_imagenet", "alexnet_star_gap_imagenet",
    "resnet50_gap_imagenet",
]  # fmt: skip
VARIANTS = [n for n in PAPER if n not in ARCHITECTURES]


# The edit-test loop keeps one variant (CUB: its own data set and boxes); the others run in
# the whole suite.
@pytest.mark.parametrize(
    "name",
    [n if n == "vgg16_gap_cub" else pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS],
)
def test_paper_config_runs_with_tiny_model(name, tmp_path, val_boxes):
    _run(name, tmp_path / "run", val_boxes, tiny=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_paper_config_runs_with_its_architecture(name, tmp_path, val_boxes):
    _run(name, tmp_path / "run", val_boxes, tiny=False)


def _run(name, tmp_path, val_boxes, tiny):
    config = train.load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    assert config.optimizer.weight_decay == 5e-4 and config.optimizer.momentum == 0.9
    # Shrink the run, not the architecture: 32 px, batch 8, one step, one eval batch.
    config.data.image_size = 32
    config.train.batch_size = 8
    config.train.num_steps = 1
    config.train.log_every = 1
    config.train.async_checkpoints = False
    config.eval.batch_size = 8
    config.eval.max_batches = 1
    config.eval.cam_threshold_steps = 10
    config.data.val_boxes = val_boxes
    if tiny:
        config.model.name = "tiny_gap"
        for key in list(config.model.kwargs):  # the paper model's own kwargs do not apply
            del config.model.kwargs[key]
        config.model.sync_batch_norm = False
        config.model.kwargs.widths = (4, 8)
        config.model.kwargs.head_features = 8
    fn = _cub_fn if "cub" in name else _imagenet_fn
    with tfds.testing.mock_data(num_examples=8, as_dataset_fn=fn):
        result = train.train_and_evaluate(config, str(tmp_path))
    assert result["step"] == 1 and np.isfinite(result["train_loss"])
    # One step from random init on 1000 (200) classes: loss near log(C) (6.9 / 5.3).
    num_classes = 200 if "cub" in name else 1000
    assert abs(result["train_loss"] - np.log(num_classes)) < 2.0
    assert 0.0 <= result["eval_accuracy"] <= 1.0
    assert os.listdir(tmp_path / "checkpoints") == ["1"]
