"""``camjax extract``: a folder with good and bad images, from a checkpoint workdir and
from the pretrained EfficientNet-Lite0; boxes in original pixels."""

import glob
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from camjax import cli
from camjax.cli.args import dash_style
from camjax.evaluation.geometry import rescale_boxes
from camjax.extract import open_extraction

# One worker runs the whole module, so its trained-checkpoint fixture is built once.
pytestmark = pytest.mark.xdist_group("cli")

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


def _args(out, *extra):
    return ["--out", out, "--top-k", "3", "--batch-size", "2", "--no-progress", *extra]


@pytest.mark.slow
def test_extract_from_workdir_skips_bad_files(workdir, folder, tmp_path, capsys):
    wd, num_classes, _ = workdir
    out = str(tmp_path / "out")
    old = os.umask(0o002)  # group-writable outputs wanted: the files must follow the umask
    try:
        rc = cli.main(["extract", folder, "--workdir", wd, *_args(out, "--overlays")])
    finally:
        os.umask(old)
    printed = capsys.readouterr().out
    assert rc == 0
    # Both bad files are reported at the end, by name, and listed in skipped.txt.
    assert "skipped 2 unreadable input(s)" in printed
    text = open(os.path.join(out, "skipped.txt")).read()
    skipped = sorted(os.path.basename(line.split("\t")[0]) for line in text.splitlines())
    assert skipped == ["notes.jpg", "truncated.jpg"]

    ex = open_extraction(out)
    assert ex.complete and ex.settings["method"] == "cam" and ex.settings["threshold"] == 0.2
    assert ex.settings["model"] == "tiny_gap" and ex.settings["image_size"] == SIZE
    lines = list(ex.records())
    assert sorted(os.path.basename(r["path"]) for r in lines) == sorted(SIZES)
    for r in lines:
        h, w = SIZES[os.path.basename(r["path"])]
        assert (r["height"], r["width"]) == (h, w)
        assert r["method"] == "cam" and r["model"] == "tiny_gap"
        assert [c["rank"] for c in r["top_k"]] == [1, 2, 3]
        probs = [c["prob"] for c in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        boxes = np.array([c["box"] for c in r["top_k"]])
        a = ex.arrays(r["shard"])
        row = r["row"]
        # Original-pixel boxes are the model-input boxes mapped through the resize.
        np.testing.assert_array_equal(boxes, a["boxes_original"][row])
        np.testing.assert_array_equal(boxes, rescale_boxes(a["boxes"][row], (SIZE, SIZE), (h, w)))
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] < w).all() and (boxes[:, 3] < h).all()
        assert str(a["paths"][row]) == r["path"]
        assert 0 <= r["top_k"][0]["class_id"] < num_classes
        # Maps at feature resolution (tiny_gap: input / 4), float16, in [0, 1]; the
        # loader brings them to the original's size.
        assert a["maps"].dtype == np.float16 and a["maps"].shape[1:] == (3, SIZE // 4, SIZE // 4)
        m = ex.map(r, rank=1)
        assert m.shape == (h, w) and 0.0 <= m.min() and m.max() <= 1.0 + 1e-3
    overlays = sorted(glob.glob(os.path.join(out, "overlays", "part-*", "*.png")))
    assert len(overlays) == len(lines)
    by_stem = {k.rsplit(".", 1)[0]: hw for k, hw in SIZES.items()}
    for path in overlays:
        h, w = by_stem[os.path.basename(path).split("_", 1)[1][: -len(".png")]]
        with Image.open(path) as im:
            # The original at its own size (under --overlay-size), a label band above.
            assert im.size[0] == w and h + 12 <= im.size[1] <= h + 40
    for dirpath, _, files in os.walk(out):
        for name in files:
            assert not name.startswith(".")  # no temporary files left
            assert os.stat(os.path.join(dirpath, name)).st_mode & 0o777 == 0o664, name


@pytest.mark.slow
def test_extract_reruns_resume_refuse_or_overwrite(workdir, folder, tmp_path, capsys):
    wd, _, _ = workdir
    out = str(tmp_path / "out")
    base = ["extract", folder, "--workdir", wd]
    assert cli.main([*base, *_args(out, "--overlays")]) == 0
    first = open(os.path.join(out, "part-00000.jsonl")).read()
    assert cli.main([*base, *_args(out, "--overlays")]) == 0  # complete: nothing redone
    assert "0 images" in capsys.readouterr().out
    assert open(os.path.join(out, "part-00000.jsonl")).read() == first
    # Another method or threshold on the same --out: refused, one line, nothing touched.
    assert cli.main([*base, *_args(out, "--overlays", "--method", "gradcam")]) == 2
    err = capsys.readouterr().err
    assert "method 'cam', this run 'gradcam'" in err and err.count("\n") == 1
    # A rerun on inputs with no readable image, replacing the earlier run: nothing of the
    # earlier run (maps, overlays) is left beside the new, empty result.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_text("not a jpeg")
    rc = cli.main(["extract", str(bad), "--workdir", wd, *_args(out, "--overwrite")])
    assert rc == 1
    assert sorted(os.listdir(out)) == ["manifest.json", "part-00000.done.json",
        "part-00000.jsonl", "part-00000.skipped.tsv", "skipped.txt"]  # fmt: skip
    assert open(os.path.join(out, "part-00000.jsonl")).read() == ""


def test_extract_a_tfds_split(workdir, tmp_path):
    # The fixture's private camjax_shapes build: 4 validation images of 32 x 32, read in
    # shards of 3 (each shard reads only its slice of the split).
    wd, _, config = workdir
    out = str(tmp_path / "out")
    (variant,) = [
        n for n in os.listdir(os.path.join(config.data.data_dir, "camjax_shapes")) if n[0] != "."
    ]
    spec = f"camjax_shapes/{variant}:validation"  # TFDS NAME/CONFIG:SPLIT
    rc = cli.main(["extract", "--tfds", spec, "--data-dir", config.data.data_dir,
                   "--workdir", wd, *_args(out, "--shard-size", "3")])  # fmt: skip
    assert rc == 0
    ex = open_extraction(out)
    recs = list(ex.records())
    want = [f"tfds:camjax_shapes/{variant}/validation/{i}" for i in range(4)]
    assert [r["path"] for r in recs] == want
    assert [r["shard"] for r in recs] == [0, 0, 0, 1] and ex.settings["tfds"]
    assert all((r["height"], r["width"]) == (SIZE, SIZE) for r in recs)
    assert cli.main(["extract", "--tfds", "nocolon", "--workdir", wd, "--out", out]) == 2


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
    assert not os.path.exists(tmp_path / "o")
    # Bad choices fail in argument parsing, before anything loads, naming the choices.
    for flag, value in (("--method", "nosuch"), ("--model", "nosuch"), ("--maps", "all")):
        t0 = time.perf_counter()
        with pytest.raises(SystemExit) as e:
            cli.main(["extract", str(tmp_path), "--model", "efficientnet_lite0_gap",
                      "--out", str(tmp_path / "o"), flag, value])  # fmt: skip
        assert e.value.code == 2 and time.perf_counter() - t0 < 1.0
        assert f"invalid choice: '{value}'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_help_lists_choices_without_markup_and_takes_underscores(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["extract", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "--batch-size" in text
    assert "gradcam" in text and "efficientnet_lite0_gap" in text  # the choices
    args = cli.build_parser().parse_args(
        dash_style(["extract", "x", "--model", "efficientnet_lite0_gap", "--out", "o",
                         "--batch_size", "3", "--top_k=2", "--shard_size", "7"])
    )  # fmt: skip
    assert (args.batch_size, args.top_k, args.shard_size) == (3, 2, 7)
    assert dash_style(["--out", "a_b", "--", "--x_y"]) == ["--out", "a_b", "--", "--x_y"]


def test_python_m_camjax_is_the_same_command():
    res = subprocess.run(
        [sys.executable, "-m", "camjax", "extract", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 0
    assert "--workdir" in res.stdout and "--model" in res.stdout


PRETRAINED = """
import sys
from camjax.cli import main
rc = main(sys.argv[1:])
print("RC", rc, "TENSORFLOW", "tensorflow" in sys.modules)
"""


# A fresh interpreter loading and compiling EfficientNet-Lite0: ~25 s on 2 quiet cores.
@pytest.mark.slow
def test_extract_pretrained_efficientnet_on_real_photos_without_tensorflow(tmp_path):
    # Two ImageNet validation photos from the foolbox wheel (label in the file name), in
    # a fresh interpreter: the file path must not import TensorFlow.
    spec = importlib.util.find_spec("foolbox")
    data_dir = os.path.join(list(spec.submodule_search_locations)[0], "data")
    photos = [os.path.join(data_dir, f) for f in ("imagenet_00_243.jpg", "imagenet_01_559.jpg")]
    out = str(tmp_path / "out")
    res = subprocess.run(
        [sys.executable, "-c", PRETRAINED, "extract", *photos, "--model",
         "efficientnet_lite0_gap", "--out", out, "--no-progress", "--maps", "none"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "RC 0 TENSORFLOW False" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    ex = open_extraction(out)
    lines = list(ex.records())
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
    assert "maps" not in ex.arrays(0)
    assert ex.settings["input_normalization"] == "minus127_div128"


@pytest.mark.slow
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

    def top1(results):  # the paper's top-1 localization error (the default table)
        return results["paper_loc"]["paper_top1_error"]

    assert top1(out["methods"]["cam"]) is not None
    assert top1(report["methods"]["cam"]) == pytest.approx(top1(out["methods"]["cam"]))
    for name in out["figures"]:
        with Image.open(os.path.join(wd, name)) as im:
            assert np.asarray(im.convert("L")).std() > 10
    with pytest.raises(ValueError, match="unknown method"):
        evaluate(config, wd, methods=("nope",), verbose=False)
