"""Tensor and storage records parsed from a ``.pth`` pickle, and the arrays made from them.

Records are immutable (frozen, slotted dataclasses) and checked when made: a tensor's
size, stride and offset are whole numbers in range, no stride is negative (torch never
writes one), and every element it names lies inside its storage, which also bounds its
element count (a zero stride cannot make a tensor larger than its storage). Nothing can
change a record after its check: the unpickler (:mod:`~camjax.pretrained.unpickler`)
has no opcode that writes into one. Arrays are built only from checked records, after the
bytes they cost were charged to the :class:`~camjax.pretrained.limits.Budget`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from camjax.pretrained.limits import MAX_DEPTH, MAX_INT, MAX_NDIM, CheckpointError, show

# Storage class names pickled by torch.save -> element dtype (little-endian).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    "UntypedStorage": np.dtype("u1"),
}


@dataclass(frozen=True, slots=True)
class StorageRecord:
    """Storage ``key`` of ``numel`` elements of ``dtype``; a legacy view covers elements
    ``[start, start + count)`` of it (the whole storage otherwise)."""

    key: str
    type_name: str
    dtype: np.dtype
    numel: int
    start: int
    count: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """A strided view (element units) into a :class:`StorageRecord`, checked in bounds."""

    storage: StorageRecord
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.size) * self.storage.dtype.itemsize


def _whole(value: Any, what: str) -> int:
    if type(value) is not int:
        raise CheckpointError(f"tensor {what} is {show(value)}, not an int")
    if value < 0:
        raise CheckpointError(f"tensor {what} is negative ({show(value)})")
    if value > MAX_INT:
        raise CheckpointError(f"tensor {what} is out of range ({show(value)})")
    return value


def tensor_record(storage: Any, offset: Any, size: Any, stride: Any) -> TensorRecord:
    """``torch._utils._rebuild_tensor(_v2)``'s view, refused unless wholly in bounds."""
    if not isinstance(storage, StorageRecord):
        raise CheckpointError(f"tensor rebuilt from {show(storage)}, not a storage")
    offset = _whole(offset, "offset")
    if not (isinstance(size, tuple) and isinstance(stride, tuple)):
        raise CheckpointError(f"tensor size/stride are {show(size)}/{show(stride)}, not tuples")
    if len(size) != len(stride) or len(size) > MAX_NDIM:
        raise CheckpointError(f"tensor of {len(size)} sizes and {len(stride)} strides")
    size = tuple(_whole(n, "size") for n in size)
    stride = tuple(_whole(s, "stride") for s in stride)
    count = math.prod(size)
    if count > storage.count:
        raise CheckpointError(
            f"tensor of {show(count)} elements over a storage of {storage.count} elements "
            f"(size {show(size)}, stride {show(stride)})"
        )
    if count:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.count:
            raise CheckpointError(
                f"tensor reaches element {show(last)} of a storage of {storage.count} "
                f"elements (size {show(size)}, stride {show(stride)}, offset {show(offset)})"
            )
    elif offset > storage.count:
        raise CheckpointError(f"empty tensor at offset {show(offset)} past its storage")
    return TensorRecord(storage, offset, size, stride)


def to_array(t: TensorRecord, raw: np.ndarray) -> np.ndarray:
    """A fresh C-contiguous array of ``t`` from ``raw``, its root storage's elements."""
    s = t.storage
    flat = raw[s.start : s.start + s.count]
    if flat.size != s.count:  # the loaders check storage sizes; this is a last guard
        raise CheckpointError(f"storage {s.key!r} holds {flat.size} of {s.count} elements")
    if math.prod(t.size) == 0:
        return np.zeros(t.size, dtype=s.dtype.newbyteorder("="))
    # In bounds by construction (tensor_record): offset + sum((n-1)*s) < count.
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :],
        shape=t.size,
        strides=tuple(st * s.dtype.itemsize for st in t.stride),
        writeable=False,
    )
    if s.dtype == np.bool_:  # bytes other than 0/1 are True, as in torch
        return np.ascontiguousarray(view.view(np.uint8) != 0)
    return np.array(view, dtype=s.dtype.newbyteorder("="), order="C")


def _scalar(obj: Any) -> bool:
    return obj is None or isinstance(obj, str | bytes | int | float)


def walk(obj: Any, leaf: Callable[[TensorRecord], Any]) -> Any:
    """``obj`` with each :class:`TensorRecord` replaced by ``leaf(record)``.

    Dicts, lists and tuples are rebuilt (a container reached twice is rebuilt once and
    shared, so a pickle's shared references cannot blow up into a tree); nesting deeper
    than :data:`MAX_DEPTH`, a cycle, or anything but containers, scalars and tensors is
    refused.
    """
    done: dict[int, Any] = {}
    active: set[int] = set()

    def visit(x: Any, depth: int) -> Any:
        if _scalar(x):
            return x
        if isinstance(x, TensorRecord):
            return leaf(x)
        if not isinstance(x, dict | list | tuple):
            raise CheckpointError(f"checkpoint holds {_describe(x)}, not a tensor or data")
        if id(x) in done:
            return done[id(x)]
        if depth >= MAX_DEPTH:
            raise CheckpointError(f"containers nested more than {MAX_DEPTH} deep")
        if id(x) in active:
            raise CheckpointError("a container that contains itself")
        active.add(id(x))
        if isinstance(x, dict):
            out: Any = {k: visit(v, depth + 1) for k, v in x.items()}
        else:
            out = type(x)(visit(v, depth + 1) for v in x)
        active.discard(id(x))
        done[id(x)] = out
        return out

    return visit(obj, 0)


def _describe(x: Any) -> str:
    if isinstance(x, StorageRecord):
        return "a bare storage"
    name = getattr(x, "qualname", None)
    return f"the global {name} itself" if name else show(x)


__all__ = [
    "STORAGE_DTYPES",
    "StorageRecord",
    "TensorRecord",
    "tensor_record",
    "to_array",
    "walk",
]
