"""Periodic evaluation during training: classification accuracy and MaxBoxAccV2.

MaxBoxAccV2 (Choe et al., CVPR 2020) is computed on the CAM of the ground-truth class
("GT-known"), upsampled to the input size and min-max normalised, by the streaming
``camjax.evaluators.BoxEvaluator``.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from camjax import cam, models


def _gt_maps(features: jax.Array, kernel: jax.Array, labels: jax.Array, size: int) -> jax.Array:
    maps = cam.class_activation_maps(features, kernel, labels[:, None])[:, 0]
    return cam.normalize(cam.upsample(maps, size))


_gt_maps = jax.jit(_gt_maps, static_argnums=3)


def _box_evaluator(config: ml_collections.ConfigDict):
    if importlib.util.find_spec("camjax.boxes") is None:
        return None  # the box module has not landed: accuracy only
    try:
        from camjax.evaluators import BoxEvaluator
        from camjax.metrics import default_cam_thresholds
    except ImportError:  # the evaluators module is optional for training
        return None
    return BoxEvaluator(
        cam_thresholds=default_cam_thresholds(1.0 / config.eval.cam_threshold_steps),
        iou_thresholds=tuple(config.eval.iou_thresholds),
    )


def _centre(batch: int, height: int, width: int) -> np.ndarray:
    from camjax.evaluation.centre import centre_map

    return np.broadcast_to(centre_map(height, width), (batch, height, width))


def _all_processes(evaluator):
    """The evaluator with every process's counts merged in (a no-op on one process)."""
    if jax.process_count() == 1:
        return evaluator
    gathered = multihost_utils.process_allgather(evaluator.state)
    evaluator.state = jax.tree.map(lambda x: x[0], gathered)
    for p in range(1, jax.process_count()):
        other = copy.copy(evaluator)
        other.state = jax.tree.map(lambda x, p=p: x[p], gathered)
        evaluator.merge(other)
    return evaluator


def evaluate(
    config: ml_collections.ConfigDict, model, runner, dstate: Any, info: Any
) -> dict[str, float]:
    """``{"accuracy", "MaxBoxAccV2", "centre_MaxBoxAccV2"}`` on ``config.data.eval_split``.

    Accuracy is a fraction, the box numbers percent (as ``BoxEvaluator`` reports them);
    ``centre_*`` is the class-agnostic centre-Gaussian baseline.

    Each process evaluates its own examples; counts are summed over processes. Padded
    examples (``valid == False``) are left out.
    """
    from camjax import data

    variables = {"params": dstate.params}
    if dstate.batch_stats:
        variables["batch_stats"] = dstate.batch_stats
    host_vars = runner.host_state(dstate).variables()
    kernel, _ = models.classifier(host_vars)
    boxes = _box_evaluator(config)
    centre = _box_evaluator(config)  # the class-agnostic centre-Gaussian baseline
    correct = total = 0
    it = data.eval_iterator(
        config.data,
        config.data.eval_split,
        global_batch_size=config.eval.batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    for i, batch in enumerate(it):
        if config.eval.max_batches and i >= config.eval.max_batches:
            break
        valid = np.asarray(batch["valid"], bool)
        out = runner.eval_step(variables, runner.put_batch({"image": batch["image"]}))
        logits = np.asarray(out["logits"])
        correct += int(((logits.argmax(-1) == batch["label"]) & valid).sum())
        total += int(valid.sum())
        if boxes is not None and "bboxes" in batch:
            maps = _gt_maps(
                jnp.asarray(out["features"]),
                kernel,
                jnp.asarray(batch["label"]),
                int(batch["image"].shape[1]),
            )
            boxes.update(maps, batch["bboxes"], batch["bbox_valid"], valid)
            centre.update(_centre(*maps.shape), batch["bboxes"], batch["bbox_valid"], valid)
    counts = np.array([correct, total], np.int64)
    if jax.process_count() > 1:
        counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
    result = {"accuracy": float(counts[0]) / max(int(counts[1]), 1)}
    if boxes is not None and total:
        # BoxEvaluator reports percent.
        result["MaxBoxAccV2"] = float(_all_processes(boxes).result()["max_box_acc_v2"])
        result["centre_MaxBoxAccV2"] = float(_all_processes(centre).result()["max_box_acc_v2"])
    return result
