"""Test set-up shared by every test module.

Eight simulated CPU devices, so pmap/shard_map paths run on a plain CPU machine; this
must happen before JAX is imported anywhere.
"""

import os
import sys

import pytest

# LLVM's optimisation level 0 for the compiled programs: the suite is dominated by compile
# time (a one-op program takes ~1.5 s to compile at the default level on these CPUs, ~0.3 s
# at 0), and the level changes how fast a program runs, not what it computes. The demo,
# the benchmarks and users run XLA's defaults.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # keep TensorFlow off accelerators

# One persistent compilation cache for the whole run, shared by the xdist workers and the
# subprocesses that tests start (they inherit the environment set here, in the controller,
# before the workers start): the suite compiles the same programs in many processes, and
# on 2 cores compiling is most of its time. A new folder each run, removed at its end; JAX
# keys entries by program, options and version, so a hit is the same compiled program.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="camjax-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture
def fake_data(monkeypatch):
    """``camjax.data`` replaced by the in-memory data set of ``test_train_fakedata`` (no
    TensorFlow), for the training-loop tests."""
    import test_train_fakedata as fd

    import camjax

    monkeypatch.setitem(sys.modules, "camjax.data", fd)
    monkeypatch.setattr(camjax, "data", fd, raising=False)
    return fd
