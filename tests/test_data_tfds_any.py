"""The ``tfds`` data source (any TFDS data set by feature names) on TFDS mock data.

Offline: ``tfds.testing.mock_data`` with ``as_dataset_fn`` giving examples shaped like the
real ones (encoded images, as the source reads them with ``SkipDecoding``) that show a
bright rectangle at a known box, so the box numbers and the pixels can be compared.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax import data
from configs.default import get_config

# (height, width, [inclusive boxes (x0, y0, x1, y1), ...]); the first box is drawn.
DOGS = [
    (40, 60, [(10, 5, 29, 19)]),
    (48, 64, [(20, 8, 63, 47), (0, 0, 7, 7)]),
    (36, 36, [(9, 9, 26, 26)]),
    (50, 40, [(0, 10, 39, 29), (1, 1, 2, 2), (30, 40, 39, 49)]),
]
SIZE = 32


def _image(h, w, box):
    x0, y0, x1, y1 = box
    img = np.full((h, w, 3), 20, np.uint8)
    img[y0 : y1 + 1, x0 : x1 + 1] = 235
    return img


def _tfds_box(h, w, box):
    x0, y0, x1, y1 = box  # TFDS: normalised continuous edges (ymin, xmin, ymax, xmax)
    return [y0 / h, x0 / w, (y1 + 1) / h, (x1 + 1) / w]


def _dogs_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, read_config, kwargs
    assert isinstance(decoders["image"], tfds.decode.SkipDecoding)

    def gen():
        for k, (h, w, boxes) in enumerate(DOGS):
            yield {
                "image": tf.io.encode_png(_image(h, w, boxes[0])).numpy(),
                "image/filename": f"dog{k}.jpg",
                "label": 7 * k,
                "objects": {"bbox": np.array([_tfds_box(h, w, b) for b in boxes], np.float32)},
            }

    sig = {
        "image": tf.TensorSpec([], tf.string),
        "image/filename": tf.TensorSpec([], tf.string),
        "label": tf.TensorSpec([], tf.int64),
        "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32)},
    }
    return tf.data.Dataset.from_generator(gen, output_signature=sig)


def _cfg(name="stanford_dogs", **keys):
    c = get_config().data
    c.name = "tfds"
    c.image_size = SIZE
    c.normalization = "unit"
    c.tfds.name = name
    for k, v in keys.items():
        c.tfds[k] = v
    return c


def _expected(h, w, box):
    def edge(lo, hi, n):
        a = int(np.ceil(lo / n * SIZE - 0.5))
        return a, max(a, int(np.ceil((hi + 1) / n * SIZE - 0.5)) - 1)

    (ax, bx), (ay, by) = edge(box[0], box[2], w), edge(box[1], box[3], h)
    return (ax, ay, bx, by)


def test_stanford_dogs_boxes_by_feature_name():
    c = _cfg(boxes_key="objects/bbox")
    with tfds.testing.mock_data(num_examples=len(DOGS), as_dataset_fn=_dogs_fn):
        i = data.info(c)
        names = tfds.builder("stanford_dogs").info.features["label"].names
        (b,) = data.eval_iterator(c, "test", global_batch_size=8, process_index=0, process_count=1)
        tb = next(
            data.train_iterator(c, global_batch_size=4, seed=0, process_index=0, process_count=1)
        )
    assert i.num_classes == 120 and not i.has_masks
    assert i.class_names == tuple(names)  # the label feature's (mock metadata: "0".."119")
    # By hand: 60 x 40 image, box x 10..29, y 5..19 -> edges x [10, 30)/60, y [5, 20)/40;
    # at 32 px [5.33, 16) and [4, 16): pixel centres inside give x 5..15, y 4..15.
    assert tuple(b["bboxes"][0, 0]) == (5, 4, 15, 15)
    # The 2 x 2 box (1..2) of a 40-wide, 50-high image shrinks to one pixel: x [1, 3)/40 * 32
    # = [0.8, 2.4) and y [1, 3)/50 * 32 = [0.64, 1.92) each hold only the centre 1.5.
    assert tuple(b["bboxes"][3, 1]) == (1, 1, 1, 1)
    np.testing.assert_array_equal(b["label"][:4], [0, 7, 14, 21])
    np.testing.assert_array_equal(b["bbox_valid"].sum(1), [1, 2, 1, 3, 0, 0, 0, 0])
    for j, (h, w, boxes) in enumerate(DOGS):
        for k, box in enumerate(boxes):
            assert tuple(b["bboxes"][j, k]) == _expected(h, w, box)
        ys, xs = np.nonzero(b["image"][j, ..., 0] > 0.5)
        drawn = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(drawn - b["bboxes"][j, 0]).max() <= 1
    assert tb["image"].shape == (4, SIZE, SIZE, 3) and tb["bbox_valid"].any()


def _cub_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    h, w, (box,) = DOGS[0]
    mask = np.zeros((h, w, 1), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0 : y1 + 1, x0 : x1 + 1] = 3  # any non-zero value is foreground here
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [tf.io.encode_png(_image(h, w, box)).numpy()],
            "label": np.array([5], np.int64),
            "bbox": np.array([_tfds_box(h, w, box)], np.float32),
            "segmentation_mask": [tf.io.encode_png(mask).numpy()],
        }
    )


def test_cub_single_box_and_mask_keys():
    c = _cfg("caltech_birds2011", boxes_key="bbox", mask_key="segmentation_mask")
    with tfds.testing.mock_data(num_examples=1, as_dataset_fn=_cub_fn):
        i = data.info(c)
        (b,) = data.eval_iterator(c, "test", global_batch_size=2, process_index=0, process_count=1)
    assert i.num_classes == 200 and i.has_masks
    assert tuple(b["bboxes"][0, 0]) == (5, 4, 15, 15) and b["bbox_valid"][0].sum() == 1
    ys, xs = np.nonzero(b["mask"][0])
    assert set(np.unique(b["mask"][0])) == {0, 1}
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (5, 4, 15, 15)  # nearest: same pixels
    assert b["valid"].tolist() == [True, False]


def test_errors_name_the_feature():
    def msg(c, exc=ValueError):
        with tfds.testing.mock_data(num_examples=1, as_dataset_fn=_dogs_fn):
            with pytest.raises(exc) as e:
                data.info(c)
        assert "\n" not in str(e.value)
        return str(e.value)

    c = _cfg()
    c.tfds.name = None
    assert "data.tfds.name" in msg(c)
    m = msg(_cfg(boxes_key="bbox"))
    assert "no feature 'bbox' (data.tfds.boxes_key)" in m and "objects" in m
    m = msg(_cfg(label_key="image/filename"))
    assert "label_key 'image/filename' is a Text, not a ClassLabel" in m
    assert "not a BBoxFeature" in msg(_cfg(boxes_key="label"))
    assert "no_such_dataset_xyz" in msg(_cfg("no_such_dataset_xyz"))
