"""ImageNet and CUB pipelines on TFDS mock data (``tfds.testing.mock_data``, offline).

TFDS 4.9.10's default random mock examples are not usable here: random CUB boxes have
min > max (``BBoxFeature`` rejects them) and random ImageNet file names join no box
annotation. So each test passes ``as_dataset_fn`` (the mock's documented hook) with
examples shaped like the real ones: encoded images (the pipeline reads them with
``SkipDecoding``) showing a bright rectangle at a known box.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from camjax import data
from camjax.data import imagenet
from configs.default import get_config

# (height, width, inclusive box x0, y0, x1, y1) per mock example.
SCENES = [(48, 64, 5, 6, 30, 40), (40, 40, 0, 0, 19, 39), (64, 50, 12, 20, 49, 63),
          (36, 60, 30, 2, 55, 20), (50, 50, 10, 10, 38, 38)]  # fmt: skip


def _image(h, w, x0, y0, x1, y1):
    img = np.full((h, w, 3), 20, np.uint8)
    img[y0 : y1 + 1, x0 : x1 + 1] = 235
    return img


def _imagenet_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    images = [tf.io.encode_jpeg(_image(*s), quality=95).numpy() for s in SCENES]
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "label": np.arange(len(SCENES), dtype=np.int64) * 100,
            "file_name": [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(SCENES))],
        }
    )


def _cub_fn(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    images, masks, boxes = [], [], []
    for h, w, x0, y0, x1, y1 in SCENES:
        images.append(tf.io.encode_png(_image(h, w, x0, y0, x1, y1)).numpy())
        soft = np.zeros((h, w, 1), np.uint8)
        soft[y0 : y1 + 1, x0 : x1 + 1] = 200  # majority of annotators
        soft[max(y0 - 1, 0), x0 : x1 + 1] = 100  # minority: background
        masks.append(tf.io.encode_png(soft).numpy())
        boxes.append([y0 / h, x0 / w, (y1 + 1) / h, (x1 + 1) / w])
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "label": np.arange(len(SCENES), dtype=np.int64),
            "bbox": np.array(boxes, np.float32),
            "segmentation_mask": masks,
        }
    )


def _expected_box(h, w, x0, y0, x1, y1, size):
    # Pixel-centre rule at the model side (camjax.data.preprocess).
    def edge(lo, hi, n):
        a = int(np.ceil(lo / n * size - 0.5))
        b = int(np.ceil((hi + 1) / n * size - 0.5)) - 1
        return a, max(a, b)

    (ax, bx), (ay, by) = edge(x0, x1, w), edge(y0, y1, h)
    return (ax, ay, bx, by)


@pytest.fixture()
def xml_dir(tmp_path):
    d = tmp_path / "val_xml"
    d.mkdir()
    for i, (h, w, x0, y0, x1, y1) in enumerate(SCENES):
        (d / f"ILSVRC2012_val_{i + 1:08d}.xml").write_text(
            f"<annotation><filename>ILSVRC2012_val_{i + 1:08d}</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f"<object><name>n01440764</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
        )
    return str(d)


def _imagenet_cfg(val_boxes):
    c = get_config().data
    c.name = "imagenet2012"
    c.image_size = 32
    c.val_boxes = val_boxes
    c.normalization = "unit"
    return c


def test_imagenet_eval_boxes_from_xml(xml_dir, tmp_path):
    c = _imagenet_cfg(xml_dir)
    with tfds.testing.mock_data(num_examples=len(SCENES), as_dataset_fn=_imagenet_fn):
        i = data.info(c)
        batches = list(
            data.eval_iterator(
                c, "validation", global_batch_size=4, process_index=0, process_count=1
            )
        )
    assert i.num_classes == 1000 and i.class_names[207] == "golden retriever"
    assert not i.has_masks
    assert len(batches) == 2 and sum(b["valid"].sum() for b in batches) == 5
    rows = [(b, j) for b in batches for j in np.nonzero(b["valid"])[0]]
    for (b, j), scene in zip(rows, SCENES, strict=True):
        want = _expected_box(*scene, 32)
        assert tuple(b["bboxes"][j, 0]) == want and b["bbox_valid"][j].sum() == 1
        # The drawn rectangle (235 on 20) frames the same pixels after resize (JPEG
        # noise is a few levels, far from the 0.5 threshold except at exact ties: +-1).
        ys, xs = np.nonzero(b["image"][j, ..., 0] > 0.5)
        assert np.abs(np.array([xs.min(), ys.min(), xs.max(), ys.max()]) - want).max() <= 1
    assert [int(b["label"][j]) for b, j in rows] == [0, 100, 200, 300, 400]
    # The devkit's image numbers ride along (padding -1), and eval.blacklist drops them.
    assert [int(b["image_id"][j]) for b, j in rows] == [1, 2, 3, 4, 5]
    assert (batches[-1]["image_id"][~batches[-1]["valid"]] == -1).all()
    from camjax.protocols import blacklist

    listed = tmp_path / "blacklist.txt"
    listed.write_text("2\n5\n")
    kept = [blacklist.counted(b, {"blacklist": str(listed)}) for b in batches]
    pairs = zip(batches, kept, strict=True)
    ids = [int(b["image_id"][j]) for b, k in pairs for j in k.nonzero()[0]]
    assert ids == [1, 3, 4]


def test_imagenet_csv_boxes_match_xml(xml_dir, tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    lines = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{i + 1:08d},n01440764 {x0} {y0} {x1} {y1} n01440764 0 0 3 3"
        for i, (_, _, x0, y0, x1, y1) in enumerate(SCENES)
    ]
    path.write_text("\n".join(lines) + "\n")
    from_csv = imagenet.read_val_boxes(str(path))
    from_xml = imagenet.read_val_boxes(xml_dir)
    assert {k: v[:1] for k, v in from_csv.items()} == from_xml
    assert from_csv["ILSVRC2012_val_00000001"][1] == (0, 0, 3, 3)
    c = _imagenet_cfg(str(path))
    with tfds.testing.mock_data(num_examples=len(SCENES), as_dataset_fn=_imagenet_fn):
        (b,) = list(
            data.eval_iterator(
                c, "validation", global_batch_size=8, process_index=0, process_count=1
            )
        )
    np.testing.assert_array_equal(b["bbox_valid"].sum(1), [2, 2, 2, 2, 2, 0, 0, 0])


def test_imagenet_train_and_missing_inputs(tmp_path, xml_dir):
    c = _imagenet_cfg(None)
    c.train_augment = "random_resized_crop"
    with tfds.testing.mock_data(num_examples=len(SCENES), as_dataset_fn=_imagenet_fn):
        b = next(
            data.train_iterator(c, global_batch_size=4, seed=0, process_index=0, process_count=1)
        )
        assert b["image"].shape == (4, 32, 32, 3) and not b["bbox_valid"].any()
        with pytest.raises(FileNotFoundError, match="val_boxes"):
            data.eval_iterator(
                c, "validation", global_batch_size=4, process_index=0, process_count=1
            )
        # An image without an annotation is an error that names the file.
        os.remove(os.path.join(xml_dir, "ILSVRC2012_val_00000003.xml"))
        c.val_boxes = xml_dir
        with pytest.raises(tf.errors.InvalidArgumentError, match="ILSVRC2012_val_00000003"):
            list(
                data.eval_iterator(
                    c, "validation", global_batch_size=4, process_index=0, process_count=1
                )
            )
    # Not mocked, nothing prepared: the error says which files go where.
    c.data_dir = str(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError) as e:
        data.info(c)
    msg = str(e.value)
    assert "ILSVRC2012_img_train.tar (MISSING)" in msg and "ILSVRC2012_img_val.tar" in msg
    assert os.path.join(str(tmp_path / "tfds"), "downloads", "manual") in msg


def test_cub_masks_and_boxes():
    c = get_config().data
    c.name = "caltech_birds2011"
    c.image_size = 32
    with tfds.testing.mock_data(num_examples=len(SCENES), as_dataset_fn=_cub_fn):
        i = data.info(c)
        batches = list(
            data.eval_iterator(c, "test", global_batch_size=8, process_index=0, process_count=1)
        )
        tb = next(
            data.train_iterator(c, global_batch_size=4, seed=0, process_index=0, process_count=1)
        )
    assert i.num_classes == 200 and i.has_masks
    (b,) = batches
    for j, scene in enumerate(SCENES):
        want = _expected_box(*scene, 32)
        assert tuple(b["bboxes"][j, 0]) == want
        ys, xs = np.nonzero(b["mask"][j] == 1)  # >= 128 only: the 100-row is background
        got = (xs.min(), ys.min(), xs.max(), ys.max())
        assert np.abs(np.array(got) - want).max() <= 1
        assert set(np.unique(b["mask"][j])) <= {0, 1}
    assert not b["valid"][5:].any() and b["valid"][:5].all()
    assert tb["mask"].shape == (4, 32, 32) and tb["bbox_valid"][:, 0].sum() >= 1


def test_imagenet_ten_crop_batches_keep_the_original_geometry(xml_dir):
    # Ten-crop evaluation reads the 256-side resize and scores boxes at the original
    # size: orig_hw and orig_bboxes must give back the XML's numbers exactly.
    c = _imagenet_cfg(xml_dir)
    with tfds.testing.mock_data(num_examples=len(SCENES), as_dataset_fn=_imagenet_fn):
        batches = list(
            data.eval_iterator(
                c, "validation", global_batch_size=4, process_index=0, process_count=1,
                size=40, original=True,
            )
        )  # fmt: skip
    rows = [(b, j) for b in batches for j in np.nonzero(b["valid"])[0]]
    for (b, j), (h, w, x0, y0, x1, y1) in zip(rows, SCENES, strict=True):
        assert b["image"].shape[1:] == (40, 40, 3)
        assert tuple(b["orig_hw"][j]) == (h, w)
        assert tuple(b["orig_bboxes"][j, 0]) == (x0, y0, x1, y1)
        assert tuple(b["bboxes"][j, 0]) == _expected_box(h, w, x0, y0, x1, y1, 40)
    assert (batches[-1]["orig_bboxes"][~batches[-1]["valid"]] == 0).all()
