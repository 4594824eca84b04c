"""Read PyTorch checkpoint files into numpy arrays without torch and without running code.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. This
reader unpickles with :class:`RestrictedUnpickler`, whose ``find_class`` admits only the
globals a tensor state dict is made of (the tensor and parameter rebuild functions,
``collections.OrderedDict`` and the storage type names) and refuses any other global with
an error naming it, before anything is called. Tensors come back as fresh, C-contiguous
numpy arrays (copies: storages shared between tensors in the file are not shared here).

Both layouts that ``torch.save`` writes are read:

- zip (default since PyTorch 1.6): ``<prefix>/data.pkl`` holds the object with storages
  as persistent ids ``("storage", type, key, location, numel)``; the bytes of storage
  ``key`` are the entry ``<prefix>/data/<key>``.
- legacy (``_use_new_zipfile_serialization=False``): consecutive pickles of the magic
  number, the protocol version (1001), a sys-info dict, the object (persistent ids
  ``("storage", type, key, location, numel, view)``), the list of storage keys; then, per
  key in that order, an int64 element count and the raw little-endian bytes.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

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


class CheckpointError(ValueError):
    """A checkpoint file that is unsafe, corrupt, truncated or not a tensor state dict."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by the pickle; its bytes are looked up by ``key`` afterwards."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0  # elements into the root storage (legacy views)


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest) -> _TensorRef:
    """``torch._utils._rebuild_tensor(_v2)``: a strided view into a storage."""
    if not isinstance(storage, _StorageRef):
        raise CheckpointError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"malformed tensor size/stride/offset: {e}") from e
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise CheckpointError(f"malformed tensor: size {size}, stride {stride}, offset {offset}")
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_rest) -> Any:
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter is its data here."""
    return data


# (module, name) -> what the restricted unpickler hands back. Nothing else is reachable.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dt) for name, dt in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and torch storage ids.

    ``storages``, when given, collects the first reference seen for each storage key
    (the legacy layout needs each storage's dtype to read its bytes afterwards).
    """

    def __init__(self, file: BinaryIO, storages: dict[str, _StorageRef] | None = None):
        super().__init__(file, encoding="utf-8")
        self.storages = {} if storages is None else storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refusing to load global {module}.{name}: a tensor state dict never needs "
                "it, and unpickling it could run code from the file"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"persistent id names {stype!r:.80}, not a storage type")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        root = _StorageRef(key, stype.dtype, int(numel))
        self.storages.setdefault(key, root)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        # Legacy view into a root storage: (view_key, offset, size), in elements.
        _view_key, offset, view_numel = view
        return _StorageRef(key, stype.dtype, int(view_numel), int(offset))


def _unpickle(f: BinaryIO, storages: dict[str, _StorageRef] | None = None) -> Any:
    try:
        return RestrictedUnpickler(f, storages).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, struct.error, ValueError, TypeError) as e:
        raise CheckpointError(f"corrupt or truncated pickle: {type(e).__name__}: {e}") from e


def _materialize(obj: Any, storages: Mapping[str, bytes]) -> Any:
    """Replace every tensor reference in ``obj`` by a numpy array built from ``storages``."""
    if isinstance(obj, _TensorRef):
        return _tensor_array(obj, storages)
    if isinstance(obj, Mapping):
        return {k: _materialize(v, storages) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v, storages) for v in obj)
    if isinstance(obj, _StorageRef | _StorageType):
        raise CheckpointError("checkpoint holds a bare storage, not a tensor")
    return obj


def _tensor_array(t: _TensorRef, storages: Mapping[str, bytes]) -> np.ndarray:
    ref = t.storage
    if ref.key not in storages:
        raise CheckpointError(f"storage {ref.key!r} is missing from the file")
    raw = storages[ref.key]
    itemsize = ref.dtype.itemsize
    if len(raw) % itemsize:
        raise CheckpointError(f"storage {ref.key!r}: {len(raw)} bytes is not whole elements")
    flat = np.frombuffer(raw, dtype=ref.dtype)[ref.offset : ref.offset + ref.numel]
    if flat.size != ref.numel:
        raise CheckpointError(
            f"storage {ref.key!r}: holds {flat.size} elements, the pickle says {ref.numel}"
        )
    # Bounds check before as_strided, which would otherwise read outside the buffer.
    if 0 not in t.size:
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
        if last >= flat.size:
            raise CheckpointError(
                f"tensor of size {t.size}, stride {t.stride}, offset {t.offset} reaches "
                f"element {last} of a storage of {flat.size}"
            )
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :] if t.offset < flat.size else flat[:0],
        shape=t.size,
        strides=tuple(s * itemsize for s in t.stride),
        writeable=False,
    )
    return np.array(view, dtype=ref.dtype.newbyteorder("="), order="C")


def _load_zip(path: str) -> Any:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pkl) != 1:
                raise CheckpointError(f"zip checkpoint has {len(pkl)} data.pkl entries, not 1")
            prefix = pkl[0][: -len("data.pkl")]
            if prefix + "byteorder" in names and zf.read(prefix + "byteorder") != b"little":
                raise CheckpointError("big-endian checkpoints are not supported")
            obj = _unpickle(io.BytesIO(zf.read(pkl[0])))
            storages = {}
            for name in names:
                if name.startswith(prefix + "data/"):
                    storages[name[len(prefix + "data/") :]] = zf.read(name)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"corrupt or truncated zip checkpoint: {e}") from e
    return _materialize(obj, storages)


def _load_legacy(f: BinaryIO) -> Any:
    if _unpickle(f) != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (wrong magic number)")
    version = _unpickle(f)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"unsupported legacy protocol version {version!r}")
    sys_info = _unpickle(f)
    if not (isinstance(sys_info, Mapping) and sys_info.get("little_endian", False)):
        raise CheckpointError("big-endian checkpoints are not supported")
    refs: dict[str, _StorageRef] = {}
    obj = _unpickle(f, refs)
    keys = _unpickle(f)
    if not isinstance(keys, list):
        raise CheckpointError("legacy checkpoint: storage key list missing")
    storages: dict[str, bytes] = {}
    for key in keys:
        key = str(key)
        if key not in refs:
            raise CheckpointError(f"storage {key!r} listed but never used by a tensor")
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"truncated file: storage {key!r} header missing")
        (numel,) = struct.unpack("<q", head)
        if numel != refs[key].numel:
            raise CheckpointError(
                f"storage {key!r}: {numel} elements in the file, the pickle says {refs[key].numel}"
            )
        nbytes = numel * refs[key].dtype.itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(
                f"truncated file: storage {key!r} has {len(data)} of {nbytes} bytes"
            )
        storages[key] = data
    return _materialize(obj, storages)


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file safely: the saved object with tensors as numpy arrays.

    Raises :class:`CheckpointError` for a global outside :data:`ALLOWED_GLOBALS`, a
    truncated or corrupt file, or a layout this reader does not know.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
        try:
            if head == b"PK\x03\x04":
                return _load_zip(path)
            if len(head) < 2 or head[0] != 0x80:
                raise CheckpointError("not a PyTorch checkpoint (neither zip nor pickle)")
            f.seek(0)
            return _load_legacy(f)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from a PyTorch state-dict file, without torch, running no code.

    A checkpoint that wraps the state dict as ``{"state_dict": ...}`` or ``{"model": ...}``
    is unwrapped; a ``module.`` prefix on every key (``DataParallel``) is removed.
    """
    obj = load_checkpoint(path)
    if not _is_state_dict(obj) and isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if _is_state_dict(obj.get(wrapper)):
                obj = obj[wrapper]
                break
    if not _is_state_dict(obj):
        raise CheckpointError(f"{os.fspath(path)}: not a mapping of names to tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


__all__: list[str] = [
    "ALLOWED_GLOBALS",
    "CheckpointError",
    "RestrictedUnpickler",
    "load_checkpoint",
    "load_state_dict",
]
