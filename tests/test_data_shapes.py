"""The embedded camjax_shapes builder, actually built (small) in a temp dir."""

import numpy as np
import pytest
import tensorflow as tf

from camjax.data import glyphs, info, shapes
from configs.default import get_config

SIZE = 32


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory):
    c = get_config().data
    c.data_dir = str(tmp_path_factory.mktemp("tfds"))
    c.image_size = SIZE
    c.shapes.image_size = SIZE
    c.shapes.num_train, c.shapes.num_validation, c.shapes.num_test = 60, 13, 7
    shapes.builder(c)  # generate once
    return c


def _examples(c, split):
    b = shapes.builder(c)
    return list(b.as_dataset(split=split).as_numpy_iterator())


def test_built_splits_and_info(data_cfg):
    b = shapes.builder(data_cfg)
    got = {k: v.num_examples for k, v in b.info.splits.items()}
    assert got == {"train": 60, "validation": 13, "test": 7}
    i = info(data_cfg)
    assert i.num_examples == got and i.has_masks and i.image_size == SIZE
    assert i.num_classes == 10 and i.class_names == glyphs.CLASS_NAMES
    assert b.builder_config.name == "s32_n60-13-7_seed0"


def test_labels_masks_and_boxes_agree(data_cfg):
    exs = _examples(data_cfg, "train")
    labels = sorted(int(e["label"]) for e in exs)
    # Label of example i is i % 10: 60 examples -> 6 of each class.
    assert labels == sorted(list(range(10)) * 6)
    touching = 0
    for e in exs:
        mask = e["segmentation_mask"][..., 0]
        assert set(np.unique(mask)) <= {0, 1} and mask.sum() >= 12
        assert e["image"].shape == (SIZE, SIZE, 3) and e["image"].dtype == np.uint8
        assert e["bboxes"].shape == (1, 4)
        ys, xs = np.nonzero(mask)
        want = (xs.min(), ys.min(), xs.max(), ys.max())
        # Normalised continuous box -> inclusive pixels at the native side.
        ymin, xmin, ymax, xmax = e["bboxes"][0] * SIZE
        got = (round(xmin), round(ymin), round(xmax) - 1, round(ymax) - 1)
        assert got == want
        touching += int(min(want[:2]) == 0 or max(want[2:]) == SIZE - 1)
    # ~15% of objects are placed across a border (plus large ones reaching it).
    assert 3 <= touching <= 40


def test_deterministic_and_seeded():
    a = shapes.example(0, "train", 5, SIZE)
    b = shapes.example(0, "train", 5, SIZE)
    c = shapes.example(1, "train", 5, SIZE)
    d = shapes.example(0, "validation", 5, SIZE)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["image"], d["image"])
    assert a["label"] == c["label"] == 5


def test_object_contrasts_with_its_surroundings():
    # The class signal: object pixels differ from the ring of pixels around the object.
    diffs = []
    for i in range(30):
        e = shapes.example(0, "train", i, 64)
        m = e["segmentation_mask"][..., 0].astype(bool)
        img = e["image"].astype(np.float32)
        ring = tf.nn.max_pool2d(m[None, ..., None].astype(np.float32), 5, 1, "SAME")
        ring = ring.numpy()[0, ..., 0].astype(bool) & ~m
        if ring.sum() > 10:
            diffs.append(np.linalg.norm(img[m].mean(0) - img[ring].mean(0)))
    assert np.median(diffs) > 40.0


@pytest.mark.parametrize("cls", range(10))
def test_silhouettes_are_distinct_and_nonempty(cls):
    g = (np.arange(64) + 0.5) / 32.0 - 1.0
    u, v = np.meshgrid(g, g)
    own = glyphs.silhouette(cls, u, v)
    assert 0.1 < own.mean() < 0.8
    for other in range(10):
        if other != cls:  # at least 5% of the square differs between any two classes
            assert (own != glyphs.silhouette(other, u, v)).mean() > 0.05


def test_bad_config():
    with pytest.raises(ValueError, match="image_size"):
        shapes.make_config(image_size=8)
    with pytest.raises(ValueError, match="split sizes"):
        shapes.make_config(num_test=0)
    assert shapes.make_config().name == "default"
    with pytest.raises(ValueError, match="class_id"):
        glyphs.silhouette(10, np.zeros(1), np.zeros(1))
