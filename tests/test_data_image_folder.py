"""The ``folder`` data source on small generated folders (VOC XML, COCO JSON, CSV boxes).

Every image shows a bright rectangle (235 on 20) at its box, so a box that reaches the
batch attached to the wrong image, or with the wrong geometry, is caught by comparing it
with the pixels; the box numbers themselves are checked against hand-worked values.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from camjax import data
from configs.default import get_config

# class -> [(height, width, inclusive box x0, y0, x1, y1), ...]; every box differs.
SCENES = {
    "cat": [(40, 60, 10, 5, 29, 19), (32, 32, 0, 0, 15, 31), (48, 64, 20, 8, 63, 47)],
    "dog": [(64, 48, 4, 16, 27, 55), (36, 36, 9, 9, 26, 26), (50, 40, 0, 10, 39, 29)],
    "owl": [(44, 44, 22, 0, 43, 21), (60, 30, 3, 3, 26, 56), (30, 60, 30, 6, 59, 23)],
}
SIZE = 32


def _expected(h, w, x0, y0, x1, y1, size=SIZE):
    """Pixel-centre rule of camjax.data.preprocess, written out independently."""

    def edge(lo, hi, n):
        a = int(np.ceil(lo / n * size - 0.5))
        return a, max(a, int(np.ceil((hi + 1) / n * size - 0.5)) - 1)

    (ax, bx), (ay, by) = edge(x0, x1, w), edge(y0, y1, h)
    return (ax, ay, bx, by)


def test_expected_box_by_hand():
    # 60 x 40 image, box x 10..29, y 5..19, at 32 px: continuous edges x [10, 30) / 60 and
    # y [5, 20) / 40 scale to [5.33, 16) and [4, 16); output pixels whose centres j + 0.5
    # fall inside: x 5..15, y 4..15.
    assert _expected(40, 60, 10, 5, 29, 19) == (5, 4, 15, 15)
    # 64 wide (x 20..63 -> [10, 32) at half scale): x 10..31; 48 high, y 8..47 -> [5.33, 32).
    assert _expected(48, 64, 20, 8, 63, 47) == (10, 5, 31, 31)


def _write_images(root, split=None, masks=None):
    for cls, scenes in SCENES.items():
        for i, (h, w, x0, y0, x1, y1) in enumerate(scenes):
            rel = os.path.join(cls, f"{cls}{i}.png")
            path = os.path.join(root, *([split] if split else []), rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img = np.full((h, w, 3), 20, np.uint8)
            img[y0 : y1 + 1, x0 : x1 + 1] = 235
            Image.fromarray(img).save(path)
            if masks:
                m = np.zeros((h, w), np.uint8)
                m[y0 : y1 + 1, x0 : x1 + 1] = 255
                mp = os.path.join(masks, *([split] if split else []), cls, f"{cls}{i}.png")
                os.makedirs(os.path.dirname(mp), exist_ok=True)
                Image.fromarray(m).save(mp)


def _write_boxes(tmp_path, fmt, one_based=False):
    s = 1 if one_based else 0
    if fmt == "voc":
        d = tmp_path / "xml"
        for cls, scenes in SCENES.items():
            (d / cls).mkdir(parents=True)
            for i, (_, _, x0, y0, x1, y1) in enumerate(scenes):
                (d / cls / f"{cls}{i}.xml").write_text(
                    f"<annotation><object><name>{cls}</name><bndbox><xmin>{x0 + s}</xmin>"
                    f"<ymin>{y0 + s}</ymin><xmax>{x1 + s}</xmax><ymax>{y1 + s}</ymax>"
                    "</bndbox></object></annotation>"
                )
        return str(d)
    if fmt == "coco":
        names = sorted(SCENES)
        doc = {"images": [], "annotations": [], "categories": []}
        doc["categories"] = [{"id": 10 + k, "name": n} for k, n in enumerate(names)]
        for k, cls in enumerate(names):
            for i, (h, w, x0, y0, x1, y1) in enumerate(SCENES[cls]):
                iid = 100 * k + i
                doc["images"].append(
                    {"id": iid, "file_name": f"{cls}/{cls}{i}.png", "width": w, "height": h}
                )
                doc["annotations"].append(
                    {
                        "image_id": iid,
                        "category_id": 10 + k,
                        "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                    }
                )
        path = tmp_path / "boxes.json"
        path.write_text(json.dumps(doc))
        return str(path)
    lines = ["filename,class,xmin,ymin,xmax,ymax"]  # labelImg / TF object detection CSV
    for cls, scenes in SCENES.items():
        for i, (_, _, x0, y0, x1, y1) in enumerate(scenes):
            lines.append(f"{cls}{i}.png,{cls},{x0 + s},{y0 + s},{x1 + s},{y1 + s}")
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _cfg(root, boxes=None, **folder):
    c = get_config().data
    c.name = "folder"
    c.image_size = SIZE
    c.normalization = "unit"
    c.folder.root = str(root)
    c.folder.boxes = boxes
    c.folder.val_fraction = 0.0
    for k, v in folder.items():
        c.folder[k] = v
    return c


def _eval(c, split, batch=4, pi=0, pc=1):
    out = list(
        data.eval_iterator(c, split, global_batch_size=batch, process_index=pi, process_count=pc)
    )
    keys = out[0].keys()
    return {
        k: np.concatenate([b[k] for b in out])[np.concatenate([b["valid"] for b in out])]
        for k in keys
    }


def _check_against_pixels(ex):
    """Each example's box frames its own rectangle (PNG: lossless; +-1 for resize ties)."""
    for j in range(len(ex["label"])):
        ys, xs = np.nonzero(ex["image"][j, ..., 0] > 0.5)
        got = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(got - ex["bboxes"][j, 0]).max() <= 1, (got, ex["bboxes"][j, 0])


def _all_expected():
    names = sorted(SCENES)
    return sorted((names.index(c), _expected(*s)) for c in names for s in SCENES[c])


@pytest.mark.parametrize("fmt,one_based", [("voc", False), ("coco", False), ("csv", True)])
def test_box_formats_give_the_hand_worked_boxes(tmp_path, fmt, one_based):
    _write_images(tmp_path / "img")
    c = _cfg(tmp_path / "img", _write_boxes(tmp_path, fmt, one_based), one_based=one_based)
    i = data.info(c)
    assert i.class_names == ("cat", "dog", "owl") and i.num_examples == {"train": 9}
    assert not i.has_masks
    ex = _eval(c, "train")
    got = sorted(
        (int(lab), tuple(int(v) for v in b[0]))
        for lab, b in zip(ex["label"], ex["bboxes"], strict=True)
    )
    assert got == _all_expected()
    assert (ex["bbox_valid"].sum(1) == 1).all()
    _check_against_pixels(ex)


def test_split_layout_masks_and_processes(tmp_path):
    for split in ("train", "validation"):
        _write_images(tmp_path / "img", split, masks=tmp_path / "masks")
    os.remove(tmp_path / "img" / "validation" / "owl" / "owl2.png")
    os.remove(tmp_path / "masks" / "validation" / "owl" / "owl2.png")
    doc = json.loads(open(_write_boxes(tmp_path, "coco")).read())
    # COCO file names relative to the split folder match in every split: make them unique.
    doc["images"] = [dict(im, file_name="train/" + im["file_name"]) for im in doc["images"]]
    (tmp_path / "train.json").write_text(json.dumps(doc))
    c = _cfg(tmp_path / "img", str(tmp_path / "train.json"), masks=str(tmp_path / "masks"))
    i = data.info(c)
    assert i.num_examples == {"train": 9, "validation": 8} and i.has_masks
    ex = _eval(c, "train", batch=4)
    _check_against_pixels(ex)
    for j in range(9):  # the mask is the rectangle (255 -> 1), nearest resize
        assert set(np.unique(ex["mask"][j])) <= {0, 1}
        ys, xs = np.nonzero(ex["mask"][j])
        got = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(got - ex["bboxes"][j, 0]).max() <= 1
    val = _eval(c, "validation", batch=4)
    assert not val["bbox_valid"].any() and len(val["label"]) == 8  # boxes only for train/
    # Two processes: disjoint halves (4 + 4, padded alike) whose union is the split.
    parts = [_eval(c, "validation", batch=4, pi=p, pc=2) for p in range(2)]
    assert [len(p["label"]) for p in parts] == [4, 4]
    sums = sorted(float(x) for p in parts for x in p["image"].sum((1, 2, 3)))
    np.testing.assert_allclose(sums, sorted(val["image"].sum((1, 2, 3))), rtol=1e-6)


def test_train_batches_resume_exactly_and_keep_geometry(tmp_path):
    _write_images(tmp_path / "img")
    c = _cfg(tmp_path / "img", _write_boxes(tmp_path, "voc"), val_fraction=0.34)
    c.train_augment = "none"
    i = data.info(c)
    assert i.num_examples == {"train": 6, "validation": 3}  # one of three per class held out
    it = data.train_iterator(c, global_batch_size=4, seed=3, process_index=0, process_count=1)
    run = [next(it) for _ in range(4)]  # 16 examples: crosses two epoch ends of 6
    again = next(
        data.train_iterator(
            c, global_batch_size=4, seed=3, start_step=3, process_index=0, process_count=1
        )
    )
    for k in run[3]:
        np.testing.assert_array_equal(run[3][k], again[k])
    labels = np.concatenate([b["label"] for b in run])
    assert sorted(labels[:6]) == [0, 0, 1, 1, 2, 2]  # an epoch sees each example once
    for b in run:
        _check_against_pixels(b)
    val = _eval(c, "validation")
    assert sorted(val["label"]) == [0, 1, 2]


def test_other_class_boxes_dropped_and_extra_files_ignored(tmp_path):
    _write_images(tmp_path / "img")
    (tmp_path / "img" / "cat" / "notes.txt").write_text("not an image")
    path = tmp_path / "b.csv"  # no class column: every box belongs to its image
    path.write_text("image,x0,y0,x1,y1\ncat/cat0.png,10,5,29,19\ncat/cat0.png,0,0,0,0\n")
    ex = _eval(_cfg(tmp_path / "img", str(path)), "train", batch=12)
    row = [j for j in range(9) if ex["bbox_valid"][j].sum() == 2]
    assert len(row) == 1 and ex["label"][row[0]] == 0
    assert tuple(ex["bboxes"][row[0], 1]) == (0, 0, 0, 0) and ex["bbox_valid"].sum() == 2
    xml = tmp_path / "xml"
    xml.mkdir()
    (xml / "cat1.xml").write_text(  # by file stem; the dog box in a cat image is dropped
        "<annotation><object><name>dog</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>3</xmax>"
        "<ymax>3</ymax></bndbox></object><object><name>cat</name><bndbox><xmin>0</xmin>"
        "<ymin>0</ymin><xmax>15</xmax><ymax>31</ymax></bndbox></object></annotation>"
    )
    ex = _eval(_cfg(tmp_path / "img", str(xml)), "train", batch=12)
    assert ex["bbox_valid"].sum() == 1
    assert tuple(ex["bboxes"][ex["bbox_valid"][:, 0]][0, 0]) == _expected(32, 32, 0, 0, 15, 31)


def test_classes_from_the_box_file(tmp_path):
    """root/<image> with a COCO file: classes are the box file's, sorted."""
    _write_images(tmp_path / "nested")
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "nested").rglob("*.png"):
        (flat / p.name).write_bytes(p.read_bytes())
    path = _write_boxes(tmp_path, "coco")
    doc = json.loads(open(path).read())
    for im in doc["images"]:
        im["file_name"] = im["file_name"].split("/")[1]
    doc["categories"].reverse()  # ids are not the label order; sorted names are
    (tmp_path / "flat.json").write_text(json.dumps(doc))
    c = _cfg(flat, str(tmp_path / "flat.json"))
    assert data.info(c).class_names == ("cat", "dog", "owl")
    ex = _eval(c, "train", batch=12)
    got = sorted(
        (int(lab), tuple(int(v) for v in b[0]))
        for lab, b in zip(ex["label"], ex["bboxes"], strict=True)
    )
    assert got == _all_expected()
    _check_against_pixels(ex)
    # An image with boxes of two classes, and one without a box, have no single class.
    doc["annotations"].append(dict(doc["annotations"][0], category_id=11))
    (tmp_path / "two.json").write_text(json.dumps(doc))
    assert "has boxes of classes 'cat' and 'dog'" in _error(_cfg(flat, str(tmp_path / "two.json")))
    doc["annotations"] = doc["annotations"][1:-1]
    (tmp_path / "none.json").write_text(json.dumps(doc))
    assert "cat0.png' has no box in the box file" in _error(_cfg(flat, str(tmp_path / "none.json")))
    assert "no class folders" in _error(_cfg(flat))


def _error(c, exc=ValueError):
    with pytest.raises(exc) as e:
        data.info(c)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_errors_name_the_problem(tmp_path):
    _write_images(tmp_path / "img")
    assert "is not a folder" in _error(_cfg(tmp_path / "nope"), FileNotFoundError)
    c = _cfg(tmp_path / "img")
    c.folder.root = None
    assert "data.folder.root" in _error(c)
    (tmp_path / "img" / "emu").mkdir()
    (tmp_path / "img" / "emu" / "readme.txt").write_text("x")
    msg = _error(_cfg(tmp_path / "img"))
    assert "emu" in msg and "has no images" in msg
    os.remove(tmp_path / "img" / "emu" / "readme.txt")
    os.rmdir(tmp_path / "img" / "emu")

    def csv(text):
        p = tmp_path / "b.csv"
        p.write_text("image,class,x0,y0,x1,y1\n" + text)
        return _cfg(tmp_path / "img", str(p))

    msg = _error(csv("cat/cat9.png,cat,0,0,3,3\n"))
    assert "'cat/cat9.png' is not in" in msg and "line 2" in msg
    msg = _error(csv("cat/cat0.png,cat,0,0,3,3\ncat/cat0.png,yak,0,0,3,3\n"))
    assert "class 'yak' is not a class folder" in msg and "line 3" in msg
    msg = _error(csv("cat/cat0.png,cat,10,5,60,19\n"))  # x1 = 60 in a 60-wide image
    assert "outside the 60x40 image 'cat/cat0.png'" in msg
    assert "empty or outside" in _error(csv("cat/cat0.png,cat,10,5,9,19\n"))
    (tmp_path / "c.csv").write_text("image,left\nx,1\n")
    assert "no x0 or xmin column" in _error(_cfg(tmp_path / "img", str(tmp_path / "c.csv")))
    (tmp_path / "img" / "dog" / "cat0.png").write_bytes(
        (tmp_path / "img" / "cat" / "cat0.png").read_bytes()
    )
    assert "ambiguous" in _error(csv("cat0.png,cat,0,0,3,3\n"))
    (tmp_path / "img" / "yak").mkdir()  # a class of WebP photos only: TF cannot decode them
    (tmp_path / "img" / "yak" / "x.webp").write_bytes(b"RIFF")
    assert "x.webp': training reads .jpg" in _error(_cfg(tmp_path / "img"))
    os.remove(tmp_path / "img" / "yak" / "x.webp")
    os.rmdir(tmp_path / "img" / "yak")
    assert "does not exist" in _error(
        _cfg(tmp_path / "img", str(tmp_path / "none.json")), FileNotFoundError
    )
    c = _cfg(tmp_path / "img", masks=str(tmp_path / "nomasks"))
    assert "is not a folder" in _error(c, FileNotFoundError)
    (tmp_path / "nomasks").mkdir()
    assert "no mask" in _error(c, FileNotFoundError)


@pytest.mark.slow
def test_train_evaluate_extract_on_a_voc_folder(tmp_path):
    """tiny_gap trained a few steps through the library entry on 3 classes x 6 images,
    evaluated with every box and mask metric, then extracted from the folder."""
    from camjax.cli import main as cli_main
    from camjax.evaluation import evaluate
    from camjax.train import load_config, train_and_evaluate

    rng = np.random.default_rng(0)
    xml = tmp_path / "xml"
    for k, cls in enumerate(("a", "b", "c")):
        for i in range(6):
            x0, y0 = rng.integers(0, 12, 2)
            x1, y1 = x0 + 12 + k * 4, y0 + 12 + k * 4  # inclusive corners, inside 32 x 32
            img = np.full((32, 32, 3), 30 + 40 * k, np.uint8)
            img[y0 : y1 + 1, x0 : x1 + 1] = 220
            for d in ("img", "masks"):
                (tmp_path / d / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "img" / cls / f"{i}.png")
            Image.fromarray((img[..., 0] == 220).astype(np.uint8)).save(
                tmp_path / "masks" / cls / f"{i}.png"
            )
            (xml / cls).mkdir(parents=True, exist_ok=True)
            (xml / cls / f"{i}.xml").write_text(
                f"<annotation><object><name>{cls}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}"
                f"</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
            )
    c = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "default.py"))
    c.data.name = "folder"
    c.data.folder.update(
        root=str(tmp_path / "img"),
        boxes=str(xml),
        masks=str(tmp_path / "masks"),
        val_fraction=1 / 3,
    )
    c.data.image_size = 16
    c.model.kwargs.widths = (4, 8)
    c.model.kwargs.head_features = 8
    c.train.update(batch_size=8, num_steps=4, log_every=2, checkpoint_every=4)
    c.train.async_checkpoints = False
    c.eval.update(batch_size=8, cam_threshold_steps=10)
    c.optimizer.warmup_steps = 1
    wd = str(tmp_path / "run")
    final = train_and_evaluate(c, wd)
    assert final["step"] == 4 and np.isfinite(final["train_loss"])
    res = evaluate(c, wd, split="validation", figures=False, verbose=False)
    cam = res["methods"]["cam"]
    assert {"max_box_acc_v2", "paper_loc", "pxap"} <= set(cam), sorted(cam)
    out = tmp_path / "extract"
    argv = ["extract", str(tmp_path / "img"), "--recursive", "--workdir", wd, "--out", str(out)]
    assert cli_main([*argv, "--maps", "none", "--no-progress", "--top-k", "2"]) == 0
    assert len(list(out.rglob("*"))) > 0
