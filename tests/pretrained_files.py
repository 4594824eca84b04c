"""Hand-made checkpoint files for the reader's tests: raw pickle opcodes, zip and legacy
layouts, deflate bombs, and a loader that runs in a child process under a memory limit.

Imported by the ``test_pretrained_*`` modules (not a test module itself). Nothing here
imports torch, so the child process measures the reader, not torch.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# ---- pickle opcodes (protocol 2, as torch.save writes them) ----------------------------

PROTO = b"\x80\x02"
STOP = b"."
MARK = b"("
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
SETITEM = b"s"
APPEND = b"a"
TUPLE1 = b"\x85"
REDUCE = b"R"
BUILD = b"b"
BINPERSID = b"Q"
NEWFALSE = b"\x89"


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def op_int(i: int) -> bytes:
    if -(2**31) <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    data = i.to_bytes(n, "little", signed=True)
    return (b"\x8a" + bytes([n]) if n < 256 else b"\x8b" + struct.pack("<I", n)) + data


def op_tuple(*items: bytes) -> bytes:
    return MARK + b"".join(items) + b"t"


def op_dict(**items: bytes) -> bytes:
    return EMPTY_DICT + b"".join(op_str(k) + v + SETITEM for k, v in items.items())


def op_storage(key: str, numel: int, storage: str = "FloatStorage", view: bytes = b"") -> bytes:
    """A persistent storage id: ("storage", torch.<storage>, key, "cpu", numel[, view])."""
    fields = [op_str("storage"), op_global("torch", storage), op_str(key), op_str("cpu")]
    return op_tuple(*fields, op_int(numel), *([view] if view else [])) + BINPERSID


def op_tensor(storage: bytes, size, stride, offset: int | bytes = 0) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""
    hooks = op_global("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
    args = op_tuple(
        storage,
        offset if isinstance(offset, bytes) else op_int(offset),
        op_tuple(*map(op_int, size)),
        op_tuple(*map(op_int, stride)),
        NEWFALSE,
        hooks,
    )
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + REDUCE


def state_dict_pickle(tensors: dict[str, bytes]) -> bytes:
    """A pickle of ``{name: tensor}`` from ``op_tensor`` snippets (or any value snippets)."""
    return PROTO + op_dict(**tensors) + STOP


# ---- containers -----------------------------------------------------------------------


def zip_checkpoint(
    path, pkl: bytes, storages: dict[str, bytes], extra: dict[str, bytes] | None = None
) -> None:
    """The zip layout of ``torch.save``: archive/data.pkl, archive/data/<key>, stored."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", b"little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr("archive/version", b"3\n")


def legacy_checkpoint(path, pkl: bytes, storages: list[tuple[str, int, bytes]]) -> None:
    """The legacy layout: magic, version, sys info, object, key list, then per storage an
    int64 element count and its bytes."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
    with open(path, "wb") as f:
        for head in (LEGACY_MAGIC, 1001, sys_info):
            f.write(pickle.dumps(head, protocol=2))
        f.write(pkl)
        f.write(pickle.dumps([k for k, _, _ in storages], protocol=2))
        for _, numel, data in storages:
            f.write(struct.pack("<q", numel) + data)


def deflate_zeros(nbytes: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of ``nbytes`` zero bytes, built in milliseconds: one
    full-flushed block of ``chunk`` zeros (self-contained, byte-aligned) repeated."""
    assert nbytes % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (nbytes // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def raw_zip(path, entries: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip written byte by byte: ``(name, payload, method, file_size, crc)`` per entry,
    ``payload`` already compressed. Lets a test declare sizes zipfile would compute."""
    central, offset = [], 0
    with open(path, "wb") as f:
        for name, payload, method, size, crc in entries:
            n = name.encode()
            fields = (20, 0, method, 0, 0x21, crc, len(payload), size, len(n), 0)
            f.write(b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", *fields) + n + payload)
            central.append(
                b"PK\x01\x02"
                + struct.pack("<HHHHHHIIIHHHHHII", 20, *fields, 0, 0, 0, 0, offset)
                + n
            )
            offset += 30 + len(n) + len(payload)
        cd = b"".join(central)
        f.write(cd)
        f.write(
            b"PK\x05\x06"
            + struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(cd), offset, 0)
        )


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data))


# ---- a load in a child process ----------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, types
    # The reader needs numpy only: skip the camjax package __init__ (jax), so that the
    # memory limit below measures the reader.
    for name in ("camjax", "camjax.pretrained"):
        m = types.ModuleType(name)
        m.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
        sys.modules[name] = m
    from camjax.pretrained import reader

    def vm(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    headroom = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (vm("VmSize:") + headroom, resource.RLIM_INFINITY))
    rss0 = vm("VmRSS:")
    out = {}
    try:
        sd = reader.load_checkpoint(sys.argv[2])
        out["keys"] = sorted(sd) if isinstance(sd, dict) else None
        out["values"] = {k: v.ravel()[:8].astype(float).tolist() for k, v in sd.items()
                         if hasattr(v, "ravel")}
        out["nbytes"] = sum(getattr(v, "nbytes", 0) for v in sd.values())
    except reader.CheckpointError as e:
        out["error"] = str(e)
    except BaseException as e:
        out["raw_error"] = f"{type(e).__name__}: {e}"[:500]
    out["peak_mib"] = (vm("VmHWM:") - rss0) / 2**20
    print(json.dumps(out))
    """
)


def load_in_child(path, headroom_mib: int = 512, timeout: float = 60) -> dict:
    """``reader.load_checkpoint(path)`` in a fresh interpreter whose address space may grow
    by at most ``headroom_mib`` past what the imports took (RLIMIT_AS). Returns a dict:
    ``keys``/``values``/``nbytes`` or ``error`` (CheckpointError) or ``raw_error`` (any
    other exception), ``peak_mib`` (peak RSS growth during the load), and ``returncode``
    and ``stderr`` when the child died (a segfault is returncode -11)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, ROOT, os.fspath(path), str(headroom_mib << 20)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
