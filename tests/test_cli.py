"""``camjax extract``: a folder with good and bad images, from a checkpoint workdir and
from the pretrained EfficientNet-Lite0; boxes in original pixels."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from camjax import cli
from camjax.evaluation.geometry import rescale_boxes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32  # tiny_gap input side for this test


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir holding one checkpoint of a randomly initialised tiny_gap."""
    from camjax import data
    from camjax.train import checkpoint, load_config, loop, optimizer

    wd = tmp_path_factory.mktemp("wd")
    config = load_config(os.path.join(ROOT, "configs", "default.py"))
    config.data.image_size = SIZE
    # A small private build of the embedded data set (only its metadata is needed here).
    config.data.data_dir = str(wd / "tfds")
    config.data.shapes.image_size = SIZE
    config.data.shapes.num_train = config.data.shapes.num_validation = 4
    config.data.shapes.num_test = 4
    info = data.info(config.data)
    model = loop.build_model(config, info.num_classes)
    tx = optimizer.create_optimizer(config.optimizer, config.train.num_steps)
    state = loop.initial_state(config, model, tx, SIZE)
    ckpt = checkpoint.Checkpointer(
        str(wd / "checkpoints"),
        checkpoint.fingerprint(config, info.num_classes, state.params),
        async_save=False,
    )
    ckpt.save(1, state, config)
    ckpt.close()
    return str(wd), info.num_classes, config


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), np.uint8)).save(d / "wide.png")
    Image.fromarray(rng.integers(0, 255, (70, 40), np.uint8)).save(d / "tall_gray.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), np.uint8)).save(d / "rgba.png")
    (d / "notes.jpg").write_text("this is not a JPEG")
    good = (d / "tall_gray.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "readme.txt").write_text("not an image suffix: never listed")
    return str(d)


SIZES = {"wide.png": (30, 50), "tall_gray.jpg": (70, 40), "rgba.png": (20, 20)}


def test_extract_from_workdir_skips_bad_files(workdir, folder, tmp_path, capsys):
    wd, num_classes, _ = workdir
    out = str(tmp_path / "out")
    rc = cli.main(
        [
            "extract",
            folder,
            "--workdir",
            wd,
            "--out",
            out,
            "--top-k",
            "3",
            "--batch-size",
            "2",
            "--overlays",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    # Both bad files are reported at the end, by name, and listed in skipped.txt.
    assert "skipped 2 unreadable file(s)" in printed
    text = open(os.path.join(out, "skipped.txt")).read()
    skipped = sorted(os.path.basename(line.split("\t")[0]) for line in text.splitlines())
    assert skipped == ["notes.jpg", "truncated.jpg"]

    lines = [json.loads(x) for x in open(os.path.join(out, "predictions.jsonl"))]
    assert sorted(os.path.basename(r["path"]) for r in lines) == sorted(SIZES)
    npz = np.load(os.path.join(out, "cams.npz"))
    n = len(lines)
    assert npz["maps"].shape == (n, 3, SIZE, SIZE)
    assert npz["boxes"].shape == npz["boxes_original"].shape == (n, 3, 4)
    for i, r in enumerate(lines):
        h, w = SIZES[os.path.basename(r["path"])]
        assert (r["height"], r["width"]) == (h, w)
        assert [c["rank"] for c in r["top_k"]] == [1, 2, 3]
        probs = [c["prob"] for c in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        boxes = np.array([c["box"] for c in r["top_k"]])
        # Original-pixel boxes are the model-input boxes mapped through the resize.
        np.testing.assert_array_equal(boxes, npz["boxes_original"][i])
        np.testing.assert_array_equal(boxes, rescale_boxes(npz["boxes"][i], (SIZE, SIZE), (h, w)))
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] < w).all() and (boxes[:, 3] < h).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        assert str(npz["paths"][i]) == r["path"]
        assert 0 <= r["top_k"][0]["class_id"] < num_classes
    assert 0.0 <= npz["maps"].min() and npz["maps"].max() <= 1.0
    overlays = sorted(os.listdir(os.path.join(out, "overlays")))
    assert len(overlays) == n
    for name in overlays:
        stem = name.split("_", 1)[1].rsplit(".", 1)[0]
        ((h, w),) = [s for k, s in SIZES.items() if k.rsplit(".", 1)[0] == stem]
        with Image.open(os.path.join(out, "overlays", name)) as im:
            assert im.size == (w, h)  # drawn over the original, at its own size
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temporary files left


def test_extract_errors_are_clear(tmp_path, capsys):
    # Input problems are reported before any model is loaded.
    args = ["--workdir", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(["extract", str(tmp_path / "nothing*.png"), *args]) == 2
    assert "no such file, directory or glob match" in capsys.readouterr().err
    assert cli.main(["extract", str(tmp_path), *args]) == 2  # a folder without images
    assert "no image files" in capsys.readouterr().err
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli.main(["extract", str(tmp_path), *args]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "absent")  # nothing created on the way


def test_python_m_camjax_extract_is_the_same_command():
    res = subprocess.run(
        [sys.executable, "-m", "camjax.extract", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 0
    assert "--workdir" in res.stdout and "--model" in res.stdout


def test_extract_pretrained_efficientnet_on_real_photos(tmp_path):
    # Two ImageNet validation photos from the foolbox wheel (label in the file name).
    spec = importlib.util.find_spec("foolbox")
    data_dir = os.path.join(list(spec.submodule_search_locations)[0], "data")
    photos = [os.path.join(data_dir, f) for f in ("imagenet_00_243.jpg", "imagenet_01_559.jpg")]
    out = str(tmp_path / "out")
    rc = cli.main(
        [
            "extract",
            *photos,
            "--model",
            "efficientnet_lite0_gap",
            "--out",
            out,
            "--no-progress",
            "--maps-dtype",
            "none",
        ]
    )
    assert rc == 0
    lines = [json.loads(x) for x in open(os.path.join(out, "predictions.jsonl"))]
    assert len(lines) == 2
    for r in lines:
        label = int(os.path.basename(r["path"]).rsplit("_", 1)[1].split(".")[0])
        ids = [c["class_id"] for c in r["top_k"]]
        assert label in ids  # EfficientNet-Lite0 gets 20/20 of these photos in its top 5
        with Image.open(r["path"]) as im:
            w, h = im.size
        x0, y0, x1, y1 = r["top_k"][0]["box"]
        assert 0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h
        assert (x1 - x0 + 1) * (y1 - y0 + 1) >= 0.01 * w * h  # not a degenerate box
        assert r["top_k"][0]["class_name"] and "\t" not in r["top_k"][0]["class_name"]
    assert "maps" not in np.load(os.path.join(out, "cams.npz"))


def test_evaluate_a_checkpoint_writes_the_report(workdir, tmp_path):
    # evaluate.py's library call on the same random checkpoint: a chosen step folder,
    # the 4 validation images of the private build, report + figures in the workdir.
    from camjax.evaluation import evaluate

    wd, _, config = workdir
    out = evaluate(
        config, wd, checkpoint=os.path.join(wd, "checkpoints", "1"), methods=("cam",), verbose=False
    )
    assert out["num_examples"] == 4 and out["checkpoint"].endswith("step 1")
    assert set(out["methods"]) == {"cam", "centre"}
    report = json.loads(open(os.path.join(wd, "report.json")).read())
    assert report["methods"]["cam"]["loc_top1_error"] == pytest.approx(
        out["methods"]["cam"]["loc_top1_error"]
    )
    for name in out["figures"]:
        with Image.open(os.path.join(wd, name)) as im:
            assert np.asarray(im.convert("L")).std() > 10
    with pytest.raises(ValueError, match="unknown method"):
        evaluate(config, wd, methods=("nope",), verbose=False)
