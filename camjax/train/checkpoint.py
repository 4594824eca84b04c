"""Checkpoints: Orbax ``CheckpointManager`` with a fingerprint of the model they belong to.

Each checkpoint step holds two items: ``state`` (the :class:`TrainState` pytree,
``StandardSave``) and ``meta`` (JSON: the fingerprint and the config). Orbax writes a
step into a temporary directory and renames it into place only when every file is
written (atomic finalisation), so a run killed during a save leaves either the previous
steps only, or a leftover ``*.orbax-checkpoint-tmp-*`` directory that
``all_steps()``/``latest_step()`` never list and that ``cleanup_tmp_directories``
removes on the next start.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The workdir holds a checkpoint of a different model/config."""


def fingerprint(config: ml_collections.ConfigDict, num_classes: int, params: Any) -> dict:
    """What must agree for a checkpoint to be loadable: model, classes, param shapes.

    Learning rate, steps, batch size and data paths may change between runs (e.g. to
    train longer); the architecture may not. ``params_sha`` hashes every leaf's path,
    shape and dtype, so any architecture change is caught even through ``model.kwargs``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    desc = ";".join(f"{jax.tree_util.keystr(p)}:{tuple(x.shape)}:{x.dtype}" for p, x in leaves)
    return {
        "model": str(config.model.name),
        "model_kwargs": json.loads(config.model.kwargs.to_json()),
        "num_classes": int(num_classes),
        "params_sha": hashlib.sha256(desc.encode()).hexdigest()[:16],
    }


def check_fingerprint(saved: dict, expected: dict, directory: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming every field that differs."""
    diffs = [
        f"{k}: checkpoint has {saved.get(k)!r}, config gives {expected[k]!r}"
        for k in expected
        if saved.get(k) != expected[k]
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"the checkpoint in {directory} was written for a different model/config "
            f"({'; '.join(diffs)}). Use another --workdir or the config it was trained with."
        )


class Checkpointer:
    """Periodic saves, keep the last ``max_to_keep``, restore the latest with a check."""

    def __init__(
        self,
        directory: str,
        expected: dict,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
    ):
        self.directory = str(directory)
        self.expected = expected
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
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

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def saved_meta(self, step: int) -> dict:
        args = ocp.args.Composite(meta=ocp.args.JsonRestore())
        return dict(self.manager.restore(step, args=args)["meta"])

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, int] | None:
        """``(state, step)`` from ``step`` (default the latest), or ``None`` if none.

        ``target`` gives the tree structure, shapes, dtypes and shardings to restore into.
        Raises :class:`CheckpointMismatchError` before touching the arrays if the saved
        fingerprint differs from the expected one.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        meta = self.saved_meta(step)
        check_fingerprint(meta.get("fingerprint", {}), self.expected, self.directory)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        return self.manager.restore(step, args=args)["state"], step

    def save(self, step: int, state: Any, config: ml_collections.ConfigDict) -> bool:
        meta = {"fingerprint": self.expected, "step": int(step), "config": config.to_json()}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
