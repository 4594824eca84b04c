"""``python -m camjax demo`` end to end, shrunk: a tiny private data build, 2 steps,
16 evaluation images, 1 photo. Checks that a newcomer finds every promised file.

Run as ``make demo`` runs it: a subprocess on the plain CPU (one device), not under the
8 simulated devices that conftest sets for the parallel tests.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_small_end_to_end(tmp_path):
    wd = tmp_path / "demo"
    args = [
        "--workdir", str(wd),
        "--steps", "2",
        "--max-eval-examples", "16",
        "--photos", "1",
        "--set", f"data.data_dir={tmp_path / 'tfds'}",
        "--set", "data.shapes.num_train=64",
        "--set", "data.shapes.num_validation=16",
        "--set", "data.shapes.num_test=8",
        "--set", "eval.batch_size=16",
    ]  # fmt: skip
    # No device count: the demo splits the CPU itself (config.cpu); the test's O0 kept.
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    res = subprocess.run(
        [sys.executable, "-m", "camjax", "demo", *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    printed = res.stdout
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((wd / "report.json").read_text())
    assert report["num_examples"] == 16
    assert set(report["methods"]) == {"cam", "backprop", "centre"}
    from camjax.cli.demo import DEMO_METRICS

    for m in report["methods"].values():
        assert set(m) == set(DEMO_METRICS)  # every metric the demo asks for is reported
        assert 0.0 <= m["max_box_acc_v2"]["max_box_acc_v2"] <= 100.0
        assert m["pxap"]["pxap"] is not None  # the embedded data set has masks
    md = (wd / "report.md").read_text()
    assert "| CAM on tiny_gap |" in md and "| Backprop on tiny_gap |" in md
    for protocol in ("`paper`", "`released`", "`wsol`"):  # the protocols are named
        assert protocol in md
    pngs = [wd / n for n in ("examples_cam.png", "top5_cam.png", "box_accuracy_curve.png")] + [
        wd / "extract" / "top5_photo.png"
    ]
    for png in pngs:
        with Image.open(png) as im:
            assert np.asarray(im.convert("L")).std() > 10
        assert str(png) in printed  # the demo says where everything is
    lines = (wd / "extract" / "part-00000.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert len(os.listdir(wd / "extract" / "overlays" / "part-00000")) == 1
