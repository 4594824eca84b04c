"""Periodic evaluation during training, through the one evaluation loop.

The network runs on every local device (the runner's collective-free eval step); the
CAMs of the top-k classes and of the ground-truth class are computed from its features
by the maps -> boxes pipeline (:func:`camjax.localize.localize_features`: the maps in
one program, their boxes on the host after it), so that no program with collectives
ever waits on a host callback (the box kernels are host callbacks on CPU). Then
:func:`camjax.evaluation.runner.evaluate_stream` feeds the metrics named in
``config.eval.train_metrics`` (default MaxBoxAccV2; Choe et al., CVPR 2020) for CAM and
the centre baseline, with counts summed over processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from camjax import models
from camjax.evaluation.runner import evaluate_stream
from camjax.localize import LocalizeSpec, localize_features
from camjax.metrics import registry

TRAIN_METRICS = ("max_box_acc_v2",)


def predictor(
    runner, dstate: Any, top_k: int, threshold: float = 0.2
) -> Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """``predict("cam", batch)`` with this process's rows of ``dstate``'s network."""
    spec = LocalizeSpec(top_k=top_k, threshold=threshold)
    variables = {"params": dstate.params}
    if dstate.batch_stats:
        variables["batch_stats"] = dstate.batch_stats
    kernel, _ = models.classifier(runner.host_state(dstate).variables())
    kernel = jnp.asarray(kernel, jnp.float32)

    def predict(method: str, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if method != "cam":
            raise ValueError(f"training evaluates CAM only, not {method!r}")
        out = runner.eval_step(variables, runner.put_batch({"image": batch["image"]}))
        logits = np.asarray(out["logits"])
        labels = np.where(np.asarray(batch["valid"], bool), batch["label"], 0).astype(np.int32)
        images = np.asarray(batch["image"])
        finite = np.isfinite(images).all(axis=tuple(range(1, images.ndim)))
        hw = tuple(int(s) for s in images.shape[1:3])
        res = localize_features(out["features"], kernel, out["logits"], finite, labels, hw, spec)
        return {**res, "logits": logits}

    return predict


def eval_batches(config: ml_collections.ConfigDict):
    """This process's batches of ``config.data.eval_split`` (at most
    ``config.eval.max_batches``; 0: all)."""
    from camjax import data

    it = data.eval_iterator(
        config.data,
        config.data.eval_split,
        global_batch_size=config.eval.batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    for i, batch in enumerate(it):
        if config.eval.max_batches and i >= config.eval.max_batches:
            return
        yield batch


def evaluate(
    config: ml_collections.ConfigDict, model, runner, dstate: Any, info: Any
) -> dict[str, float]:
    """``{"accuracy", <metric>, "centre_<metric>"}`` on ``config.data.eval_split``.

    Accuracy is a fraction; each metric in ``config.eval.train_metrics`` gives its first
    report column (e.g. ``MaxBoxAccV2``, percent) for CAM and the centre baseline. Each
    process evaluates its own examples; counts are summed over processes. Padded
    examples (``valid == False``) are left out.
    """
    from camjax.metrics import default_cam_thresholds

    del model  # the runner holds the compiled network
    names = registry.check_names(config.eval.get("train_metrics", TRAIN_METRICS))
    results, _ = evaluate_stream(
        eval_batches(config),
        predictor(runner, dstate, top_k=min(5, int(info.num_classes))),
        methods=("cam",),
        metrics=names,
        has_masks=bool(getattr(info, "has_masks", False)),
        cam_thresholds=default_cam_thresholds(1.0 / config.eval.cam_threshold_steps),
        options=config.eval.to_dict(),
        num_figure_examples=0,
        all_processes=True,
    )
    out = {"accuracy": 1.0 - results["classification"]["top1_error"] / 100.0}
    for method, prefix in (("cam", ""), ("centre", "centre_")):
        for name, r in results["methods"][method].items():
            key, header = registry.get(name).columns[0]
            if isinstance(r.get(key), int | float):
                out[prefix + header.replace(" ", "_")] = float(r[key])
    return out
