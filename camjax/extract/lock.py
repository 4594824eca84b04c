"""One extraction at a time per output folder: an ``flock`` held for the whole run.

A run of one process holds ``out/.camjax-extract.lock`` exclusively. The processes of one
multi-process run (each doing its own shards) hold it shared, and each holds
``.camjax-extract.lock.<process index>`` exclusively, so a single-process run and a
multi-process run exclude each other, and two multi-process runs collide on process 0.
A second run does not wait: it stops with :class:`OutputBusy` naming the holder's pid.
The kernel drops the lock when its holder dies (even by SIGKILL), so no stale lock
needs clearing; the lock files are removed when the run ends.
"""

from __future__ import annotations

import fcntl
import os
import socket

LOCK = ".camjax-extract.lock"


class OutputBusy(RuntimeError):
    """Another extraction is writing to the same output folder."""


def _lock_file(path: str, mode: int) -> int | None:
    """An fd of ``path`` locked with ``mode`` (``LOCK_SH``/``LOCK_EX``); ``None`` when
    another holds a conflicting lock. Retries when the file was removed and made anew
    between our open and our lock (a finishing run removes it while holding it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(paths: list[str]) -> str:
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(200).strip()
        except OSError:
            continue
        if text:
            return text
    return "pid unknown"


class OutputLock:
    """Context manager: hold ``out``'s extraction lock (module docstring) or raise
    :class:`OutputBusy` at once."""

    def __init__(self, out_dir: str, process_index: int = 0, process_count: int = 1):
        self.out = os.fspath(out_dir)
        self.pi, self.pc = int(process_index), int(process_count)
        self._held: list[tuple[str, int]] = []

    def __enter__(self) -> OutputLock:
        os.makedirs(self.out, exist_ok=True)
        main = os.path.join(self.out, LOCK)
        wanted = [(main, fcntl.LOCK_EX)]
        if self.pc > 1:
            wanted = [(main, fcntl.LOCK_SH), (f"{main}.{self.pi}", fcntl.LOCK_EX)]
        me = f"pid {os.getpid()} on {socket.gethostname()}"
        for path, mode in wanted:
            fd = _lock_file(path, mode)
            if fd is None:
                others = [path, main] + [f"{main}.{i}" for i in range(4)]
                self.release()
                raise OutputBusy(
                    f"another extraction is writing to {self.out} ({_holder(others)}); wait "
                    "for it to finish or stop it, or use another --out"
                )
            self._held.append((path, fd))
            os.ftruncate(fd, 0)  # who holds it, for the message above
            os.pwrite(fd, f"{me}\n".encode(), 0)
        return self

    def release(self) -> None:
        """Remove the lock files we may remove, then unlock."""
        for path, fd in reversed(self._held):
            try:  # a shared lock file is removed by the last holder only
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(path)
            except (BlockingIOError, FileNotFoundError):
                pass
            finally:
                os.close(fd)
        self._held = []

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK", "OutputBusy", "OutputLock"]
