"""Checkpoints: Orbax ``CheckpointManager`` saves, verified restores, a fingerprint.

Each checkpoint step holds two items: ``state`` (the :class:`TrainState` pytree,
``StandardSave``) and ``meta`` (JSON: the fingerprint, the config, the network
description that evaluation rebuilds the model from, and a SHA-256 of every array,
computed here from the host arrays). Orbax writes a step into a temporary directory and
renames it into place only when every file is written, so a run killed during a save
leaves the previous steps and at most a ``*.orbax-checkpoint-tmp-*`` directory, which
is never listed and is removed on the next start.

Restoring reads the newest step and checks its arrays against their digests; a step
that cannot be read or fails the check is reported by step, moved aside to
``<workdir>/checkpoints_corrupt/`` (never deleted) and the next older one is used.
A save that fails in Orbax's background thread stops training at the next save (or at
the end) with :class:`CheckpointSaveError` instead of being lost.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from camjax.checkpoints import store as ckpts
from camjax.checkpoints.network import NetworkSpec, params_sha
from camjax.checkpoints.store import CheckpointMismatchError, CorruptCheckpointError

__all__ = [
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "Checkpointer",
    "CorruptCheckpointError",
    "fingerprint",
]


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (possibly in the background)."""


def fingerprint(
    config: ml_collections.ConfigDict,
    num_classes: int,
    params: Any,
    data_identity: dict | None = None,
) -> dict:
    """Everything that gives the saved state its meaning; a resume must agree on all of it.

    The model (name, kwargs, compute dtype, parameter shapes: ``params_sha`` hashes
    every leaf's path, shape and dtype, so any architecture change is caught), the
    classes, the data set and its generator config, the input size and normalization,
    and the run's seed. For data sets that a name does not identify (``folder``,
    ``tfds``), ``data_identity`` (``DatasetInfo.identity``) adds ``data_classes`` (names
    in label order), ``data_split`` (the split rule: layout, training split,
    ``val_fraction``, ``split_seed``; TFDS feature keys) and ``data_files`` (a hash of
    the sorted file list relative to the root, so a moved folder still resumes; TFDS:
    full name, version, examples per split). Learning rate, step count, batch size,
    logging and data paths may change between runs (e.g. to train longer).
    """
    shapes = config.data.get("shapes")
    out = {
        "model": str(config.model.name),
        "model_kwargs": json.loads(config.model.kwargs.to_json()),
        "num_classes": int(num_classes),
        "params_sha": params_sha(params),
        "dtype": str(config.model.dtype),
        "dataset": str(config.data.name),
        "dataset_config": (
            json.loads(shapes.to_json())
            if shapes is not None and config.data.name == "camjax_shapes"
            else None
        ),
        "image_size": int(config.data.image_size),
        "normalization": str(config.data.normalization),
        "seed": int(config.seed),
    }
    out.update(json.loads(json.dumps(data_identity or {})))  # as the metadata reads back
    return out


def _shown(value: Any, other: Any) -> str:
    """``value`` for a one-line message: long lists by their first difference."""
    if isinstance(value, list) and isinstance(other, list) and len(repr(value)) > 120:
        i = next((k for k, (a, b) in enumerate(zip(value, other, strict=False)) if a != b), None)
        at = f", [{i}] = {value[i]!r}" if i is not None else ""
        return f"{len(value)} entries{at}"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_fingerprint(saved: dict, expected: dict, where: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming every field that differs.

    Fields a checkpoint does not record (those of camjax 0.1.0 lack all but the model's;
    those written before issue #24 lack the ``data_*`` fields) are not compared: such a
    checkpoint resumes with a warning that its data cannot be checked.
    """
    diffs = [
        f"{k}: checkpoint has {_shown(saved[k], expected[k])}, "
        f"config gives {_shown(expected[k], saved[k])}"
        for k in expected
        if k in saved and saved[k] != expected[k]
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"the {where} was written for a different model/config/data ({'; '.join(diffs)}). "
            "Use another --workdir or the config and data it was trained with."
        )
    unchecked = sorted(k for k in expected if k.startswith("data_") and k not in saved)
    if unchecked:
        print(
            f"warning: the {where} predates data fingerprints ({', '.join(unchecked)} not "
            "recorded): resuming without checking that the data set is the same",
            file=sys.stderr,
            flush=True,
        )


def _into(target: Any, arrays: dict, where: str) -> Any:
    """``target``'s tree with the restored ``arrays`` as leaves (numpy), checked."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(target)
    flat = {ckpts.leaf_key(p): x for p, x in jax.tree_util.tree_flatten_with_path(arrays)[0]}
    want = [ckpts.leaf_key(p) for p, _ in paths]
    missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
    if missing or extra:
        raise CheckpointMismatchError(
            f"the {where} holds a different training state than this config builds (another "
            f"optimizer?): missing {missing[:3]}, unexpected {extra[:3]}"
        )
    leaves = []
    for key, (_, t) in zip(want, paths, strict=True):
        x = flat[key]
        if tuple(x.shape) != tuple(np.shape(t)) or x.dtype != np.asarray(t).dtype:
            raise CheckpointMismatchError(
                f"the {where} holds {key} as {x.dtype}{list(x.shape)}, this config builds "
                f"{np.asarray(t).dtype}{list(np.shape(t))}"
            )
        leaves.append(x)
    return jax.tree_util.tree_unflatten(treedef, leaves)


class Checkpointer:
    """Periodic saves, keep the last ``max_to_keep``, restore the newest intact one."""

    def __init__(
        self,
        directory: str,
        expected: dict,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        network: NetworkSpec | None = None,
    ):
        if int(max_to_keep) < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        # Orbax needs absolute paths: a relative one fails in its background thread.
        self.directory = os.path.abspath(str(directory))
        self.expected = expected
        self.network = network
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(max_to_keep),
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )
        # Orbax removes the leftovers of an interrupted save in a background thread.
        # Waiting here makes start-up deterministic: that thread can no longer race with
        # the caller's own file-system work (it did with TFDS's mocked file system).
        await_cleanup = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_cleanup is not None:  # private in orbax 0.12; absent elsewhere
            await_cleanup()
        self._pending: int | None = None  # the step whose async save may still fail

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def saved_meta(self, step: int) -> dict:
        return ckpts.read_meta(self.directory, step)

    def _where(self, step: int) -> str:
        return f"checkpoint step {step} in {self.directory}"

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, int] | None:
        """``(state, step)``: ``step``, or the newest intact step; ``None`` if there is none.

        ``target`` gives the tree structure, shapes and dtypes (its values are unused);
        the state comes back as numpy arrays. A fingerprint that differs raises
        :class:`CheckpointMismatchError` before any array is read. Without ``step``, a
        damaged newest step is reported, moved aside and the next older one used; with
        ``step``, damage raises :class:`CorruptCheckpointError`.
        """
        candidates = [step] if step is not None else list(reversed(ckpts.steps(self.directory)))
        for s in candidates:
            where = self._where(s)
            try:
                meta = ckpts.read_meta(self.directory, s)
                check_fingerprint(meta.get("fingerprint", {}), self.expected, where)
                arrays = ckpts.restore_arrays(self.directory, s, meta=meta)
                return _into(target, arrays, where), s
            except CorruptCheckpointError as e:
                if step is not None:
                    raise
                self._move_aside(s, e)
        return None

    def _move_aside(self, step: int, error: Exception) -> None:
        aside = os.path.join(os.path.dirname(self.directory), "checkpoints_corrupt")
        dest = os.path.join(aside, str(step))
        if jax.process_index() == 0:  # one process moves; the others skip it all the same
            os.makedirs(aside, exist_ok=True)
            n = 1
            while os.path.exists(dest):
                n += 1
                dest = os.path.join(aside, f"{step}.{n}")
            try:
                shutil.move(os.path.join(self.directory, str(step)), dest)
            except FileNotFoundError:
                pass
            self.manager.reload()
        print(
            f"warning: {error}; moved it to {dest} and trying an older checkpoint",
            file=sys.stderr,
            flush=True,
        )

    def _error(self, step: int | None, e: Exception) -> CheckpointSaveError:
        earlier = ""
        if self._pending is not None and self._pending != step:
            earlier = f" (or the background save of step {self._pending})"
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return CheckpointSaveError(
            f"saving checkpoint step {step}{earlier} in {self.directory} failed: "
            f"{type(e).__name__}: {text}"
        )

    def check(self) -> None:
        """Raise :class:`CheckpointSaveError` if an earlier background save failed."""
        try:
            self.manager.check_for_errors()
        except Exception as e:
            raise self._error(self._pending, e) from e

    def save(
        self,
        step: int,
        state: Any,
        config: ml_collections.ConfigDict,
        extra: dict | None = None,
    ) -> bool:
        """Save the host ``state`` (numpy leaves) as ``step``, with its digests (and
        ``extra`` metadata entries, e.g. the divergence guard's)."""
        from camjax.train.step import replicate_global

        self.check()
        meta = {
            "fingerprint": self.expected,
            "step": int(step),
            "config": config.to_json(),
            "checksums": ckpts.digests(state),
        }
        if self.network is not None:
            meta["network"] = self.network.to_json()
        meta.update(extra or {})
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(replicate_global(state)), meta=ocp.args.JsonSave(meta)
        )
        try:
            saved = self.manager.save(step, args=args)
        except Exception as e:  # Orbax raises a failed background save at the next save
            raise self._error(step, e) from e
        self._pending = step
        return saved

    def wait(self) -> None:
        """Block until the pending save is written; raise if it failed."""
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:
            raise self._error(self._pending, e) from e

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()
