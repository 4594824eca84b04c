"""Trained or pretrained networks, ready for evaluation and extraction.

``load_trained`` rebuilds a network from what its checkpoint says about it
(:class:`~camjax.checkpoints.network.NetworkSpec`) and reads only its variables,
verified against their checksums: no optimizer, no data set. A config, when given, is
checked against the checkpoint (a different model is refused, naming what differs).
``load_named`` gives a pretrained network by registry name (offline weights).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from camjax.checkpoints import store as ckpts
from camjax.checkpoints.network import NetworkSpec, cpu_tuned

VARIABLE_PARTS = ("params", "batch_stats")


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
    spec: NetworkSpec | None = None

    def eval_batches(
        self,
        split: str,
        batch_size: int,
        *,
        max_examples: int | None = None,
        ten_crop: bool = False,
    ) -> Iterator[dict[str, np.ndarray]]:
        """The whole evaluation split as padded batches (``valid`` marks real examples;
        with ``max_examples``, only the first that many).

        Every process reads the whole split (``process_count=1``): the counts here are
        not summed across hosts, so a per-host shard would give silently partial numbers.
        """
        from camjax import data

        batches = data.eval_iterator(
            self.config.data, split, global_batch_size=batch_size, process_index=0,
            process_count=1, **({"size": 256, "original": True} if ten_crop else {}),
        )  # fmt: skip
        return batches if max_examples is None else _first(batches, max_examples)

    def score_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """``images [B, H, W, 3] -> softmax probabilities [B, C]`` (numpy in, numpy out;
        jitted): what the faithfulness metrics re-run on perturbed images."""
        import jax

        model, variables = self.model, self.variables
        probs = jax.jit(lambda x: jax.nn.softmax(model.apply(variables, x, train=False)[0]))
        return lambda images: np.asarray(probs(np.asarray(images, np.float32)))


def _first(
    batches: Iterable[dict[str, np.ndarray]], max_examples: int
) -> Iterator[dict[str, np.ndarray]]:
    """``batches`` with only their first ``max_examples`` valid rows still valid; stops at
    the first batch left with none."""
    seen = 0
    for batch in batches:
        valid = np.asarray(batch["valid"], bool).copy()
        keep = np.cumsum(valid) + seen <= max_examples
        batch = {**batch, "valid": valid & keep}
        seen += int(batch["valid"].sum())
        if not batch["valid"].any():
            return
        yield batch


def network_spec(meta: Mapping[str, Any], where: str = "checkpoint") -> NetworkSpec:
    """The network a checkpoint's metadata describes.

    Checkpoints of camjax 0.1.0 have no ``network`` entry: it is rebuilt from their saved
    config and fingerprint, with class names ``"0".."C-1"`` (their data set is not read).
    """
    import ml_collections

    if "network" in meta:
        try:
            return NetworkSpec.from_json(meta["network"])
        except (TypeError, ValueError, KeyError) as e:
            raise ckpts.CorruptCheckpointError(f"{where}: bad network description ({e})") from e
    try:
        config = ml_collections.ConfigDict(json.loads(meta["config"]))
        num_classes = int(meta["fingerprint"]["num_classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise ckpts.CorruptCheckpointError(f"{where}: metadata lacks the network ({e})") from e
    return NetworkSpec.from_config(config, num_classes)


def check_config(spec: NetworkSpec, config: Any, where: str) -> None:
    """Refuse a config whose network differs from the checkpoint's, naming the fields."""
    given = NetworkSpec.from_config(config, spec.num_classes)
    diffs = [
        f"{f}: checkpoint has {getattr(spec, f)!r}, config gives {getattr(given, f)!r}"
        for f in ("model", "kwargs", "image_size", "normalization", "dtype")
        if _norm(getattr(spec, f)) != _norm(getattr(given, f))
    ]
    if diffs:
        raise ckpts.CheckpointMismatchError(
            f"{where} was written for a different model/config ({'; '.join(diffs)})"
        )


def _norm(x: Any) -> Any:
    return json.loads(json.dumps(x))  # tuples and lists compare equal


def load_trained(
    config: Any = None, workdir: str | None = None, *, checkpoint: str | None = None
) -> Loaded:
    """The network trained in ``workdir`` with the weights of ``checkpoint`` (default:
    the newest intact checkpoint there; an unreadable newer one is reported and skipped).

    ``config``: checked against the checkpoint's network; ``None`` takes the config saved
    in the checkpoint (``Loaded.config``). Raises ``FileNotFoundError`` when there is no
    checkpoint, :class:`~camjax.checkpoints.store.CorruptCheckpointError` when the
    one asked for (or every one) is damaged.
    """
    import jax
    import ml_collections

    if checkpoint is None and workdir is None:
        raise ValueError("load_trained needs a workdir or a checkpoint")
    directory, step = ckpts.split_path(checkpoint or workdir)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"no checkpoint directory at {directory}; train first "
            "(python train.py --config ... --workdir ...) or pass --checkpoint"
        )
    if step is None:
        if not ckpts.steps(directory):
            raise FileNotFoundError(
                f"no checkpoint in {directory}; train first or pass --checkpoint"
            )
        found = ckpts.latest_readable(directory, VARIABLE_PARTS)
        if found is None:
            raise ckpts.CorruptCheckpointError(f"every checkpoint in {directory} is damaged")
        step, meta, arrays = found
    else:
        if step not in ckpts.steps(directory):
            raise FileNotFoundError(f"no checkpoint step {step} in {directory}")
        meta = ckpts.read_meta(directory, step)
        arrays = ckpts.restore_arrays(directory, step, VARIABLE_PARTS, meta=meta)
    where = f"checkpoint step {step} in {directory}"
    spec = network_spec(meta, where)
    if config is None:
        config = ml_collections.ConfigDict(json.loads(meta["config"]))
    else:
        check_config(spec, config, where)
    if "params" not in arrays:
        raise ckpts.CorruptCheckpointError(f"{where}: the state holds no params")
    variables = {k: arrays[k] for k in VARIABLE_PARTS if arrays.get(k)}
    expected = spec.param_shapes()
    same = jax.tree.structure(expected) == jax.tree.structure(variables)
    if not same or any(
        a.shape != b.shape
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(variables), strict=True)
    ):
        raise ckpts.CheckpointMismatchError(
            f"{where}: its arrays do not fit model {spec.model!r} with {dict(spec.kwargs)}"
        )
    return Loaded(
        model=cpu_tuned(spec.build(), config),
        variables=jax.device_put(variables),
        class_names=[display_name(n) for n in spec.class_names],
        image_size=spec.image_size,
        normalization=spec.normalization,
        checkpoint_name=f"{directory} step {step}",
        config=config,
        spec=spec,
    )


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
