"""Read weight files into numpy arrays without torch, running nothing from the file.

:func:`load_checkpoint` tells the format from the file's first bytes, not its name:

- zip (``torch.save`` since PyTorch 1.6): ``<prefix>/data.pkl`` holds the object with
  storages as persistent ids ``("storage", type, key, location, numel)``; storage ``key``
  is the entry ``<prefix>/data/<key>``. Only ``data.pkl``, ``byteorder`` and the entries
  the pickle names are read, stored or deflated, each checked against its declared size.
- legacy (``_use_new_zipfile_serialization=False``): consecutive pickles of the magic
  number, the protocol version (1001), a sys-info dict, the object (persistent ids
  ``("storage", type, key, location, numel, view)``), the list of storage keys; then, per
  key in that order, an int64 element count and the raw little-endian bytes.
- safetensors (:mod:`camjax.pretrained.safetensors`).

Pickles run on :mod:`camjax.pretrained.unpickler` (five allowed globals, no object
construction); tensors are checked records (:mod:`camjax.pretrained.tensors`) turned into
fresh C-contiguous arrays (copies: storages shared in the file are not shared here). A
:class:`~camjax.pretrained.limits.Budget` (``max_bytes``; default 64 MiB + 4x the file
size) is charged before every allocation. Every problem is a :class:`CheckpointError`
naming the file and what is wrong.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

from camjax.pretrained import safetensors
from camjax.pretrained.limits import Budget, CheckpointError, mib, show
from camjax.pretrained.tensors import StorageRecord, TensorRecord, to_array, walk
from camjax.pretrained.unpickler import ALLOWED_GLOBALS, Stream, unpickle

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_ENTRY_COST = 1024  # bytes charged per possible central-directory entry (ZipInfo etc.)
_CHUNK = 1 << 20


def _materialize(
    obj: Any,
    storages: Mapping[str, StorageRecord],
    read_storage: Callable[[StorageRecord], np.ndarray],
    budget: Budget,
) -> Any:
    """``obj`` with tensor records replaced by arrays: charge every array and the largest
    storage first, then read one storage at a time and build the arrays that view it."""
    records: dict[int, TensorRecord] = {}
    walk(obj, lambda r: records.setdefault(id(r), r))
    groups: dict[str, list[TensorRecord]] = {}
    for r in records.values():
        groups.setdefault(r.storage.key, []).append(r)
    out_bytes = sum(r.nbytes for r in records.values())
    largest = max((storages[k].nbytes for k in groups), default=0)
    budget.charge(
        out_bytes + largest,
        f"{len(records)} tensor(s) ({mib(out_bytes)}) and the largest storage ({mib(largest)})",
    )
    arrays: dict[int, np.ndarray] = {}
    for key, group in groups.items():
        raw = read_storage(storages[key])
        for r in group:
            arrays[id(r)] = to_array(r, raw)
        del raw
    return walk(obj, lambda r: arrays[id(r)])


# ---- zip -----------------------------------------------------------------------------


def _zip_directory_size(f: BinaryIO, size: int) -> int:
    """Bytes of the central directory, from the end record (zip64 too), before zipfile
    parses it: ZipFile makes one object per entry, so its cost is charged first."""
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        raise CheckpointError("corrupt zip: no end of central directory")
    (cd_size,) = struct.unpack_from("<I", tail, pos + 12)
    if cd_size == 0xFFFFFFFF and pos >= 20 and tail[pos - 20 : pos - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack_from("<Q", tail, pos - 12)
        f.seek(min(offset, size))
        record = f.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            raise CheckpointError("corrupt zip: bad zip64 end of central directory")
        (cd_size,) = struct.unpack_from("<Q", record, 40)
    return cd_size


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> bytearray:
    """An entry's bytes, exactly its declared size (charged by the caller), read in chunks
    so that a deflate stream cannot inflate past it."""
    if info.flag_bits & 1:
        raise CheckpointError(f"zip entry {info.filename!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(
            f"zip entry {info.filename!r} uses compression method {info.compress_type}; "
            "only stored and deflated entries are read"
        )
    stored_ok = info.compress_type != zipfile.ZIP_STORED or info.compress_size == info.file_size
    if not stored_ok or info.header_offset + info.compress_size > file_size:
        raise CheckpointError(f"zip entry {info.filename!r} declares sizes past the file")
    buf = bytearray(info.file_size)
    view, pos = memoryview(buf), 0
    with zf.open(info) as entry:
        while pos < len(buf):
            chunk = entry.read(min(_CHUNK, len(buf) - pos))
            if not chunk:
                raise CheckpointError(f"truncated zip entry {info.filename!r}")
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        entry.read(1)  # reaches the end: zipfile checks the CRC there
    return buf


def _load_zip(f: BinaryIO, size: int, budget: Budget) -> Any:
    cd_size = _zip_directory_size(f, size)
    budget.charge(cd_size + cd_size // 46 * ZIP_ENTRY_COST, "the zip's directory")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        by_name = {i.filename: i for i in infos}
        if len(by_name) != len(infos):
            raise CheckpointError("zip checkpoint has duplicate entry names")
        pkl = [n for n in by_name if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise CheckpointError(f"zip checkpoint has {len(pkl)} data.pkl entries, not 1")
        prefix = pkl[0][: -len("data.pkl")]
        order = by_name.get(prefix + "byteorder")
        if order is not None:
            if order.file_size > 16 or _read_entry(zf, order, size) != b"little":
                raise CheckpointError("big-endian checkpoints are not supported")
        budget.charge(by_name[pkl[0]].file_size, "data.pkl")
        data = _read_entry(zf, by_name[pkl[0]], size)
        storages: dict[str, StorageRecord] = {}
        obj = unpickle(Stream(io.BytesIO(data), len(data), budget), storages)
        del data

        def read_storage(s: StorageRecord) -> np.ndarray:
            info = by_name.get(f"{prefix}data/{s.key}")
            if info is None:
                raise CheckpointError(f"storage {s.key!r} is missing from the file")
            if info.file_size != s.nbytes:
                raise CheckpointError(
                    f"storage {s.key!r}: {info.file_size} bytes in the zip, the pickle says "
                    f"{s.numel} elements of {s.type_name} ({s.nbytes} bytes)"
                )
            return np.frombuffer(_read_entry(zf, info, size), dtype=s.dtype)

        return _materialize(obj, storages, read_storage, budget)


# ---- legacy --------------------------------------------------------------------------


def _load_legacy(f: BinaryIO, size: int, budget: Budget) -> Any:
    stream = Stream(f, size, budget)
    header: dict[str, StorageRecord] = {}
    if unpickle(stream, header) != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (wrong magic number)")
    version = unpickle(stream, header)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"unsupported legacy protocol version {show(version)}")
    sys_info = unpickle(stream, header)
    if not (type(sys_info) is dict and sys_info.get("little_endian") is True) or header:
        raise CheckpointError("big-endian or malformed legacy header")
    storages: dict[str, StorageRecord] = {}
    obj = unpickle(stream, storages)
    keys = unpickle(stream, header)
    if type(keys) is not list or header:
        raise CheckpointError("legacy checkpoint: storage key list missing")
    offsets: dict[str, int] = {}
    for key in keys:
        key = key.decode("ascii", "replace") if type(key) is bytes else key
        if type(key) is not str or key not in storages or key in offsets:
            raise CheckpointError(f"storage {show(key)} listed but not named once by the pickle")
        s = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"truncated file: storage {key!r} header missing")
        (numel,) = struct.unpack("<q", head)
        if numel != s.numel:
            raise CheckpointError(
                f"storage {key!r}: {numel} elements in the file, the pickle says {s.numel}"
            )
        offsets[key] = f.tell()
        if offsets[key] + s.nbytes > size:
            raise CheckpointError(
                f"truncated file: storage {key!r} needs {s.nbytes} bytes, "
                f"{size - offsets[key]} are left"
            )
        f.seek(s.nbytes, io.SEEK_CUR)
    missing = sorted(set(storages) - set(offsets))
    if missing:
        raise CheckpointError(f"storages {', '.join(missing[:5])} are missing from the file")

    def read_storage(s: StorageRecord) -> np.ndarray:
        f.seek(offsets[s.key])
        buf = bytearray(s.nbytes)
        if f.readinto(buf) != len(buf):
            raise CheckpointError(f"truncated file: storage {s.key!r}")
        return np.frombuffer(buf, dtype=s.dtype)

    return _materialize(obj, storages, read_storage, budget)


# ---- the API -------------------------------------------------------------------------


def file_format(head: bytes, size: int) -> str:
    """``"zip"``, ``"legacy"`` or ``"safetensors"`` from a file's first 9+ bytes."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if safetensors.looks_like(head, size):
        return "safetensors"
    if head[:1] == b"\x80":
        return "legacy"
    raise CheckpointError(
        f"not a PyTorch or safetensors file (starts with {show(head[:8])}); neither a zip, "
        "a pickle, nor an 8-byte header length followed by '{'"
    )


def load_checkpoint(path: str | os.PathLike, *, max_bytes: int | None = None) -> Any:
    """The object saved in a ``torch.save`` or safetensors file, tensors as numpy arrays.

    ``max_bytes`` bounds what the load allocates (default: 64 MiB + 4x the file size).
    Raises :class:`CheckpointError` for a refused global or opcode, a tensor outside its
    storage, a truncated or corrupt file, an unknown layout or an over-budget file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        budget = Budget.for_file(size, max_bytes)
        try:
            kind = file_format(f.read(16), size)
            f.seek(0)
            if kind == "safetensors":
                return safetensors.read(f, size, budget)[0]
            return _load_zip(f, size, budget) if kind == "zip" else _load_legacy(f, size, budget)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            zlib.error,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
            struct.error,
            OverflowError,
        ) as e:
            raise CheckpointError(f"{path}: corrupt or truncated file: {str(e)[:200]}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    )


def load_state_dict(
    path: str | os.PathLike, *, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """``{name: array}`` from a ``.pth`` or ``.safetensors`` file, without torch.

    A checkpoint that wraps the state dict as ``{"state_dict": ...}`` or ``{"model": ...}``
    is unwrapped; a ``module.`` prefix on every key (``DataParallel``) is removed.
    """
    obj = load_checkpoint(path, max_bytes=max_bytes)
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
    "file_format",
    "load_checkpoint",
    "load_state_dict",
]
