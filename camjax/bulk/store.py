"""The output folder of an extraction: manifest, shards, atomic files, resume state.

Layout (``out/``)::

    manifest.json                what made the records (settings), the inputs' count and
                                 fingerprint, the shard size; ``complete`` once all shards are
    part-00000.npz               arrays of the shard's images (see ``camjax.bulk.reader``)
    part-00000.skipped.tsv       unreadable inputs of the shard: path <TAB> reason (escaped)
    part-00000.jsonl             one record per image; written last: the shard's commit mark
    overlays/part-00000/*.png    with overlays
    skipped.txt                  every shard's skipped lines, once the run is complete

Shard ``j`` holds inputs ``[j * shard_size, (j + 1) * shard_size)`` of the ordered input
list. Every file is written to a hidden temporary name and renamed into place, so a
killed run leaves whole files or none; a shard counts as done when its ``.jsonl`` exists
(written after its ``.npz``, skipped list and overlays). A rerun of the same command
redoes only the shards that are not done. Files are created with mode ``0666`` minus the
umask, as any other program's outputs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from camjax.files.atomic import atomic_write

FORMAT = "camjax-extract/1"
MANIFEST = "manifest.json"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class OutputMismatch(ValueError):
    """``--out`` holds an extraction made differently (another model, method, input list...)."""


def escape_tsv(text: str) -> str:
    """Backslash-escape ``\\``, tab, newline and carriage return, so one line is one row."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape_tsv(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def inputs_fingerprint(keys: Sequence[str]) -> str:
    """sha256 over the ordered input list (one key per line, newlines escaped)."""
    h = hashlib.sha256()
    for key in keys:
        h.update(escape_tsv(key).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def shard_name(j: int) -> str:
    return f"part-{j:05d}"


class Store:
    """One output folder (module docstring)."""

    def __init__(self, out_dir: str):
        self.out = os.fspath(out_dir)

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def manifest(self) -> dict | None:
        try:
            with open(self.path(MANIFEST), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def open(self, manifest: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Start or resume: write ``manifest`` into a new folder, or check it against the
        one there. Refuses (:class:`OutputMismatch`) a folder made differently, or one that
        holds files but no manifest (an earlier run of another kind), unless ``overwrite``,
        which removes what an extraction writes there first."""
        os.makedirs(self.out, exist_ok=True)
        if overwrite:
            self.clear()
        old = self.manifest()
        if old is None:
            leftovers = [n for n in os.listdir(self.out) if not n.startswith(".")]
            if leftovers:
                raise OutputMismatch(
                    f"--out {self.out} is not empty and holds no {MANIFEST} (found "
                    f"{', '.join(sorted(leftovers)[:3])}{', ...' if len(leftovers) > 3 else ''});"
                    " use an empty folder, or --overwrite to replace its extraction files"
                )
            atomic_write(self.path(MANIFEST), json.dumps(dict(manifest), indent=1) + "\n")
            return
        diffs = _differences(old, manifest)
        if diffs:
            raise OutputMismatch(
                f"--out {self.out} holds an extraction made with other settings ("
                + "; ".join(diffs)
                + "); use another --out, or --overwrite to replace it"
            )

    def clear(self) -> None:
        """Remove what an extraction writes (manifest, shards, overlays, old-style files)."""
        names = [MANIFEST, "skipped.txt", "predictions.jsonl", "cams.npz"]
        for name in names:
            if os.path.lexists(self.path(name)):
                os.unlink(self.path(name))
        for path in glob.glob(self.path("part-*")) + glob.glob(self.path(".*.tmp-*")):
            os.unlink(path)
        if os.path.isdir(self.path("overlays")):
            shutil.rmtree(self.path("overlays"))

    def done(self, j: int) -> bool:
        return os.path.exists(self.path(shard_name(j) + ".jsonl"))

    def begin_shard(self, j: int) -> None:
        """Remove a shard's partial files (of a killed run) before it is redone."""
        name = shard_name(j)
        for path in glob.glob(self.path(f".{name}.*.tmp-*")) + glob.glob(self.path(name + ".*")):
            os.unlink(path)
        if os.path.isdir(self.path("overlays", name)):
            shutil.rmtree(self.path("overlays", name))

    def commit_shard(
        self,
        j: int,
        records: Iterable[str],
        arrays: Mapping[str, Any] | None,
        skipped: Sequence[tuple[str, str]],
    ) -> None:
        """Write the shard's npz, skipped list and (last) records."""
        import numpy as np

        name = shard_name(j)
        if arrays is not None:
            atomic_write(self.path(name + ".npz"), lambda f: np.savez(f, **arrays))
        if skipped:
            atomic_write(self.path(name + ".skipped.tsv"), format_skipped(skipped))
        atomic_write(self.path(name + ".jsonl"), "".join(r + "\n" for r in records))

    def finish(self, num_shards: int, manifest: Mapping[str, Any]) -> dict | None:
        """If every shard is done: write ``skipped.txt`` and mark the manifest complete."""
        if not all(self.done(j) for j in range(num_shards)):
            return None
        lines, num_records = [], 0
        for j in range(num_shards):
            sk = self.path(shard_name(j) + ".skipped.tsv")
            if os.path.exists(sk):
                with open(sk, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
                    lines.append(f.read())
            with open(self.path(shard_name(j) + ".jsonl"), "rb") as f:
                num_records += sum(1 for _ in f)
        atomic_write(self.path("skipped.txt"), "".join(lines))
        final = {**manifest, "complete": True, "num_records": num_records}
        atomic_write(self.path(MANIFEST), json.dumps(final, indent=1) + "\n")
        return final


def format_skipped(skipped: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{escape_tsv(p)}\t{escape_tsv(why)}\n" for p, why in skipped)


# Keys of the manifest that do not say how records were made (filled in at the end).
_RESULT_KEYS = ("complete", "num_records")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    if old.get("format") != new.get("format"):
        return [f"format {old.get('format')!r}, this run {new.get('format')!r}"]
    for section in ("settings", "inputs"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key in ("camjax_version",):
                continue
            if a.get(key) != b.get(key):
                out.append(f"{key} {a.get(key)!r}, this run {b.get(key)!r}")
    for key in sorted(set(old) | set(new)):
        if key in ("settings", "inputs", "format", *_RESULT_KEYS):
            continue
        if old.get(key) != new.get(key):
            out.append(f"{key} {old.get(key)!r}, this run {new.get(key)!r}")
    return out


__all__ = [
    "FORMAT",
    "MANIFEST",
    "OutputMismatch",
    "Store",
    "atomic_write",
    "escape_tsv",
    "format_skipped",
    "inputs_fingerprint",
    "shard_name",
    "unescape_tsv",
]
