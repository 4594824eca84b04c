"""Two processes on localhost (gloo CPU collectives, 4 simulated devices each) train to the
same parameters as one process with 8 devices and the same global batch."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import test_train_fakedata as fd
from test_train_loop import _restore

from camjax import train

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import test_train_fakedata as fd
fd.install()
from camjax.train import train_and_evaluate
c = fd.config(4, sys.argv[4])
c.distributed.coordinator_address = "127.0.0.1:" + sys.argv[2]
c.distributed.num_processes = 2
c.distributed.process_id = int(sys.argv[3])
r = train_and_evaluate(c, sys.argv[1])
import jax
print("DEVICES", jax.device_count(), jax.local_device_count(), "EVAL", r["eval_accuracy"])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ~90 s on 2 shared cores (three JAX start-ups and compiles); shard_map passes the same
# test (run with parallel="shard_map"), kept to one runner for the suite's time budget.
@pytest.mark.slow
def test_two_processes_match_one_process_with_8_devices(tmp_path, fake_data, parallel="pmap"):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=HERE))
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
    )
    port, multi = str(_free_port()), str(tmp_path / "multi")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), multi, port, str(i), parallel],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "DEVICES 8 4" in out, out[-3000:]

    single = str(tmp_path / "single")
    result = train.train_and_evaluate(fd.config(4, parallel), single)
    config = fd.config(4, parallel)
    (_, (a, _)), (_, (b, _)) = _restore(multi, config), _restore(single, config)
    assert int(a.step) == int(b.step) == 4
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        # Same math; the cross-process all-reduce may sum in another order.
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    # Evaluation counts from both processes' halves of the split add up to the same number.
    assert f"EVAL {result['eval_accuracy']}" in outs[0]
