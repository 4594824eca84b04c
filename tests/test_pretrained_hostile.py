"""Hostile ``.pth`` files, one per failure reported against the reader (issue #18, item 2).

Each file is made here from raw pickle opcodes and hand-built zips. The ones that crashed
the interpreter or allocated gigabytes are loaded in a child process with a limit on its
address space (``pretrained_files.load_in_child``), so a regression fails the test
instead of killing pytest or the machine.
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
import pytest
from pretrained_files import (
    APPEND,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    PROTO,
    SETITEM,
    STOP,
    TUPLE1,
    deflate_zeros,
    legacy_checkpoint,
    load_in_child,
    op_dict,
    op_global,
    op_int,
    op_storage,
    op_str,
    op_tensor,
    op_tuple,
    raw_zip,
    state_dict_pickle,
    stored,
    zip_checkpoint,
)

from camjax.pretrained.reader import CheckpointError, load_checkpoint, load_state_dict

W = np.arange(4, dtype="<f4")  # the one honest tensor the hostile files carry


def _tensor_then_build(state: bytes) -> bytes:
    """{"w": tensor of 4 floats}, then a BUILD that rewrites the tensor's fields."""
    good = op_tensor(op_storage("0", 4), (4,), (1,))
    return PROTO + EMPTY_DICT + op_str("w") + good + state + BUILD + SETITEM + STOP


@pytest.mark.parametrize(
    "stride",
    [-(1 << 40), -2],
    ids=["segfault", "heap-garbage"],
)
def test_build_cannot_rewrite_a_checked_tensor(tmp_path, stride):
    """BUILD after the tensor's checks set a negative stride: as_strided then read 4 TB
    before the buffer (SIGSEGV), or 24 bytes before it (heap garbage such as -1.6e26)."""
    path = tmp_path / "build.pth"
    zip_checkpoint(
        path, _tensor_then_build(op_dict(stride=op_tuple(op_int(stride)))), {"0": W.tobytes()}
    )
    out = load_in_child(path)
    assert "returncode" not in out, out  # the child did not die
    assert "BUILD" in out.get("error", ""), out


def test_build_cannot_rewrite_shared_storage_types(tmp_path):
    """A rejected file BUILDs into the FloatStorage global; later loads must not see it."""
    evil = tmp_path / "evil.pth"
    pkl = PROTO + op_global("torch", "FloatStorage") + op_dict(dtype=op_str("junk"))
    pkl += BUILD + op_global("os", "system") + STOP
    zip_checkpoint(evil, pkl, {})
    with pytest.raises(CheckpointError):
        load_state_dict(evil)
    good = tmp_path / "good.pth"
    zip_checkpoint(
        good,
        state_dict_pickle({"w": op_tensor(op_storage("0", 4), (4,), (1,))}),
        {"0": W.tobytes()},
    )
    np.testing.assert_array_equal(load_state_dict(good)["w"], W)


def test_zero_strides_cannot_multiply_a_storage(tmp_path):
    """A 522-byte zip: one float stored, a tensor of 550 million elements with stride 0
    (2.2 GB returned). A tensor may not hold more elements than its storage."""
    path = tmp_path / "zero_stride.pth"
    pkl = state_dict_pickle({"w": op_tensor(op_storage("0", 1), (550_000_000,), (0,))})
    zip_checkpoint(path, pkl, {"0": W[:1].tobytes()})
    assert path.stat().st_size < 1000
    out = load_in_child(path, headroom_mib=256)
    assert "elements" in out.get("error", ""), out
    assert out["peak_mib"] < 64, out


def _bomb_zip(path, referenced_bomb: bool) -> None:
    """A valid checkpoint plus deflated entries of 2.2 GB of zeros each (2 MB on disk)."""
    bomb_size = 2100 << 20
    bomb = deflate_zeros(bomb_size)
    numel = bomb_size // 4 if referenced_bomb else 4
    pkl = state_dict_pickle({"w": op_tensor(op_storage("0", numel), (4,), (1,))})
    data = (
        ("archive/data/0", bomb, zipfile.ZIP_DEFLATED, bomb_size, 0)
        if referenced_bomb
        else stored("archive/data/0", W.tobytes())
    )
    junk = [(f"archive/data/{i + 1}", bomb, zipfile.ZIP_DEFLATED, bomb_size, 0) for i in range(2)]
    raw_zip(
        path, [stored("archive/data.pkl", pkl), stored("archive/byteorder", b"little"), data, *junk]
    )


def test_unreferenced_zip_entries_are_never_decompressed(tmp_path):
    """A 4 MB zip whose two unreferenced entries inflate to 2.2 GB each: it was read
    whole (4.4 GB peak). Only data.pkl, byteorder and referenced storages are read."""
    path = tmp_path / "bomb.pth"
    _bomb_zip(path, referenced_bomb=False)
    assert path.stat().st_size < 8 << 20
    out = load_in_child(path, headroom_mib=256)
    assert out.get("values") == {"w": W.tolist()}, out
    assert out["peak_mib"] < 64, out


def test_a_referenced_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.pth"
    _bomb_zip(path, referenced_bomb=True)
    out = load_in_child(path, headroom_mib=256)
    assert "budget" in out.get("error", ""), out
    assert out["peak_mib"] < 64, out


def test_deep_nesting_is_a_checkpoint_error(tmp_path):
    """100,000 nested lists: a raw RecursionError before."""
    n = 100_000
    path = tmp_path / "deep.pth"
    zip_checkpoint(path, PROTO + EMPTY_LIST * n + APPEND * (n - 1) + STOP, {})
    with pytest.raises(CheckpointError, match="nest"):
        load_checkpoint(path)


def test_deeply_nested_dict_key_is_refused(tmp_path):
    """A dict key of 1,000,000 nested 1-tuples: hashing it recursed in C (SIGSEGV)."""
    n = 1_000_000
    key = op_int(0) + TUPLE1 * n
    path = tmp_path / "deep_key.pth"
    zip_checkpoint(path, PROTO + EMPTY_DICT + key + op_int(1) + SETITEM + STOP, {})
    out = load_in_child(path)
    assert "returncode" not in out, out
    assert "key" in out.get("error", ""), out


def test_shared_references_do_not_hang(tmp_path):
    """{"x": 60 levels of (t, t)}: 2**60 leaves if walked as a tree (the old reader never
    returned). Each shared object is rebuilt once."""
    path = tmp_path / "dag.pth"
    pairs = b"N" + b"q\x00h\x00\x86" * 60  # PUT 0, GET 0, TUPLE2
    zip_checkpoint(path, PROTO + EMPTY_DICT + op_str("x") + pairs + SETITEM + STOP, {})
    out = load_in_child(path, timeout=30)
    assert out.get("keys") == ["x"], out


def test_huge_element_count_is_a_checkpoint_error(tmp_path):
    """2**40 elements over one float with stride 0: a raw MemoryError before."""
    path = tmp_path / "huge.pth"
    pkl = state_dict_pickle({"w": op_tensor(op_storage("0", 1), (1 << 20, 1 << 20), (0, 0))})
    zip_checkpoint(path, pkl, {"0": W[:1].tobytes()})
    with pytest.raises(CheckpointError, match="elements"):
        load_state_dict(path)


def test_stride_overflow_is_a_checkpoint_error(tmp_path):
    """A stride of 2**63 on a size-1 axis passed the bounds check: OverflowError before."""
    path = tmp_path / "overflow.pth"
    pkl = state_dict_pickle({"w": op_tensor(op_storage("0", 4), (4, 1), (1, 1 << 63))})
    zip_checkpoint(path, pkl, {"0": W.tobytes()})
    with pytest.raises(CheckpointError, match="stride"):
        load_state_dict(path)


def test_legacy_storage_size_overflow_is_a_checkpoint_error(tmp_path):
    """A legacy storage of 2**62 floats: f.read(2**64) raised OverflowError before."""
    numel = 1 << 62
    path = tmp_path / "legacy.pth"
    pkl = state_dict_pickle({"w": op_tensor(op_storage("k", numel), (4,), (1,))})
    legacy_checkpoint(path, pkl, [("k", numel, W.tobytes())])
    with pytest.raises(CheckpointError, match="storage"):
        load_state_dict(path)


def test_huge_int_in_an_error_message_is_a_checkpoint_error(tmp_path):
    """An offset of 10**5000 used to reach an f-string (ValueError: int too large to
    convert to str) instead of a CheckpointError."""
    path = tmp_path / "bigint.pth"
    tensor = op_tensor(op_storage("0", 4), (4,), (1,), offset=10**5000)
    zip_checkpoint(path, state_dict_pickle({"w": tensor}), {"0": W.tobytes()})
    with pytest.raises(CheckpointError, match="offset"):
        load_state_dict(path)


def test_crc_of_a_bomb_is_not_what_stops_it(tmp_path):
    """The deflate bomb's junk entries carry a wrong CRC; were they read, zipfile would say
    'Bad CRC'. The good load above shows they are not read at all; here, reading one
    directly shows the file really is a bomb (its first MiB inflates from a few bytes)."""
    path = tmp_path / "bomb.pth"
    _bomb_zip(path, referenced_bomb=False)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("archive/data/1")
        assert info.file_size == 2100 << 20 and info.compress_size < 3 << 20
        with zf.open(info) as f:
            assert f.read(1 << 20) == bytes(1 << 20)
    assert zlib.decompressobj(-15).decompress(deflate_zeros(1 << 20)) == bytes(1 << 20)
