"""Finished extraction shards are verified (size + sha256 recorded when written): a rerun
moves a damaged shard to ``corrupt/`` and redoes its inputs, the reader names the damaged
file; a garbage manifest is named; two extractions into one ``--out`` at once: the second
stops with one line (exit 2); a full disk stops with one line naming the path and what
was kept, and the same command finishes once there is space. Every failure is made for
real: files truncated or changed on disk, two processes, a full tmpfs, a file size limit."""

import os
import re
import shutil
import subprocess
import sys
import time

import extract_helper as helper
import numpy as np
import pytest

from camjax.extract import open_extraction
from camjax.extract.lock import OutputBusy, OutputLock
from camjax.extract.store import DamagedOutput

HERE = os.path.dirname(os.path.abspath(__file__))

# `camjax extract` itself (camjax.cli.main), with the helper's fixed random tiny_gap in
# place of a checkpoint workdir. HOLD: the first shard waits until the file HOLD exists
# (HOLD.waiting says it is waiting). FSIZE: a file size limit (RLIMIT_FSIZE) in bytes.
DRIVER = f"""
import os, resource, sys, time
sys.path.insert(0, {HERE!r})
import extract_helper
from camjax import cli
from camjax.cli import extract as cli_extract
from camjax.extract import store
cli_extract.load = lambda args: (extract_helper.loaded(), "tiny_gap")
hold = os.environ.get("HOLD")
if hold:
    real = store.atomic_write
    def held(path, write):
        if path.endswith(".npz") and not os.path.exists(hold):
            open(hold + ".waiting", "w").close()
            while not os.path.exists(hold):
                time.sleep(0.05)
        return real(path, write)
    store.atomic_write = held
if os.environ.get("FSIZE"):
    n = int(os.environ["FSIZE"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
sys.exit(cli.main(sys.argv[1:]))
"""


def _cli(images, out, **env):
    args = ["extract", images, "--workdir", "unused", "--out", out, "--top-k", "3", "--batch-size",
            "4", "--shard-size", "3", "--no-progress", "--cpu-devices", "0"]  # fmt: skip
    return [sys.executable, "-c", DRIVER, *args], dict(os.environ, **env)


def _run_cli(images, out, timeout=180, **env):
    cmd, env = _cli(images, out, **env)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """8 inputs (6 images, 2 unreadable) in 3 shards of 3, extracted once."""
    d = tmp_path_factory.mktemp("verify")
    images = helper.make_folder(str(d / "imgs"), n_good=6)
    out = str(d / "ref")
    assert helper.run(images, out)["complete"]
    return images, out


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x40]))


DAMAGE = {
    "truncated records": lambda p: os.truncate(p + ".jsonl", 100),
    "a byte changed in the arrays": lambda p: _flip_byte(p + ".npz"),
    "truncated arrays": lambda p: os.truncate(p + ".npz", os.path.getsize(p + ".npz") // 2),
    "arrays deleted": lambda p: os.unlink(p + ".npz"),
    "garbage mark": lambda p: open(p + ".done.json", "w").write("{garbage"),
}


def _same_records(a, b):
    ra, rb = list(a.records()), list(b.records())
    assert [r["index"] for r in ra] == [r["index"] for r in rb] and len(rb) == 6
    for x, y in zip(ra, rb, strict=True):
        assert [c["class_id"] for c in x["top_k"]] == [c["class_id"] for c in y["top_k"]]
        assert [c["box"] for c in x["top_k"]] == [c["box"] for c in y["top_k"]]
        np.testing.assert_allclose(a.map(x), b.map(y), atol=1e-3)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_finished_shard_is_named_moved_aside_and_redone(reference, tmp_path, damage):
    images, ref = reference
    out = str(tmp_path / "out")
    shutil.copytree(ref, out)
    shard = os.path.join(out, "part-00001")
    DAMAGE[damage](shard)
    # Reading it back names the damaged shard's file (not JSONDecodeError / BadZipFile).
    ex = open_extraction(out)
    with pytest.raises(DamagedOutput, match=re.escape(shard + ".")):
        for j in ex.shards():
            list(ex.records())
            ex.arrays(j)
    # A rerun of the same run verifies the finished shards, moves the damaged one aside
    # (kept for a look, like checkpoints_corrupt/) and redoes only its inputs.
    s = helper.run(images, out)
    assert s["complete"] and s["num_images"] == 3 and s["num_records"] == 6
    assert [name for name, _, _ in s["moved_aside"]] == ["part-00001"]
    assert os.listdir(os.path.join(out, "corrupt")) == ["part-00001.1"]
    assert "part-00001.done.json" in os.listdir(os.path.join(out, "corrupt", "part-00001.1"))
    b = open_extraction(out)
    assert b.complete and b.manifest["num_records"] == 6
    _same_records(open_extraction(ref), b)
    # Intact now: a third run redoes nothing.
    s = helper.run(images, out)
    assert s["num_images"] == 0 and s["moved_aside"] == [] and s["complete"]


def test_a_garbage_manifest_is_named(reference, tmp_path):
    images, ref = reference
    out = str(tmp_path / "out")
    shutil.copytree(ref, out)
    path = os.path.join(out, "manifest.json")
    for garbage in ("{not json", "[1, 2]", "\xff\xfe"):
        with open(path, "w", encoding="latin-1") as f:
            f.write(garbage)
        with pytest.raises(DamagedOutput, match=re.escape(path)):
            helper.run(images, out)
        with pytest.raises(DamagedOutput, match=re.escape(path)):
            open_extraction(out)
    # DamagedOutput is a ValueError: `camjax extract` prints it as one line, exit code 2.
    assert issubclass(DamagedOutput, ValueError)


@pytest.mark.slow
def test_a_second_extraction_into_the_same_out_stops_with_one_line(reference, tmp_path):
    images, ref = reference
    out, hold = str(tmp_path / "out"), str(tmp_path / "go")
    cmd, env = _cli(images, out, HOLD=hold)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        t0 = time.time()
        while not os.path.exists(hold + ".waiting"):  # the first one is writing its shards
            assert first.poll() is None, first.communicate()
            assert time.time() - t0 < 120, "the first extraction never reached its shards"
            time.sleep(0.05)
        second = _run_cli(images, out)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"another extraction is writing to {out} (pid {first.pid}" in second.stderr
    finally:
        open(hold, "w").close()
        stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr[-3000:]
    assert "6 images" in stdout
    _same_records(open_extraction(ref), open_extraction(out))
    # Once the first is done, the same command finds the work done; no lock file is left.
    again = _run_cli(images, out)
    assert again.returncode == 0 and "0 images" in again.stdout, again.stderr
    assert [n for n in os.listdir(out) if n.startswith(".")] == []


def _disk_full_then_resume(images, ref, out, run_full, make_room):
    res = run_full()
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    err = res.stderr
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"camjax extract: error: cannot write {out}{os.sep}" in err, err
    kept = int(re.search(r"(\d+) of 3 shards are finished and kept in ", err).group(1))
    assert not open_extraction(out).complete
    assert len(open_extraction(out).shards()) == kept
    make_room()
    res = _run_cli(images, out)
    assert res.returncode == 0, res.stderr[-3000:]
    b = open_extraction(out)
    assert b.complete
    _same_records(open_extraction(ref), b)
    assert sorted(os.path.basename(p) for p, _ in b.skipped()) == ["img005b.jpg", "img017b.png"]
    return kept


@pytest.mark.slow
def test_disk_full_on_a_tmpfs_is_one_line_and_the_same_command_finishes(reference, tmp_path):
    images, ref = reference
    mnt = tmp_path / "small"
    mnt.mkdir()
    # 32 KiB: the manifest and a shard or so (each file takes a 4 KiB page at least).
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        out = str(mnt / "out")
        _disk_full_then_resume(
            images, ref, out, lambda: _run_cli(images, out),
            lambda: subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True),
        )  # fmt: skip
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_the_same_command_finishes(reference, tmp_path):
    images, ref = reference
    out = str(tmp_path / "out")
    # Records of a shard take ~1.4 kB, its arrays ~4 kB: no shard's arrays fit (EFBIG); at
    # most the shard of the 2 unreadable inputs (records and skipped list only) is kept.
    full = lambda: _run_cli(images, out, FSIZE="3000")
    assert _disk_full_then_resume(images, ref, out, full, lambda: None) <= 1


def test_the_lock_between_single_and_multi_process_runs(tmp_path):
    # flock locks belong to open files, so two locks in one process collide as two
    # processes would (the two-process case itself is the test above).
    out = str(tmp_path / "o")
    with OutputLock(out):
        with pytest.raises(OutputBusy, match=f"writing to {re.escape(out)} \\(pid {os.getpid()}"):
            OutputLock(out).__enter__()
        with pytest.raises(OutputBusy):
            OutputLock(out, 1, 2).__enter__()
    assert os.listdir(out) == []
    with OutputLock(out, 0, 2), OutputLock(out, 1, 2):  # the processes of one run share it
        with pytest.raises(OutputBusy):  # another run's process 0
            OutputLock(out, 0, 2).__enter__()
        with pytest.raises(OutputBusy):
            OutputLock(out).__enter__()
    assert os.listdir(out) == []
