"""Extraction on 1 device, on 8 simulated devices, and in 2 processes (jax.distributed,
4 devices each, each process doing its own shards) gives the same records."""

import os
import socket
import subprocess
import sys

import extract_helper as helper
import numpy as np
import pytest

from camjax.extract import open_extraction

HERE = os.path.dirname(os.path.abspath(__file__))


def _env(devices):
    return dict(
        os.environ,
        XLA_FLAGS=(
            f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
        ),
    )


def _cmd(images, out, *extra):
    return [sys.executable, os.path.join(HERE, "extract_helper.py"), images, out, *extra]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a, b):
    ra, rb = list(a.records()), list(b.records())
    assert [r["index"] for r in ra] == [r["index"] for r in rb] and len(ra) == 24
    for x, y in zip(ra, rb, strict=True):
        assert x["path"] == y["path"] and (x["height"], x["width"]) == (y["height"], y["width"])
        assert [c["class_id"] for c in x["top_k"]] == [c["class_id"] for c in y["top_k"]]
        assert [c["box"] for c in x["top_k"]] == [c["box"] for c in y["top_k"]]
        # Other programs (batch split over devices): equal up to float rounding.
        np.testing.assert_allclose(
            [c["prob"] for c in x["top_k"]], [c["prob"] for c in y["top_k"]], atol=2e-6
        )
        np.testing.assert_allclose(a.map(x), b.map(y), atol=1e-3)
    assert sorted(a.skipped()) == sorted(b.skipped()) and len(a.skipped()) == 2


@pytest.mark.slow
def test_one_device_eight_devices_two_processes_agree(tmp_path):
    images = helper.make_folder(str(tmp_path / "imgs"))
    one, eight, multi = (str(tmp_path / n) for n in ("one", "eight", "multi"))
    for out, devices in ((one, 1), (eight, 8)):
        res = subprocess.run(_cmd(images, out), env=_env(devices), capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        assert f"DONE 24 True {devices} 1" in res.stdout
    port = str(_free_port())
    procs = [
        subprocess.Popen(_cmd(images, multi, "--process", str(i), "2", port), env=_env(4),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (0, 1)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
        assert " 4 2" in log.split("DONE")[1]  # 4 local devices, 2 processes
    # 26 inputs in shards of 3 (the last holds 2); the unreadable ones sort to inputs 6
    # (img005b) and 19 (img017b), in shards 2 and 6. Process 0 has shards 0, 2, 4, 6, 8:
    # 14 inputs, 12 images; process 1 has shards 1, 3, 5, 7: 12 inputs, 12 images.
    counts = [int(log.split("DONE")[1].split()[0]) for log in logs]
    assert counts == [12, 12]
    a = open_extraction(one)
    _same(a, open_extraction(eight))
    m = open_extraction(multi)
    assert m.complete and m.manifest["num_records"] == 24
    _same(a, m)
