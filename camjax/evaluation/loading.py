"""Trained or pretrained networks, ready for evaluation and extraction.

``load_trained`` rebuilds the network of a training config and restores its latest (or a
chosen) checkpoint through the trainer's :class:`camjax.train.checkpoint.Checkpointer`,
which checks the checkpoint's fingerprint against the config before loading anything.
``load_named`` gives a pretrained network by registry name (offline weights).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass
class Loaded:
    """A network with its variables and what is needed to feed it and name its classes."""

    model: Any
    variables: Any
    class_names: list[str]
    image_size: int
    normalization: str
    checkpoint_name: str
    config: Any = None
    info: Any = None

    def eval_batches(
        self, split: str, batch_size: int, *, max_examples: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """The whole evaluation split as padded batches (``valid`` marks real examples).

        Every process reads the whole split (``process_count=1``): the counts here are
        not summed across hosts, so a per-host shard would give silently partial numbers.
        """
        from camjax import data

        seen = 0
        for batch in data.eval_iterator(
            self.config.data, split, global_batch_size=batch_size, process_index=0,
            process_count=1,
        ):  # fmt: skip
            if max_examples is not None:
                valid = np.asarray(batch["valid"], bool).copy()
                keep = np.cumsum(valid) + seen <= max_examples
                batch = {**batch, "valid": valid & keep}
                seen += int(batch["valid"].sum())
                if not batch["valid"].any():
                    return
            yield batch

    def predictor(
        self, top_k: int = 5, threshold: float = 0.2
    ) -> Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
        """``predict(method, batch)``: ``camjax.extract`` with the batch's labels (GT-known)."""
        from camjax.extraction import extract

        def predict(method: str, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            labels = np.asarray(batch["label"], np.int32)
            if "valid" in batch:  # padding rows may carry any label; they are never counted
                labels = np.where(np.asarray(batch["valid"], bool), labels, 0)
            out = extract(
                self.model,
                self.variables,
                batch["image"],
                top_k,
                method=method,
                gt_labels=labels,
                threshold=threshold,
            )
            return {k: np.asarray(v) for k, v in out.items()}

        return predict


def _split_checkpoint_path(path: str) -> tuple[str, int | None]:
    """``.../checkpoints/600`` -> (``.../checkpoints``, 600); a workdir -> its checkpoints."""
    path = os.path.abspath(path)
    base = os.path.basename(path.rstrip("/"))
    if base.isdigit():
        return os.path.dirname(path), int(base)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return os.path.join(path, "checkpoints"), None
    return path, None


def load_trained(config: Any, workdir: str, *, checkpoint: str | None = None) -> Loaded:
    """The network of ``config`` with the weights of ``checkpoint`` (default: the latest
    checkpoint in ``workdir``). Raises ``FileNotFoundError`` when there is none."""
    import jax

    from camjax import data
    from camjax.train import checkpoint as ckpt_lib
    from camjax.train import loop, optimizer
    from camjax.train import state as state_lib

    directory, step = _split_checkpoint_path(checkpoint or workdir)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"no checkpoint directory at {directory}; train first "
            "(python train.py --config ... --workdir ...) or pass --checkpoint"
        )
    info = data.info(config.data)
    model = loop.build_model(config, info.num_classes)
    tx = optimizer.create_optimizer(config.optimizer, config.train.num_steps)
    # The restore target: a fresh state of the right structure. Not loop.initial_state,
    # which would also read config.init_from's weight file that the checkpoint replaces.
    variables = state_lib.init_variables(model, jax.random.key(0), config.data.image_size)
    fresh = state_lib.create_train_state(variables, tx)
    ckpt = ckpt_lib.Checkpointer(
        directory,
        ckpt_lib.fingerprint(config, info.num_classes, fresh.params),
        async_save=False,
    )
    try:
        restored = ckpt.restore(fresh, step)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {directory}; train first or pass --checkpoint")
    state, step = restored
    return Loaded(
        model=model,
        variables=state.variables(),
        class_names=[display_name(n) for n in info.class_names],
        image_size=int(config.data.image_size),
        normalization=str(config.data.normalization),
        checkpoint_name=f"{directory} step {step}",
        config=config,
        info=info,
    )


def config_from_checkpoints(workdir: str) -> Any:
    """The training config saved beside the latest checkpoint in ``workdir``."""
    import ml_collections
    import orbax.checkpoint as ocp

    directory, step = _split_checkpoint_path(workdir)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    finally:
        manager.close()
    return ml_collections.ConfigDict(json.loads(meta["meta"]["config"]))


def display_name(name: str) -> str:
    """``"n01440764<TAB>tench, Tinca tinca"`` -> ``"tench"``; plain names unchanged."""
    return name.split("\t")[-1].split(",")[0].strip() or name


def load_named(name: str) -> Loaded:
    """A pretrained network by registry name (e.g. ``efficientnet_lite0_gap``), offline."""
    from camjax.pretrained import load_pretrained

    model, variables, spec = load_pretrained(name)
    names = spec.class_names() or [str(i) for i in range(spec.num_classes)]
    return Loaded(
        model=model,
        variables=variables,
        class_names=[display_name(n) for n in names],
        image_size=int(spec.image_size),
        normalization=str(spec.normalization),
        checkpoint_name=f"pretrained {name}",
    )
