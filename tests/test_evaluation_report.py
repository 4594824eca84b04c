"""Report, figures, centre baseline and box geometry of camjax.evaluation (no model)."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from camjax.evaluation import centre, figures, geometry, report


def test_centre_map_peak_symmetry_and_sigma():
    m = centre.centre_map(41, 81)
    assert m.shape == (41, 81) and m.dtype == np.float32
    assert m[20, 40] == pytest.approx(1.0)
    np.testing.assert_allclose(m, m[::-1, ::-1], atol=1e-7)
    # sigma_x = 81 / 4 = 20.25 px: one sigma from the centre the map is exp(-1/2).
    xs = np.arange(81) - 40
    np.testing.assert_allclose(m[20], np.exp(-0.5 * (xs / 20.25) ** 2), rtol=1e-6)


def test_centre_box_at_the_papers_threshold_spans_090_of_each_side():
    # exp(-r^2/2) >= 0.2  <=>  r <= sqrt(2 ln 5) = 1.794 sigma = 0.4486 side from the centre,
    # so the kept ellipse's box spans 2 * 0.4486 = 0.897 of each side.
    h, w = 200, 400
    ys, xs = np.nonzero(centre.centre_map(h, w) >= 0.2)
    half = math.sqrt(2 * math.log(5)) * centre.CENTRE_SIGMA_FRACTION
    assert (xs.max() - xs.min() + 1) / w == pytest.approx(2 * half, abs=2 / w)
    assert (ys.max() - ys.min() + 1) / h == pytest.approx(2 * half, abs=2 / h)
    assert centre.centre_maps(3, 5, h, w).shape == (3, 5, h, w)


def test_rescale_boxes_hand_worked():
    # Input side 4 -> original side 6 (ratio 1.5): input pixel 1 spans [1.5, 3) of the
    # original, holding the centres 1.5 and 2.5 of original pixels 1 and 2.
    assert geometry.rescale_boxes([1, 1, 1, 1], (4, 4), (6, 6)).tolist() == [1, 1, 2, 2]
    # Whole input -> whole original, for a non-square original (H 480, W 640).
    assert geometry.rescale_boxes([0, 0, 223, 223], (224, 224), (480, 640)).tolist() == [
        0,
        0,
        639,
        479,
    ]
    # Original smaller than input: never an empty box; clipped into the image.
    b = geometry.rescale_boxes([3, 3, 3, 3], (8, 8), (2, 3))
    assert (b[2:] >= b[:2]).all() and b[2] <= 2 and b[3] <= 1
    with pytest.raises(ValueError, match="4 corners"):
        geometry.rescale_boxes([1, 2, 3], (4, 4), (4, 4))


@pytest.mark.parametrize("orig", [(480, 640), (333, 500), (1000, 301), (225, 1023)])
def test_rescale_boxes_round_trip_non_square(orig):
    # Every original pixel falls in exactly one input pixel when the original is larger,
    # so input -> original -> input is the identity.
    rng = np.random.default_rng(0)
    lo = rng.integers(0, 224, (500, 2))
    hi = lo + rng.integers(0, 224, (500, 2)) % (224 - lo)
    boxes = np.concatenate([lo, hi], axis=1)
    there = geometry.rescale_boxes(boxes, (224, 224), orig)
    assert (there[:, 2] < orig[1]).all() and (there[:, 3] < orig[0]).all()
    np.testing.assert_array_equal(geometry.rescale_boxes(there, orig, (224, 224)), boxes)


def _results():
    return {
        "model": "tiny_gap",
        "dataset": "camjax_shapes",
        "split": "validation",
        "num_examples": 3,
        "image_size": 64,
        "classification": {"top1_error": 100 / 3, "top5_error": 0.0},
        "methods": {
            "centre": {"loc_top1_error": 66.67, "pxap": None},
            "backprop": {"loc_top1_error": 50.0, "max_box_acc_v2": 12.5},
            "cam": {
                "loc_top1_error": 100 / 3,
                "max_box_acc_v2_per_iou": {"30": 90.0, "50": 60.0, "70": 30.0},
                "pxap": float("nan"),
                "curve": {"cam_thresholds": np.arange(3) / 3},
            },
        },
    }


def test_report_files_tables_and_json(tmp_path):
    jpath, mpath = report.write_report(_results(), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]  # no temp leftovers
    loaded = json.loads(open(jpath).read())
    assert loaded["methods"]["cam"]["pxap"] is None  # NaN -> null, JSON stays valid
    assert loaded["methods"]["cam"]["curve"]["cam_thresholds"][1] == pytest.approx(1 / 3)
    md = open(mpath).read()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    names = [r.split("|")[1].strip() for r in rows]
    # CAM before Backprop (Table 2's order), the centre baseline last in each table.
    i = names.index("Method")
    assert names[i : i + 3] == ["Method", "CAM on tiny_gap", "Backprop on tiny_gap"]
    assert names[i + 3].startswith("Centre baseline")
    assert "| CAM on tiny_gap | 33.33 |" in md
    assert "| 90.00 | 60.00 | 30.00 | n/a |" in md
    assert "| tiny_gap | 33.33 | 0.00 |" in md


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = str(tmp_path / "r.json")
    report.atomic_write(path, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError

    with pytest.raises(TypeError):
        report.atomic_write(path, Boom())  # not str/bytes: the write fails midway
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def _decode(path):
    im = Image.open(path)
    im.load()
    return im.size, np.asarray(im.convert("RGB"))


def test_figures_exist_decode_have_the_size_and_are_not_blank(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 48, 64, 3)).astype(np.float32)
    maps = centre.centre_maps(5, 5, 48, 64)
    boxes = np.tile([[8, 6, 50, 40]], (5, 1))
    gts = np.tile([[[4, 4, 20, 20], [0, 0, 0, 0]]], (5, 1, 1))
    gv = np.tile([[True, False]], (5, 1))
    g = figures.example_grid(
        str(tmp_path / "g.png"),
        images,
        maps[:, 0],
        boxes,
        gts,
        gv,
        [f"ex {i}" for i in range(5)],
        cols=4,
        cell_inches=2.0,
    )
    t = figures.top_classes_figure(
        str(tmp_path / "t.png"),
        images[0],
        maps[0],
        list("abcde"),
        [0.5, 0.2, 0.1, 0.1, 0.1],
        np.tile(boxes[:1], (5, 1)),
    )
    thr = np.arange(100) / 100
    c = figures.curve_figure(
        str(tmp_path / "c.png"),
        {"cam": {"30": 100 * (1 - thr), "50": 50 * (1 - thr)}, "centre": {"50": 10 * thr}},
        {"cam": thr, "centre": thr},
    )
    # Sizes are figsize * DPI: grid 2*4*2.0 x 2*2.0 inches, top-5 6*2.5 x 3.0, curve 8 x 4.
    dpi = figures.DPI
    expected = {g: (16 * dpi, 4 * dpi), t: (15 * dpi, 3 * dpi), c: (8 * dpi, 4 * dpi)}
    for path, size in expected.items():
        got, pixels = _decode(path)
        assert got == size
        assert pixels.std() > 10  # drawn content, not a blank canvas
    # Box colours are really drawn: pure green (predicted) and red (ground truth) pixels.
    _, grid = _decode(g)
    green = (grid[..., 1] > 200) & (grid[..., 0] < 40) & (grid[..., 2] < 40)
    red = (grid[..., 0] > 200) & (grid[..., 1] < 60) & (grid[..., 2] < 60)
    assert green.sum() > 50 and red.sum() > 50


def test_display_image_constant_and_nan():
    assert np.all(figures.display_image(np.ones((2, 2, 3))) == 0.5)
    out = figures.display_image(np.array([[[0.0, 1.0, 2.0]]]))
    np.testing.assert_allclose(out, [[[0.0, 0.5, 1.0]]])


def _value_tree(key: str, value: float) -> dict:
    """``"a.b"`` -> ``{"a": {"b": value}}``."""
    tree: dict = {}
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return tree


def _merge_into(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict):
            _merge_into(dst.setdefault(k, {}), v)
        else:
            dst[k] = v


def test_every_registered_metric_and_method_reaches_the_report():
    # Fails when a registered metric's columns (or a method of camjax.methods.METHODS)
    # that an evaluation asked for are missing from report.md: the report is generic.
    from camjax.methods import METHODS
    from camjax.metrics import registry

    names = sorted(registry.METRICS)
    methods = sorted(METHODS) + ["centre"]
    per_method = {}
    for i, m in enumerate(methods):
        per_method[m] = {}
        for j, name in enumerate(names):
            result: dict = {}
            for c, (key, _) in enumerate(registry.METRICS[name].columns):
                _merge_into(result, _value_tree(key, 1000 * i + 10 * j + c + 0.25))
            per_method[m][name] = result
    results = {
        "model": "net",
        "classification": {"top1_error": 1.0, "top5_error": 2.0},
        "metrics": names,
        "methods": per_method,
    }
    md = report.format_markdown(results)
    for name in names:
        spec = registry.METRICS[name]
        assert f"## {spec.table}" in md, name
        for _, header in spec.columns:
            assert header in md, (name, header)
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    for m in methods:
        assert m == "centre" or m in METHODS, f"method {m} is not registered"
        row = [r for k, r in rows.items() if k == report._row_name(m, "net")]
        assert row, f"no row for method {m}"
    # Each value lands in its own cell: method i, metric j, column c -> 1000 i + 10 j + c.
    for i, m in enumerate(methods):
        for j, name in enumerate(names):
            for c, _ in enumerate(registry.METRICS[name].columns):
                assert f"{1000 * i + 10 * j + c + 0.25:.2f}" in md, (m, name, c)
    # A metric the evaluation asked for but the registry lacks is an error, not a gap.
    with pytest.raises(ValueError, match="unknown metric"):
        report.format_markdown({**results, "metrics": names + ["no_such_metric"]})


def test_report_files_follow_the_umask(tmp_path):
    """Reports are written like any other program's output: 0666 minus the umask (a
    temporary file from mkstemp would have left them 0600)."""
    old = os.umask(0o022)
    try:
        paths = report.write_report(
            {"classification": {"top1_error": 1.0, "top5_error": 2.0}, "metrics": [],
             "methods": {}},
            str(tmp_path),
        )  # fmt: skip
    finally:
        os.umask(old)
    for path in paths:
        assert os.stat(path).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md"]  # no temporary left
