"""Reading camjax checkpoints without the trainer: steps, metadata, verified arrays.

A checkpoint step ``<dir>/<step>/`` holds two Orbax items: ``state`` (the training state
pytree: ``step``, ``params``, ``batch_stats``, ``opt_state``) and ``meta`` (JSON: the
fingerprint, the config, the :class:`~camjax.checkpoints.network.NetworkSpec` and a
SHA-256 of every array, written by ``camjax.train.checkpoint``). Restoring verifies each
array read against its digest, so a flipped bit or a truncated file is reported by step
instead of loading silently. Checkpoints written before the digests existed (camjax
0.1.0) load unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

META_FILE = os.path.join("meta", "metadata")  # where Orbax's JsonSave puts the JSON
STATE_DIR = "state"


class CorruptCheckpointError(ValueError):
    """A checkpoint step cannot be read, or its arrays differ from their digests."""


class CheckpointMismatchError(ValueError):
    """The checkpoint belongs to a different model/config than the one given."""


def leaf_key(path: Iterable[Any]) -> str:
    """``"params/head/classifier/kernel"``: a path that reads the same for a dataclass
    state (attribute keys) and the nested dicts Orbax restores (dict keys)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def digest(x: Any) -> str:
    """``"float32:(3, 4):<sha256 of the bytes>"`` of one host array."""
    a = np.ascontiguousarray(np.asarray(x))
    return f"{a.dtype}:{tuple(a.shape)}:{hashlib.sha256(a.tobytes()).hexdigest()}"


def digests(tree: Any) -> dict[str, str]:
    """:func:`digest` of every leaf, keyed by :func:`leaf_key`."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {leaf_key(p): digest(x) for p, x in leaves}


def steps(directory: str) -> list[int]:
    """The finished checkpoint steps in ``directory``, ascending (temporary dirs skipped)."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def split_path(path: str) -> tuple[str, int | None]:
    """``.../checkpoints/600`` -> (``.../checkpoints``, 600); a workdir -> its checkpoints."""
    path = os.path.abspath(path)
    base = os.path.basename(path.rstrip("/"))
    if base.isdigit():
        return os.path.dirname(path), int(base)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return os.path.join(path, "checkpoints"), None
    return path, None


def read_meta(directory: str, step: int) -> dict[str, Any]:
    """The ``meta`` JSON of ``step``; :class:`CorruptCheckpointError` naming the step."""
    path = os.path.join(directory, str(step), META_FILE)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(
            f"checkpoint step {step} in {directory}: unreadable metadata ({_short(e)})"
        ) from e
    if not isinstance(meta, dict):
        raise CorruptCheckpointError(f"checkpoint step {step} in {directory}: metadata is not JSON")
    return meta


def _short(e: BaseException) -> str:
    line = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {line[:200]}"


def restore_arrays(
    directory: str, step: int, parts: Iterable[str] | None = None, *, meta: dict | None = None
) -> dict[str, Any]:
    """The ``state`` item of ``step`` as nested dicts of numpy arrays, verified.

    ``parts``: top-level entries to read where present (e.g. ``("params",
    "batch_stats")``; default all).
    Every array read is checked against the SHA-256 in the step's metadata when it has
    them. Any failure (missing or truncated files, bad metadata, digest mismatch) raises
    :class:`CorruptCheckpointError` naming the step and the first problem.
    """
    import orbax.checkpoint as ocp
    from etils import epath

    directory = os.path.abspath(directory)  # Orbax refuses relative paths
    meta = read_meta(directory, step) if meta is None else meta
    path = os.path.join(directory, str(step), STATE_DIR)
    where = f"checkpoint step {step} in {directory}"
    # The item's own handler, not a Checkpointer: a Checkpointer looks for the step-level
    # _CHECKPOINT_METADATA inside the item folder and warns on every read.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        tree = dict(handler.metadata(epath.Path(path)).tree)
        if parts is not None:  # the entries asked for that the state has
            tree = {p: tree[p] for p in parts if p in tree}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        arrays = handler.restore(
            epath.Path(path),
            args=ocp.args.PyTreeRestore(
                item=tree, restore_args=restore_args, partial_restore=parts is not None
            ),
        )
    except CorruptCheckpointError:
        raise
    except Exception as e:  # TensorStore, JSON, structure errors: all mean "unreadable"
        raise CorruptCheckpointError(f"{where}: unreadable state ({_short(e)})") from e
    finally:
        handler.close()
    verify(arrays, meta.get("checksums"), where)
    return arrays


def verify(arrays: Any, checksums: Mapping[str, str] | None, where: str) -> None:
    """Compare every leaf of ``arrays`` with ``checksums`` (no-op without them)."""
    if checksums is None:
        return
    got = digests(arrays)
    bad = [k for k, v in got.items() if checksums.get(k) != v]
    if bad:
        raise CorruptCheckpointError(
            f"{where}: {len(bad)} array(s) differ from the checksums written with them "
            f"(first: {bad[0]}); the files were changed or damaged after saving"
        )


def latest_readable(
    directory: str, parts: Iterable[str] | None = None, *, on_corrupt=None
) -> tuple[int, dict, dict] | None:
    """``(step, meta, arrays)`` of the newest step that reads and verifies, or ``None``.

    Each step that fails is passed to ``on_corrupt(step, error)`` (default: a warning on
    stderr) and the next older one is tried.
    """
    for step in reversed(steps(directory)):
        try:
            meta = read_meta(directory, step)
            return step, meta, restore_arrays(directory, step, parts, meta=meta)
        except CorruptCheckpointError as e:
            (on_corrupt or _warn)(step, e)
    return None


def _warn(step: int, error: Exception) -> None:
    import sys

    print(f"warning: {error}; trying an older checkpoint", file=sys.stderr, flush=True)


def saved_config(path: str) -> Any:
    """The config saved with the newest checkpoint under ``path`` (a workdir, its
    ``checkpoints`` folder or one step), read from the metadata alone (no array); ``None``
    when there is none or it cannot be read (loading then says what is wrong)."""
    import ml_collections

    directory, step = split_path(os.path.abspath(path))
    try:
        found = steps(directory) if step is None else [step]
        meta = read_meta(directory, max(found))
        return ml_collections.ConfigDict(json.loads(meta["config"]))
    except (OSError, ValueError, KeyError, TypeError):  # a damaged checkpoint included
        return None
