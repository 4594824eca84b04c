"""The safetensors format (what timm and Hugging Face publish), read without its package.

Layout: an unsigned little-endian 64-bit header length ``N``; ``N`` bytes of UTF-8 JSON,
an object mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin,
end]}`` plus an optional ``"__metadata__"`` of str -> str (the header may end in spaces);
then the byte buffer, offsets counted from its start, tensors little-endian, C order.

Checked strictly before anything is allocated: ``N`` at most :data:`MAX_HEADER` and inside
the file; the header valid UTF-8 JSON with no duplicate names, NaN or unknown fields;
dtypes from :data:`DTYPES`; shapes of non-negative ints; ``end - begin`` equal to
``prod(shape) * itemsize``; tensors that tile the buffer exactly, no overlap, no gap, no
trailing bytes (the format's rule against polyglot files). The buffer is charged to the
load's :class:`~camjax.pretrained.limits.Budget`; each tensor is read straight into its
fresh array.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from camjax.pretrained.limits import MAX_INT, MAX_NDIM, Budget, CheckpointError, show

MAX_HEADER = 100_000_000  # the reference implementation's limit on N
HEADER_COST = 32  # bytes charged per header byte: the Python objects JSON parsing makes
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "C64": np.dtype("<c8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
_FIELDS = {"dtype", "shape", "data_offsets"}


def looks_like(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` has a safetensors header."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise CheckpointError("safetensors header repeats a name")
    return out


def _refuse_constant(name: str) -> Any:
    raise CheckpointError(f"safetensors header holds {name}, which is not JSON")


def _ints(value: Any, what: str, n: int | None = None) -> list[int]:
    ok = type(value) is list and (n is None or len(value) == n) and len(value) <= MAX_NDIM
    if not ok or not all(type(v) is int and 0 <= v <= MAX_INT for v in value):
        raise CheckpointError(f"{what} is {show(value)}, not a list of non-negative ints")
    return value


def _header(f: BinaryIO, size: int, budget: Budget) -> tuple[int, dict[str, Any]]:
    f.seek(0)
    head = f.read(8)
    if len(head) != 8:
        raise CheckpointError("truncated safetensors file: no header length")
    (n,) = struct.unpack("<Q", head)
    if not 2 <= n <= min(MAX_HEADER, size - 8):
        raise CheckpointError(f"safetensors header length {show(n)} for a file of {size} bytes")
    budget.charge(n * HEADER_COST, "the safetensors header")
    try:
        header = json.loads(
            f.read(n).decode("utf-8"),
            object_pairs_hook=_unique,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise CheckpointError("safetensors header nests too deep") from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"safetensors header is not UTF-8 JSON: {str(e)[:120]}") from None
    if type(header) is not dict:
        raise CheckpointError(f"safetensors header is {show(header)}, not an object")
    return n, header


def read(f: BinaryIO, size: int, budget: Budget) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` from an open safetensors file of ``size`` bytes."""
    n, header = _header(f, size, budget)
    metadata = header.pop("__metadata__", {})
    if type(metadata) is not dict or not all(type(v) is str for v in metadata.values()):
        raise CheckpointError("safetensors __metadata__ must map str to str")
    buffer = size - 8 - n
    spans = []
    for name, info in header.items():
        if not name or type(info) is not dict or set(info) != _FIELDS:
            raise CheckpointError(f"safetensors entry {show(name)}: needs exactly {_FIELDS}")
        dtype = DTYPES.get(info["dtype"]) if type(info["dtype"]) is str else None
        if dtype is None:
            raise CheckpointError(
                f"tensor {name!r}: dtype {show(info['dtype'])} is not one of {', '.join(DTYPES)}"
            )
        shape = _ints(info["shape"], f"tensor {name!r} shape")
        begin, end = _ints(info["data_offsets"], f"tensor {name!r} data_offsets", 2)
        nbytes = math.prod(shape) * dtype.itemsize
        if not begin <= end <= buffer or end - begin != nbytes:
            raise CheckpointError(
                f"tensor {name!r}: bytes [{show(begin)}, {show(end)}) of a {buffer}-byte buffer "
                f"for shape {show(shape)} of {info['dtype']} ({show(nbytes)} bytes)"
            )
        spans.append((begin, end, name))
    expected = 0
    for begin, end, name in sorted(spans):
        if begin != expected:
            gap = "overlaps the tensor before it" if begin < expected else "leaves a gap"
            raise CheckpointError(f"tensor {name!r} at byte {begin} {gap}")
        expected = end
    if expected != buffer:
        raise CheckpointError(f"{buffer - expected} bytes after the last tensor")
    budget.charge(buffer, f"{len(spans)} tensors")
    tensors = {}
    for name, info in header.items():
        dtype, shape = DTYPES[info["dtype"]], tuple(info["shape"])
        arr = np.empty(shape, dtype=dtype.newbyteorder("="))
        if arr.size:
            f.seek(8 + n + info["data_offsets"][0])
            if f.readinto(arr.reshape(-1).view(np.uint8)) != arr.nbytes:
                raise CheckpointError(f"truncated safetensors file: tensor {name!r}")
        tensors[name] = arr.view(np.uint8) != 0 if dtype == np.bool_ else arr
    return tensors, metadata


def load(
    path: str | os.PathLike, *, max_bytes: int | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of the safetensors file ``path`` (see the module doc)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            return read(f, size, Budget.for_file(size, max_bytes))
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None


__all__ = ["DTYPES", "MAX_HEADER", "load", "looks_like", "read"]
