"""What the command line shows: log levels, TensorFlow's start-up lines, progress bars.

Only the entry points (``camjax train|evaluate|extract|demo``, ``train.py``,
``evaluate.py``) call these, never the library at import: they change process-wide
state (logging levels, environment variables read by TensorFlow, TFDS's progress-bar
switch). With ``verbose`` every one of them leaves things as they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# TensorFlow's C++ start-up lines, written straight to file descriptor 2 when it loads: the
# absl preamble, and INFO lines in glog form (``I0000 00:00:... port.cc:153] oneDNN custom
# operations are on ...`` on CPUs with AVX-512, ``cpu_feature_guard.cc ... This TensorFlow
# binary is optimized ...`` plus its continuation line). TF_CPP_MIN_LOG_LEVEL no longer
# hides the first two in TensorFlow 2.21, so they are filtered by content.
_STARTUP_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|I\d{4} [\d:. ]+\d+ \S+:\d+\] "
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)


def quiet_logging(verbose: bool = False) -> None:
    """Orbax and absl log every save and restore at INFO: WARNING and up only, unless
    ``verbose``; TFDS's notice on each custom builder config is dropped, and so are the
    late TensorStore callbacks of an unreadable checkpoint (see :func:`_closed_loop`)."""
    from absl import logging as absl_logging

    if not verbose and not getattr(sys.unraisablehook, "camjax_quiet", False):
        previous = sys.unraisablehook

        def hook(unraisable) -> None:
            if not _closed_loop(unraisable):
                previous(unraisable)

        hook.camjax_quiet = True
        sys.unraisablehook = hook

    level = logging.INFO if verbose else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        logging.getLogger("absl").addFilter(_not_noise)


def _not_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    # TFDS, on every load of a builder config it did not name itself, and when it starts
    # generating a data set into a new version folder (the embedded camjax_shapes' first run).
    if message.startswith("Using custom data configuration"):
        return False
    if message.startswith("Variant folder") and "has no dataset_info.json" in message:
        return False
    # Orbax, when a checkpoint item is read on its own (the metadata file sits one level up,
    # in the step folder, where camjax's own metadata and checksums are checked instead).
    return not (message.startswith("Metadata file does not exist") and "_CHECKPOINT_" in message)


def _closed_loop(unraisable) -> bool:
    """True for ``RuntimeError: Event loop is closed`` raised in ``call_soon_threadsafe``.

    When one read of a damaged checkpoint fails, Orbax closes its event loop while
    TensorStore's other reads are still in flight; each of them then reports its result to
    the closed loop, and Python prints one traceback per read (dozens), after camjax has
    already named the damaged step. Nothing is lost by dropping them.
    """
    error, tb = unraisable.exc_value, unraisable.exc_traceback
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def start_up_lines_filtered(noise: re.Pattern[bytes] = _STARTUP_NOISE) -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block, then write back every
    line that ``noise`` does not match (C++ libraries write there directly, past
    ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(True) if not noise.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def load_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow (and TFDS) for the input pipelines, quietly unless ``verbose``:
    its start-up lines are dropped, and TFDS's progress bars are off when stderr is not a
    terminal (they would fill a log file with cursor escapes)."""
    if verbose:
        import tensorflow  # noqa: F401
        import tensorflow_datasets  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with start_up_lines_filtered():
        import tensorflow  # noqa: F401
        import tensorflow_datasets as tfds
    if not sys.stderr.isatty():
        tfds.disable_progress_bar()
