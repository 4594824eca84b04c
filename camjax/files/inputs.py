"""What to extract: files, folders, globs, lists of paths, in a fixed order.

:func:`list_inputs` turns command-line items into one ordered list of files, the same
list for the same command and file tree (so that a resumed run and every process of a
multi-process run agree on which image is number ``i``), and a list of entries that
cannot be images, each with the reason:

- a file: kept whatever its name (decoding decides);
- a folder: its files with an image extension (:data:`IMAGE_EXTENSIONS`), sorted; with
  ``recursive=True`` also those of every sub-folder (symbolic links to folders are
  followed once: a link back to a folder already searched is reported, not followed);
- a glob (``*``, ``?``, ``[...]``, ``**`` for any depth): its matching files, sorted;
- a list file (``lists=``): one path per line, relative paths taken from the list's
  folder; blank lines and lines starting with ``#`` are ignored.

Entries with an image extension that are not readable files (a dangling symbolic link, a
link loop, a folder named ``x.jpg``, a socket) are reported in ``skipped``; the same file
named twice (or reached again through a symbolic link) is listed once, at its first
occurrence.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import stat
from collections.abc import Iterable, Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GLOB_CHARS = frozenset("*?[")


@dataclasses.dataclass
class Listing:
    """``entries``: ``(path, None)`` for a file, ``(path, reason)`` for an entry that is
    not one, in extraction order (both count as inputs: a resumed run and every process
    number them the same way)."""

    entries: list[tuple[str, str | None]]

    @property
    def files(self) -> list[str]:
        return [p for p, why in self.entries if why is None]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(p, why) for p, why in self.entries if why is not None]


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def why_not_a_file(path: str) -> str | None:
    """``None`` for a regular file (through links), else why it cannot be read as one."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            return "dangling symbolic link"
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


class _Collector:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str | None]] = []
        self._seen: set[str] = set()

    def add(self, path: str, why: str | None) -> None:
        key = os.path.realpath(path) if why is None else os.path.abspath(path)
        if key not in self._seen:  # the same file by another path (e.g. a link) counts once
            self._seen.add(key)
            self.entries.append((path, why))

    def file(self, path: str) -> None:
        self.add(path, None)

    def skip(self, path: str, why: str) -> None:
        self.add(path, why)

    def entry(self, path: str, *, named: bool) -> None:
        """A path found in a folder or glob (``named``: the user named it directly)."""
        why = why_not_a_file(path)
        if why is None:
            self.file(path)
        elif named or is_image_name(path):
            self.skip(path, why)


def _folder(col: _Collector, root: str, recursive: bool) -> None:
    visited: set[tuple[int, int]] = set()

    def walk(folder: str) -> None:
        st = os.stat(folder)
        visited.add((st.st_dev, st.st_ino))
        try:
            names = sorted(os.listdir(folder))
        except OSError as e:
            col.skip(folder, f"cannot list folder: {e.strerror or e}")
            return
        subfolders = []
        for name in names:
            path = os.path.join(folder, name)
            if recursive and os.path.isdir(path):
                subfolders.append(path)
            elif is_image_name(name):
                col.entry(path, named=False)
        for path in subfolders:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in visited:
                col.skip(path, "symbolic link to a folder already searched (loop), not followed")
                continue
            walk(path)

    walk(root)


def list_inputs(
    items: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    recursive: bool = False,
    lists: Iterable[str | os.PathLike] = (),
) -> Listing:
    """The ordered files named by ``items`` and ``lists`` (module docstring).

    Raises ``FileNotFoundError`` for an item that names nothing (no file, folder or glob
    match) and for a missing list file, so a typo fails before any work starts.
    """
    if isinstance(items, str | os.PathLike):
        items = [items]
    col = _Collector()
    for raw in items:
        item = os.fspath(raw)
        if os.path.isdir(item):
            _folder(col, item, recursive)
        elif os.path.lexists(item):
            col.entry(item, named=True)
        elif _GLOB_CHARS & set(item):
            # Sorted, paths through no symbolic link first: a file also reached through a
            # link (``**`` follows them) keeps its plain path.
            matches = sorted(
                glob.glob(item, recursive=True),
                key=lambda m: (os.path.realpath(m) != os.path.abspath(m), m),
            )
            if not matches:
                raise FileNotFoundError(f"no such file, directory or glob match: {item!r}")
            for m in matches:
                if not os.path.isdir(m):
                    col.entry(m, named=False)
                elif is_image_name(m):
                    col.skip(m, "a directory, not an image file")
        else:
            raise FileNotFoundError(f"no such file, directory or glob match: {item!r}")
    for lst in lists:
        lst = os.fspath(lst)
        if not os.path.isfile(lst):
            raise FileNotFoundError(f"no such list file: {lst!r}")
        base = os.path.dirname(lst)
        with open(lst, encoding="utf-8") as f:
            for line in f:
                path = line.rstrip("\r\n")
                if not path.strip() or path.lstrip().startswith("#"):
                    continue
                path = path if os.path.isabs(path) else os.path.join(base, path)
                col.entry(path, named=True)
    return Listing(col.entries)


__all__ = ["IMAGE_EXTENSIONS", "Listing", "is_image_name", "list_inputs", "why_not_a_file"]
