"""The output folder of an extraction: manifest, shards, atomic files, resume state.

Layout (``out/``)::

    manifest.json                what made the records (settings), the inputs' count and
                                 fingerprint, the shard size; once all shards are done:
                                 ``complete``, ``num_records`` and every shard's files with
                                 their sizes and sha256
    part-00000.npz               arrays of the shard's images (see ``camjax.extract.reader``)
    part-00000.skipped.tsv       unreadable inputs of the shard: path <TAB> reason (escaped)
    part-00000.jsonl             one record per image
    part-00000.done.json         the shard's files, sizes and sha256: written last, the
                                 shard's commit mark
    overlays/part-00000/*.png    with overlays
    skipped.txt                  every shard's skipped lines, once the run is complete
    corrupt/part-00000.1/        a finished shard found damaged by a later run, moved aside

Shard ``j`` holds inputs ``[j * shard_size, (j + 1) * shard_size)`` of the ordered input
list. Every file is written to a hidden temporary name and renamed into place, so a
killed run leaves whole files or none; a shard counts as done when its ``.done.json``
exists (written after all its other files). A rerun of the same command checks every
finished shard's files against their recorded sizes and sha256, moves a damaged shard to
``corrupt/`` and redoes it with the shards that are not done. Files are created with mode
``0666`` minus the umask, as any other program's outputs.
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

# /2: shards verified by their .done.json marks (/1 folders are read, never resumed).
FORMAT = "camjax-extract/2"
LEGACY_FORMAT = "camjax-extract/1"
MARK = ".done.json"
CORRUPT = "corrupt"
MANIFEST = "manifest.json"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class OutputMismatch(ValueError):
    """``--out`` holds an extraction made differently (another model, method, input list...)."""


class DamagedOutput(ValueError):
    """A file of an extraction folder is unreadable or not what was written (the message
    names the file)."""


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
        """The manifest, ``None`` if there is none; :class:`DamagedOutput` naming the
        file if it is not one."""
        path = self.path(MANIFEST)
        try:
            with open(path, encoding="utf-8") as f:
                m = json.load(f)
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError included
            raise DamagedOutput(
                f"{path} is not a readable extraction manifest ({_one_line(e)}); move it "
                "away, or use --overwrite to start the extraction anew"
            ) from e
        if not isinstance(m, dict) or not isinstance(m.get("format"), str):
            raise DamagedOutput(
                f"{path} is not an extraction manifest (no format field); move it away, or "
                "use --overwrite to start the extraction anew"
            )
        return m

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
        for folder in ("overlays", CORRUPT):
            if os.path.isdir(self.path(folder)):
                shutil.rmtree(self.path(folder))

    def done(self, j: int) -> bool:
        """Whether shard ``j``'s commit mark exists (not whether its files are intact)."""
        return os.path.exists(self.path(shard_name(j) + MARK))

    def mark(self, j: int) -> dict[str, Any]:
        """Shard ``j``'s commit mark: ``records`` and ``files`` (name relative to the
        folder -> ``[size, sha256]``). :class:`DamagedOutput` if unreadable."""
        path = self.path(shard_name(j) + MARK)
        try:
            with open(path, encoding="utf-8") as f:
                m = json.load(f)
            files = m["files"]
            if not isinstance(m["records"], int) or not all(
                isinstance(v, list) and len(v) == 2 for v in files.values()
            ):
                raise ValueError("bad field types")
        except (ValueError, OSError, KeyError, TypeError, AttributeError) as e:
            raise DamagedOutput(f"{path}: unreadable shard mark ({_one_line(e)})") from e
        return m

    def check(self, j: int) -> str | None:
        """Why finished shard ``j`` is damaged (a file missing, of another size or
        sha256 than recorded, or an unreadable mark); ``None`` when intact. Sizes are
        compared first (no reading), then every file is read once for its sha256."""
        try:
            files = self.mark(j)["files"]
        except DamagedOutput as e:
            return str(e)
        for rel, (size, _) in files.items():
            try:
                have = os.path.getsize(self.path(rel))
            except OSError:
                return f"{self.path(rel)} is missing"
            if have != size:
                return f"{self.path(rel)} has {have} bytes, {size} were written"
        for rel, (_, digest) in files.items():
            if file_sha256(self.path(rel)) != digest:
                return f"{self.path(rel)} differs from what was written (sha256)"
        return None

    def move_aside(self, j: int) -> str:
        """Move shard ``j``'s files (mark first: a kill midway leaves it not done) and
        overlays into a new ``corrupt/part-XXXXX.N/``; returns that folder."""
        name = shard_name(j)
        os.makedirs(self.path(CORRUPT), exist_ok=True)
        n = 1
        while True:
            dest = self.path(CORRUPT, f"{name}.{n}")
            try:
                os.mkdir(dest)
                break
            except FileExistsError:
                n += 1
        mark = self.path(name + MARK)
        paths = [mark] if os.path.lexists(mark) else []
        paths += [p for p in sorted(glob.glob(self.path(name + ".*"))) if p != mark]
        for path in paths:
            os.replace(path, os.path.join(dest, os.path.basename(path)))
        if os.path.isdir(self.path("overlays", name)):
            os.replace(self.path("overlays", name), os.path.join(dest, "overlays"))
        return dest

    def mark_incomplete(self, manifest: Mapping[str, Any]) -> None:
        """Rewrite a complete manifest as not complete (a shard is being redone)."""
        old = self.manifest()
        if old is not None and old.get("complete"):
            atomic_write(self.path(MANIFEST), json.dumps(dict(manifest), indent=1) + "\n")

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
        """Write the shard's npz, skipped list and records, then (last) its mark with
        every file's size and sha256 (overlays, written before, included)."""
        import numpy as np

        name = shard_name(j)
        records = list(records)
        written = []
        if arrays is not None:
            atomic_write(self.path(name + ".npz"), lambda f: np.savez(f, **arrays))
            written.append(name + ".npz")
        if skipped:
            atomic_write(self.path(name + ".skipped.tsv"), format_skipped(skipped))
            written.append(name + ".skipped.tsv")
        atomic_write(self.path(name + ".jsonl"), "".join(r + "\n" for r in records))
        written.append(name + ".jsonl")
        overlays = self.path("overlays", name)
        if os.path.isdir(overlays):
            written += sorted(os.path.join("overlays", name, n) for n in os.listdir(overlays))
        # Read back from the page cache just after writing: cheap, and what is on disk.
        files = {rel: [os.path.getsize(self.path(rel)), file_sha256(self.path(rel))]
                 for rel in written}  # fmt: skip
        mark = {"shard": j, "records": len(records), "files": files}
        atomic_write(self.path(name + MARK), json.dumps(mark) + "\n")

    def finish(self, num_shards: int, manifest: Mapping[str, Any]) -> dict | None:
        """If every shard is done: write ``skipped.txt`` and mark the manifest complete."""
        if not all(self.done(j) for j in range(num_shards)):
            return None
        lines, marks = [], []
        for j in range(num_shards):
            sk = self.path(shard_name(j) + ".skipped.tsv")
            if os.path.exists(sk):
                with open(sk, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
                    lines.append(f.read())
            m = self.mark(j)
            marks.append({"records": m["records"], "files": m["files"]})
        atomic_write(self.path("skipped.txt"), "".join(lines))
        num_records = sum(m["records"] for m in marks)
        final = {**manifest, "complete": True, "num_records": num_records, "shards": marks}
        atomic_write(self.path(MANIFEST), json.dumps(final, indent=1) + "\n")
        return final


def file_sha256(path: str) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def format_skipped(skipped: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{escape_tsv(p)}\t{escape_tsv(why)}\n" for p, why in skipped)


# Keys of the manifest that do not say how records were made (filled in at the end).
_RESULT_KEYS = ("complete", "num_records", "shards")


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
    "CORRUPT",
    "FORMAT",
    "LEGACY_FORMAT",
    "MANIFEST",
    "MARK",
    "DamagedOutput",
    "OutputMismatch",
    "Store",
    "atomic_write",
    "escape_tsv",
    "file_sha256",
    "format_skipped",
    "inputs_fingerprint",
    "shard_name",
    "unescape_tsv",
]
