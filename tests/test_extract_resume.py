"""A run killed with SIGKILL (before any shard, in the middle of a shard's files, late)
and started again with the same command ends with every input exactly once and the same
records as a run that was never killed."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import extract_helper as helper
import numpy as np
import pytest

from camjax.extract import open_extraction

HERE = os.path.dirname(os.path.abspath(__file__))


def _start(images, out, slow=0.0):
    cmd = [sys.executable, os.path.join(HERE, "extract_helper.py"), images, out, "--overlays", "1"]
    if slow:
        cmd += ["--slow-writes", str(slow)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _count(out, pattern):
    return len(glob.glob(os.path.join(out, pattern)))


def _kill_when(proc, condition, timeout=120):
    t0 = time.time()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill point:\n{proc.stdout.read()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("kill point never reached")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _visible_files_are_whole(out):
    for path in glob.glob(os.path.join(out, "part-*.jsonl")):
        with open(path) as f:
            for line in f:
                json.loads(line)
    for path in glob.glob(os.path.join(out, "part-*.npz")):
        with np.load(path) as z:
            assert len(z["index"]) == len(z["class_ids"])


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume(tmp_path):
    images = helper.make_folder(str(tmp_path / "imgs"))
    ref = str(tmp_path / "ref")
    p = _start(images, ref)
    assert "DONE 24 True" in p.communicate(timeout=180)[0]

    out = str(tmp_path / "out")
    kill_points = [
        lambda: os.path.exists(os.path.join(out, "manifest.json")),  # before any shard
        # a shard half-written: its arrays renamed into place, its records not yet
        lambda: _count(out, "part-*.npz") > _count(out, "part-*.jsonl"),
        lambda: _count(out, "part-*.jsonl") >= 6,  # late, with overlays on disk
    ]
    for point in kill_points:
        _kill_when(_start(images, out, slow=0.05), point)
        _visible_files_are_whole(out)
        assert not open_extraction(out).complete
    p = _start(images, out)
    log = p.communicate(timeout=180)[0]
    assert p.returncode == 0 and "True" in log.split("DONE")[1], log[-2000:]

    a, b = open_extraction(ref), open_extraction(out)
    assert a.complete and b.complete
    ra, rb = list(a.records()), list(b.records())
    # Every readable input exactly once, in input order; the 2 unreadable ones listed once.
    assert [r["index"] for r in rb] == [r["index"] for r in ra]
    assert len(rb) == 24 and len({r["path"] for r in rb}) == 24
    assert sorted(os.path.basename(p) for p, _ in b.skipped()) == ["img005b.jpg", "img017b.png"]
    with open(os.path.join(out, "skipped.txt")) as f:
        assert len(f.read().splitlines()) == 2
    for x, y in zip(ra, rb, strict=True):
        # Same compiled program on the same pixels, but other batch neighbours after a
        # resume: probabilities within float rounding, classes and boxes the same.
        assert [c["class_id"] for c in x["top_k"]] == [c["class_id"] for c in y["top_k"]]
        assert [c["box"] for c in x["top_k"]] == [c["box"] for c in y["top_k"]]
        np.testing.assert_allclose(
            [c["prob"] for c in x["top_k"]], [c["prob"] for c in y["top_k"]], atol=2e-6
        )
        np.testing.assert_allclose(a.map(x), b.map(y), atol=1e-3)
    # One overlay per record, none stale, no temporary file anywhere.
    pngs = glob.glob(os.path.join(out, "overlays", "part-*", "*.png"))
    assert sorted(int(os.path.basename(p)[:8]) for p in pngs) == [r["index"] for r in rb]
    hidden = [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".")]
    assert hidden == []
