"""Issue #18 item 11: evaluation on many devices must not deadlock.

A run on 8 simulated CPU devices that evaluates between training steps (pmap steps with
all-reduces, then evaluation with the box kernels' host callbacks), then is started
again after it finished (straight to evaluation), several times in one process. Before
the fix such a restart aborted in an all-reduce rendezvous ("Expected 8 threads to join
the rendezvous, but only 7 of them arrived"). Now no program with collectives runs
while a host callback does: the training state is ready before evaluation starts, the
eval step has no collectives, and maps and boxes are computed in their own programs.
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import test_train_fakedata as fd
fd.install()
from camjax.train import train_and_evaluate
for parallel in ("pmap",):  # shard_map passes too; one runner for the suite's time
    c = fd.config(3, parallel)
    c.train.eval_every = 1
    c.train.checkpoint_every = 1
    c.train.async_checkpoints = True
    wd = sys.argv[1] + "/" + parallel
    first = train_and_evaluate(c, wd)
    evals = {{k: v for k, v in first.items() if k.startswith("eval_")}}
    for _ in range(2):  # finished: straight to evaluation, again and again
        again = train_and_evaluate(c, wd)
        assert {{k: v for k, v in again.items() if k.startswith("eval_")}} == evals, again
    print("OK", parallel, first["eval_accuracy"], flush=True)
"""


# ~25 s on 2 quiet cores (one process, 3 steps with an evaluation after each, 2 restarts).
@pytest.mark.slow
def test_evaluation_on_8_devices_between_steps_and_after_restarts(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=HERE))
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0",
    )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "OK pmap" in out.stdout
    assert "rendezvous" not in out.stderr
