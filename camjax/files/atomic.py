"""Files written whole or not at all: a hidden temporary file beside the target, fsync,
rename. Created with mode 0666 minus the umask, like any other program's output."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from typing import IO, Any

# A full disk, a full quota, a file size limit (RLIMIT_FSIZE): no room for the file.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class NoRoom(OSError):
    """No room to write ``filename`` (disk full, quota, file size limit); nothing of it
    was left behind. Its ``str`` is one line naming the path."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def atomic_write(path: str, write: Callable[[IO[bytes]], Any] | bytes | str) -> None:
    """Write ``path`` through a hidden temporary file + rename (mode 0666 minus umask).

    ``write``: the bytes/text, or a function that writes into the open binary file.
    Raises :class:`NoRoom` (an ``OSError``) when the disk, quota or file size limit is
    full; the temporary file is removed and ``path`` is untouched.
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{secrets.token_hex(4)}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "xb") as f:  # "x": created here, with the umask applied
            if isinstance(write, str):
                f.write(write.encode("utf-8", "surrogateescape"))
            elif isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = no_room(e)
        if full is not None and not isinstance(e, NoRoom):
            raise NoRoom(full, os.strerror(full), path) from e
        raise


def no_room(e: BaseException | None) -> int | None:
    """The errno of a full disk in ``e`` or what it was raised while handling (a writer
    such as ``zipfile`` may fail again while closing after the first ``ENOSPC``)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            return e.errno
        e, seen = e.__context__, seen + 1
    return None
