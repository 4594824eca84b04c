"""Files written whole or not at all: a hidden temporary file beside the target, fsync,
rename. Created with mode 0666 minus the umask, like any other program's output."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import IO, Any


def atomic_write(path: str, write: Callable[[IO[bytes]], Any] | bytes | str) -> None:
    """Write ``path`` through a hidden temporary file + rename (mode 0666 minus umask).

    ``write``: the bytes/text, or a function that writes into the open binary file.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{secrets.token_hex(4)}")
    try:
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
