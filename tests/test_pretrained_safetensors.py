"""The safetensors reader: equal to the reference package, strict on every field.

Good files are written by the ``safetensors`` package (test-only reference); bad ones are
made here byte by byte. The reader itself never imports the package.
"""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest

from camjax.pretrained import safetensors
from camjax.pretrained.reader import CheckpointError, file_format, load_state_dict

# The PyTorch reference: torch==2.13.0's CPU wheel exists for Python 3.11 only, so the
# test extra installs it there (CI's lower-bound run); elsewhere these tests are skipped.
TORCH_REASON = "PyTorch reference: torch 2.13.0 CPU is installed on Python 3.11 only"

st_numpy = pytest.importorskip("safetensors.numpy")


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {
        f"x.{np.dtype(t).name}": (rng.standard_normal((3, 2)) * 50).astype(t)
        for t in ("f8", "f4", "f2", "i8", "u8", "i4", "u4", "i2", "u2", "i1", "u1", "c8")
    }
    out["flag"] = np.array([[True, False, True]])
    out["scalar"] = np.array(2.5, np.float32)
    out["empty"] = np.zeros((0, 4), np.float32)
    return out


def test_equals_the_reference_package(tmp_path):
    path = tmp_path / "w.safetensors"
    arrays = _arrays()
    st_numpy.save_file(arrays, path, metadata={"format": "np", "note": "é"})
    ref = st_numpy.load_file(path)
    got, meta = safetensors.load(path)
    assert meta == {"format": "np", "note": "é"}
    assert sorted(got) == sorted(ref) == sorted(arrays)
    for k, want in ref.items():
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
        np.testing.assert_array_equal(got[k], arrays[k], err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable


def test_bfloat16_equals_torch(tmp_path):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    st_torch = pytest.importorskip("safetensors.torch")
    t = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).bfloat16()
    path = tmp_path / "b.safetensors"
    st_torch.save_file({"w": t}, path)
    got = load_state_dict(path)["w"]
    assert got.dtype.name == "bfloat16"
    np.testing.assert_array_equal(got.astype(np.float32), t.float().numpy())


def test_format_is_told_by_content_not_name(tmp_path):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    st_file, pth_file = tmp_path / "really_safetensors.pth", tmp_path / "really_zip.safetensors"
    st_numpy.save_file({"module.w": w}, st_file)
    torch.save({"w": torch.from_numpy(w)}, pth_file)
    for path in (st_file, pth_file):
        np.testing.assert_array_equal(load_state_dict(path)["w"], w)
    assert file_format(st_file.read_bytes()[:16], st_file.stat().st_size) == "safetensors"
    assert file_format(pth_file.read_bytes()[:16], pth_file.stat().st_size) == "zip"


def _file(tmp_path, header, buffer: bytes = b"", length: int | None = None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + buffer)
    return path


F4 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD = {
    "dtype": ({"w": {**F4, "dtype": "F128"}}, b"\0" * 8, "dtype 'F128' is not one of"),
    "dtype-type": ({"w": {**F4, "dtype": ["F32"]}}, b"\0" * 8, "dtype"),
    "negative-shape": ({"w": {**F4, "shape": [-2]}}, b"\0" * 8, "non-negative ints"),
    "float-shape": ({"w": {**F4, "shape": [2.0]}}, b"\0" * 8, "non-negative ints"),
    "bool-shape": ({"w": {**F4, "shape": [True, True]}}, b"\0" * 8, "non-negative ints"),
    "size-mismatch": ({"w": {**F4, "shape": [3]}}, b"\0" * 8, "for shape"),
    "past-buffer": ({"w": {**F4, "data_offsets": [4, 12]}}, b"\0" * 8, "byte buffer"),
    "reversed": ({"w": {**F4, "data_offsets": [8, 0]}}, b"\0" * 8, "byte buffer"),
    "overlap": (
        {"a": F4, "b": {**F4, "data_offsets": [4, 12]}},
        b"\0" * 12,
        "overlaps",
    ),
    "gap": ({"a": {**F4, "data_offsets": [4, 12]}}, b"\0" * 12, "gap"),
    "trailing": ({"a": F4}, b"\0" * 12, "4 bytes after the last tensor"),
    "extra-field": ({"w": {**F4, "x": 1}}, b"\0" * 8, "needs exactly"),
    "missing-field": ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "needs exactly"),
    "metadata": ({"__metadata__": {"a": 1}, "w": F4}, b"\0" * 8, "__metadata__"),
    # Not even '{' first: the dispatcher does not take it for safetensors at all.
    "not-object": ([1, 2], b"", "not an object|neither a zip"),
    "duplicate": (b'{"w": 1, "w": 2}', b"", "repeats"),
    "nan": (b'{"w": NaN}', b"", "NaN"),
    "utf8": (b'{"\xff": 1}', b"", "UTF-8"),
    "json": (b"{not json}", b"", "JSON"),
    "deep": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"", "nests too deep"),
    "huge-int": (b'{"w": {"dtype": "F32", "shape": [1' + b"0" * 5000 + b"]}}", b"", "JSON"),
    "huge-shape": ({"w": {**F4, "shape": [2**64]}}, b"\0" * 8, "non-negative ints"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_headers_are_refused(tmp_path, case):
    header, buffer, message = BAD[case]
    path = _file(tmp_path, header, buffer)
    assert sys.getrecursionlimit() < 100_000  # the deep case would overflow json's parser
    with pytest.raises(CheckpointError, match=message):
        safetensors.load(path)
    with pytest.raises(CheckpointError, match=message):  # the same through the dispatcher
        load_state_dict(path)


@pytest.mark.parametrize("length", [2**63, 2**40, 100_000_001])
def test_header_length_is_bounded(tmp_path, length):
    path = _file(tmp_path, {"w": F4}, b"\0" * 8, length=length)
    with pytest.raises(CheckpointError, match="header length"):
        safetensors.load(path)


def test_budget(tmp_path):
    path = tmp_path / "w.safetensors"
    st_numpy.save_file({"w": np.zeros(1000, np.float32)}, path)
    assert safetensors.load(path, max_bytes=1 << 20)[0]["w"].shape == (1000,)
    with pytest.raises(CheckpointError, match="budget"):
        safetensors.load(path, max_bytes=3000)  # the header fits, 4000 bytes of tensor do not


def test_bool_bytes_are_normalised(tmp_path):
    """A BOOL byte of 2 reads as True (as torch does), never as an invalid numpy bool."""
    path = _file(tmp_path, {"b": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}},
                 b"\x00\x02\x01")  # fmt: skip
    b = safetensors.load(path)[0]["b"]
    assert b.dtype == np.bool_ and b.tolist() == [False, True, True]
    assert b.view(np.uint8).tolist() == [0, 1, 1]
