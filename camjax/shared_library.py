"""Compile a C or C++ source shipped with camjax into a shared library, once.

Libraries are cached under ``$CAMJAX_CACHE_DIR`` (default ``$XDG_CACHE_HOME/camjax`` or
``~/.cache/camjax``), named by a hash of everything that changes the binary: the source
text, the compiler, its flags and a caller's ``key`` (e.g. the CPU's features for
``-march=native``). Each build goes to a temporary file beside the target and is
renamed into place, so concurrent processes (pytest-xdist workers) never load half a
library and a failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def cache_dir() -> Path:
    """The folder compiled libraries are cached in (created on demand)."""
    root = os.environ.get("CAMJAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "camjax"
    )
    return Path(root)


def build(
    source: str,
    name: str,
    compiler: str,
    flags: Sequence[str],
    suffix: str = ".c",
    key: str = "",
    timeout: float = 600,
) -> Path:
    """The path of ``source`` compiled with ``compiler *flags -shared -fPIC``.

    Raises ``RuntimeError`` with the compiler's message when the build fails, and
    ``OSError`` / ``subprocess.SubprocessError`` when the compiler cannot run.
    """
    digest = hashlib.sha256("\0".join([source, compiler, *flags, key]).encode()).hexdigest()[:16]
    folder = cache_dir()
    out = folder / f"{name}-{digest}.so"
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{name}-") as tmp:
        src = Path(tmp) / f"{name}{suffix}"
        src.write_text(source)
        lib = Path(tmp) / "lib.so"
        cmd = [compiler, *flags, "-shared", "-fPIC", str(src), "-o", str(lib)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(lib, out)
    return out
