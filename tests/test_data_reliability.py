"""Issue #24, the data side: box files of the wrong types or with a byte-order mark, and
image files TensorFlow cannot decode in a class folder (a text file named .jpg, a
zero-byte JPEG, a truncated JPEG). Each test writes the hostile file itself."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from camjax import data
from camjax.data import box_files
from configs.default import get_config

GOOD = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 3, "name": "cat"}]}


@pytest.mark.parametrize(
    "doc, message",
    [
        (dict(GOOD, annotations=[{"image_id": 1, "bbox": ["a", 5, 10, 10]}]),
         r"annotation 0: bbox must be 4 numbers .*\['a', 5, 10, 10\]"),
        (dict(GOOD, annotations=[{"image_id": 1, "bbox": [None, 5, 10, 10]}]),
         r"annotation 0: bbox must be 4 numbers"),
        (dict(GOOD, annotations=[{"image_id": 1, "bbox": None}]),
         r"annotation 0: bbox must be 4 numbers .*None"),
        (dict(GOOD, annotations={"a": 1}), r"annotations must be a list, got a dict"),
        (dict(GOOD, annotations=[None]), r"annotation 0: must be an object"),
        (dict(GOOD, annotations=[{"image_id": [1], "bbox": [1, 2, 3, 4]}]),
         r"annotation 0: image_id \[1\] is not in images"),
        (dict(GOOD, annotations=[{"image_id": 1, "category_id": {}, "bbox": [1, 2, 3, 4]}]),
         r"annotation 0: category_id \{\} is not in categories"),
        ({"images": {"x": 1}, "annotations": []}, r"images must be a list, got a dict"),
        ({"images": [{"file_name": "a.png"}], "annotations": []}, r"images\[0\]: needs an"),
        ([1, 2], r"not COCO JSON"),
    ],
)  # fmt: skip
def test_coco_of_the_wrong_types_names_the_file_and_the_field(tmp_path, doc, message):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message) as e:
        box_files.read(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_box_files_with_a_byte_order_mark_are_read(tmp_path):
    # Excel's "CSV UTF-8" and some Windows editors' JSON start with U+FEFF.
    csv = tmp_path / "b.csv"
    csv.write_text("filename,class,xmin,ymin,xmax,ymax\na.png,cat,1,2,3,4\n", encoding="utf-8-sig")
    (a,) = box_files.read(str(csv))
    assert (a.image, a.cls, a.box) == ("a.png", "cat", (1.0, 2.0, 4.0, 5.0))
    coco = tmp_path / "b.json"
    doc = dict(GOOD, annotations=[{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}])
    coco.write_text(json.dumps(doc), encoding="utf-8-sig")
    (a,) = box_files.read(str(coco))
    assert (a.image, a.cls, a.box) == ("a.png", "cat", (1.0, 2.0, 4.0, 6.0))
    latin = tmp_path / "c.csv"
    latin.write_bytes("filename,class,xmin,ymin,xmax,ymax\nä.png,cat,1,2,3,4\n".encode("latin-1"))
    with pytest.raises(ValueError, match="c.csv: not UTF-8"):
        box_files.read(str(latin))


def _jpeg(value: int, side: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_folder_with_bad_files(root) -> dict[str, str]:
    """Two classes of 5 good JPEGs, and three bad files in ``cat``: ``{name: reason}``."""
    for k, cls in enumerate(("cat", "dog")):
        os.makedirs(os.path.join(root, cls))
        for i in range(5):
            with open(os.path.join(root, cls, f"{i}.jpg"), "wb") as f:
                f.write(_jpeg(40 + 150 * k + i))
    bad = {
        "99.jpg": "not an image",  # a text file with an image's name
        "empty.jpg": "empty file",
        "cut.jpg": "truncated",
    }
    with open(os.path.join(root, "cat", "99.jpg"), "w") as f:
        f.write("this is not a picture\n")
    open(os.path.join(root, "cat", "empty.jpg"), "wb").close()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=90)  # mostly image data: cut inside it
    with open(os.path.join(root, "cat", "cut.jpg"), "wb") as f:
        f.write(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    return bad


def _cfg(root):
    c = get_config().data
    c.name = "folder"
    c.image_size = 16
    c.normalization = "unit"
    c.folder.root = str(root)
    c.folder.val_fraction = 0.2
    c.train_augment = "random_resized_crop"
    return c


def test_undecodable_images_are_skipped_named_and_counted(tmp_path):
    bad = write_folder_with_bad_files(tmp_path / "img")
    c = _cfg(tmp_path / "img")
    i = data.info(c)
    assert i.num_examples == {"train": 8, "validation": 2}  # 10 good of 13 files
    skipped = dict(i.skipped)
    assert sorted(os.path.basename(p) for p in skipped) == sorted(bad)
    for path, why in skipped.items():
        assert bad[os.path.basename(path)] in why, (path, why)
    # Two epochs of training batches and the whole validation split, without an error.
    it = data.train_iterator(c, global_batch_size=4, seed=0, process_index=0, process_count=1)
    labels = np.concatenate([next(it)["label"] for _ in range(4)])
    assert sorted(labels[:8]) == [0] * 4 + [1] * 4
    val = list(data.eval_iterator(c, "validation", global_batch_size=4))
    assert sum(int(b["valid"].sum()) for b in val) == 2
