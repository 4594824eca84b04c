"""What the entry points show on stderr: one line per user error, no start-up noise.

TensorFlow prints its oneDNN lines only on CPUs with AVX-512 unless TF_ENABLE_ONEDNN_OPTS=1
asks for oneDNN everywhere: the tests set it, so they see those lines on either CPU kind.
"""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines as TensorFlow 2.21 writes them to file descriptor 2 on an AVX-512 CPU.
NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796626607.146195    7701 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off "
    "errors from different computation orders. To turn them off, set the environment "
    "variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796626607.373760    7701 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.\n"
)


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_filter_drops_start_up_lines_written_to_the_descriptor_and_keeps_the_rest():
    out = _run(
        f"""
        import os, sys
        from camjax.cli.console import start_up_lines_filtered
        with start_up_lines_filtered():
            os.write(2, {NOISE.encode()!r})
            os.write(2, b"E0000 00:00:1.0 1 x.cc:1] a real error\\n")
            print("from python", file=sys.stderr)
            os.write(2, {NOISE.encode()!r})
        os.write(2, b"after\\n")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "E0000 00:00:1.0 1 x.cc:1] a real error",
        "from python",
        "after",
    ]


def test_filter_restores_the_descriptor_when_the_block_raises():
    out = _run(
        """
        import os
        from camjax.cli.console import start_up_lines_filtered
        try:
            with start_up_lines_filtered():
                os.write(2, b"kept\\n")
                raise ImportError("boom")
        except ImportError:
            pass
        os.write(2, b"restored\\n")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["kept", "restored"]


def test_tensorflow_loads_without_a_line_on_stderr():
    # The real library, with oneDNN asked for: the lines it prints are the AVX-512 ones.
    out = _run(
        """
        import sys
        from camjax.cli.console import load_tensorflow
        load_tensorflow()
        import tensorflow as tf
        print(tf.constant([1.0, 2.0]).numpy().sum())
        """,
        env={"TF_ENABLE_ONEDNN_OPTS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.strip() == "3.0"


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, message",
    [
        # Fails after TensorFlow has loaded (the evaluation needs it): its lines are dropped.
        (["evaluate.py", "--workdir", "{tmp}/none"], "no checkpoint directory"),
        (["-m", "camjax", "evaluate", "--workdir", "{tmp}/none", "--methods", "x"],
         "unknown --methods x"),
        (["-m", "camjax", "extract", "{tmp}/none.jpg", "--out", "{tmp}/o",
          "--model", "efficientnet_lite0_gap"], "no such file"),
    ],
)  # fmt: skip
def test_entry_point_errors_are_one_line_on_either_cpu_kind(tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0].endswith(".py"):
        argv[0] = os.path.join(ROOT, argv[0])
    out = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"},
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_config_validation_does_not_import_tensorflow():
    out = _run(
        f"""
        import sys
        from camjax.config import load_checked
        try:
            load_checked({os.path.join(ROOT, "configs", "default.py")!r},
                         {{"model.kwargs.x": 1}})
        except ValueError as e:
            print("refused:", e)
        print("tensorflow" in sys.modules)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "refused: model 'tiny_gap' rejects model.kwargs" in out.stdout
    assert out.stdout.splitlines()[-1] == "False"


CLOSED_LOOP = """
import asyncio, sys
from camjax.cli import console
if {quiet}:
    console.quiet_logging()
loop = asyncio.new_event_loop()
loop.close()


class LateCallback:
    # What TensorStore does when a read finishes after Orbax closed its loop: report to the
    # closed loop from a place where the error cannot propagate (here a finaliser).
    def __del__(self):
        loop.call_soon_threadsafe(print)


class OtherError:
    def __del__(self):
        raise RuntimeError("something else")


LateCallback()
OtherError()
print("done")
"""


def test_the_closed_loop_report_and_only_it_is_dropped():
    loud = _run(CLOSED_LOOP.format(quiet=False))
    quiet = _run(CLOSED_LOOP.format(quiet=True))
    for out in (loud, quiet):
        assert out.returncode == 0 and out.stdout == "done\n", out.stderr
        assert "RuntimeError: something else" in out.stderr  # other reports stay
    assert "Event loop is closed" in loud.stderr
    assert "Event loop is closed" not in quiet.stderr, quiet.stderr


DAMAGED_RESTORE = """
import os, sys, time
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from camjax.cli import console
console.quiet_logging()
path = epath.Path({path!r})
tree = {{f"a{{i}}": np.arange(20000, dtype=np.float32) * i for i in range(24)}}
handler = ocp.PyTreeCheckpointHandler()
handler.save(path, args=ocp.args.PyTreeSave(tree))
handler.close()
files = [os.path.join(b, n) for b, _, ns in os.walk(path) for n in ns]
biggest = max(files, key=os.path.getsize)
os.truncate(biggest, os.path.getsize(biggest) // 2)
handler = ocp.PyTreeCheckpointHandler()
try:
    handler.restore(path, args=ocp.args.PyTreeRestore(tree))
except Exception as e:
    print("unreadable:", type(e).__name__)
time.sleep(1)  # the late callbacks, where there are any, arrive after the failure
"""


def test_a_damaged_checkpoint_read_prints_nothing_past_its_error(tmp_path):
    # The real case; how many reads are still in flight when the first fails varies, so
    # the deterministic check is the test above.
    out = _run(DAMAGED_RESTORE.format(path=str(tmp_path / "a")))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("unreadable:"), out.stdout
    assert "Event loop is closed" not in out.stderr, out.stderr[-2000:]


def test_known_library_notices_are_dropped_and_other_warnings_kept():
    out = _run(
        """
        import logging
        from camjax.cli import console
        console.quiet_logging()
        log = logging.getLogger("absl")
        log.warning("Variant folder %s has no dataset_info.json", "/d/shapes/1.2.0")
        log.warning("Metadata file does not exist: %s", "/c/4/state/_CHECKPOINT_METADATA")
        log.warning("Using custom data configuration s64")
        log.warning("a real warning about %s", "something")
        """
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith("a real warning about something"), lines
