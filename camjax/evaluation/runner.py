"""The one streaming evaluation loop: every number of the paper's tables, one pass.

``evaluate_stream(batches, predict, ...)`` runs any ``predict(method, batch)`` over any
iterator of batches, feeds the metrics named in ``config.eval.metrics`` (see
:mod:`camjax.metrics.registry`) batch by batch (nothing but counts and a handful of
figure examples is kept, so 50,000 ImageNet images never sit in memory), and merges the
counts of every process. Training's periodic evaluation (``camjax.train.evaluation``)
and ``evaluate.py`` (:func:`evaluate`, which restores a checkpoint and writes
``report.json``, ``report.md`` and the PNGs) both go through it.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camjax.evaluation.centre import centre_prediction
from camjax.metrics import registry

Predict = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, Any]]

NUM_FIGURE_EXAMPLES = 8
# Every built-in metric: the paper's Table 2 and the WSOL protocol of Choe et al.
DEFAULT_METRICS = ("loc_error", "heuristic", "gt_known", "max_box_acc", "max_box_acc_v2", "pxap")


def classification_counts(
    logits: np.ndarray, labels: np.ndarray, valid: np.ndarray
) -> tuple[int, int, int]:
    """``(top-1 right, top-5 right, count)`` over the valid rows of a batch.

    Ties in the logits rank the lower class id first (``argsort`` is stable on ``-z``).
    """
    logits = np.asarray(logits)
    k = min(5, logits.shape[-1])
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    hit = order == np.asarray(labels)[:, None]
    valid = np.asarray(valid, bool)
    return int(hit[:, 0][valid].sum()), int(hit.any(-1)[valid].sum()), int(valid.sum())


class _FigureSample:
    """The first few valid examples of the stream, kept for the figures only."""

    def __init__(self, limit: int):
        self.limit = limit
        self.items: list[dict[str, Any]] = []

    def add(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        if len(self.items) >= self.limit or "bboxes" not in batch:
            return
        valid = np.asarray(batch.get("valid", np.ones(len(batch["label"]), bool)))
        for i in np.flatnonzero(valid)[: self.limit - len(self.items)]:
            self.items.append(
                {
                    "image": np.asarray(batch["image"][i]),
                    "label": int(batch["label"][i]),
                    "bboxes": np.asarray(batch["bboxes"][i]),
                    "bbox_valid": np.asarray(batch["bbox_valid"][i]),
                    "class_ids": np.asarray(out["class_ids"][i]),
                    "probs": np.asarray(out["probs"][i]),
                    "maps": np.asarray(out["maps"][i]),
                    "boxes": np.asarray(out["boxes"][i]),
                }
            )


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in process order (``[obj]`` on one process).

    Pickled, padded to the longest and all-gathered as bytes: two small collectives and
    no host callback, whatever the metric keeps.
    """
    import jax

    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    sizes = sizes.reshape(-1)
    buf = np.zeros(int(sizes.max()), np.uint8)
    buf[: data.size] = data
    everyone = np.asarray(multihost_utils.process_allgather(buf))
    return [pickle.loads(everyone[i, : int(n)].tobytes()) for i, n in enumerate(sizes)]


def evaluate_stream(
    batches: Iterable[Mapping[str, Any]],
    predict: Predict,
    *,
    methods: Sequence[str] = ("cam",),
    metrics: Sequence[str] = DEFAULT_METRICS,
    include_centre: bool = True,
    has_masks: bool = False,
    cam_thresholds: np.ndarray | None = None,
    score_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    options: Mapping[str, Any] | None = None,
    num_figure_examples: int = NUM_FIGURE_EXAMPLES,
    progress: Callable[[int], None] | None = None,
    all_processes: bool = False,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Evaluate ``methods`` over ``batches``; return ``(results, figure_samples)``.

    Each batch is a dict as ``camjax.data.eval_iterator`` yields (``image``, ``label``,
    ``bboxes``, ``bbox_valid``, ``valid``, and ``mask`` when ``has_masks``).
    ``predict(method, batch)`` returns what ``camjax.extract(..., gt_labels=label)``
    returns: ``logits``, ``class_ids [B,k]``, ``probs``, ``maps [B,k,H,W]``, ``boxes``,
    ``gt_maps [B,1,H,W]``, ``gt_boxes [B,1,4]``. Classification error comes from the
    first method's logits (every method shares the network). The centre baseline uses the
    same predicted classes with :func:`camjax.evaluation.centre.centre_maps`.

    ``metrics``: registry names; one metric per name and method, skipping those whose
    ``needs`` the data lacks (no boxes, no masks, no ``score_fn``). Results go to
    ``results["methods"][method][name]``. ``cam_thresholds``: the MaxBoxAcc/PxAP grid
    (default 0.00..0.99, step 0.01). ``all_processes``: each process gave its own share
    of the split; counts are summed over processes (every process gets the totals).
    """
    from camjax.boxes import HEURISTIC_LOOSE, HEURISTIC_TIGHT

    specs = [registry.get(n) for n in dict.fromkeys(registry.check_names(metrics))]
    # The centre baseline borrows a network method's classes, so it always comes last.
    names = [m for m in dict.fromkeys(methods) if m != "centre"]
    if not names:
        raise ValueError("evaluate_stream needs at least one method besides 'centre'")
    names += ["centre"] if include_centre or "centre" in methods else []
    state: dict[str, dict[str, registry.Metric]] | None = None
    samples = {m: _FigureSample(num_figure_examples) for m in names}
    counts = np.zeros(3, np.int64)  # top-1 right, top-5 right, examples
    t0 = time.perf_counter()
    for batch in batches:
        labels = np.asarray(batch["label"])
        valid = np.asarray(batch.get("valid", np.ones(len(labels), bool)), bool)
        hw = tuple(int(s) for s in np.shape(batch["image"])[1:3])
        if state is None:
            ctx = registry.MetricContext(
                image_hw=hw,
                has_masks=has_masks,
                cam_thresholds=cam_thresholds,
                score_fn=score_fn,
                options=dict(options or {}),
            )
            have = {"has_boxes": "bboxes" in batch, "has_masks": has_masks and "mask" in batch}
            used = [
                s for s in specs if registry.available(s, has_score_fn=score_fn is not None, **have)
            ]
            state = {m: {s.name: s.factory(ctx) for s in used} for m in names}
        first = None
        for m in names:
            out = centre_prediction(first, hw) if m == "centre" else predict(m, batch)
            if first is None:
                first = out
                counts += classification_counts(np.asarray(out["logits"]), labels, valid)
            for metric in state[m].values():
                metric.update(batch, out)
            samples[m].add(batch, out)
        if progress is not None:
            progress(int(valid.sum()))
    if all_processes:
        counts, state = _merge_processes(counts, state)
    top1, top5, count = (int(c) for c in counts)
    if count == 0 or not state:
        raise ValueError("the evaluation stream held no valid example")
    seconds = time.perf_counter() - t0
    results = {
        "num_examples": count,
        "classification": {
            "top1_error": 100.0 * (1 - top1 / count),
            "top5_error": 100.0 * (1 - top5 / count),
        },
        "metrics": list(state[names[0]]),
        "methods": {m: {k: v.result() for k, v in state[m].items()} for m in names},
        "heuristic_thresholds": {"tight": HEURISTIC_TIGHT, "loose": HEURISTIC_LOOSE},
        "timing": {"seconds": seconds, "images_per_s": count / max(seconds, 1e-9)},
    }
    return results, {m: s.items for m, s in samples.items()}


def _merge_processes(counts, state):
    everyone = gather_objects((counts, state))
    if len(everyone) == 1:
        return counts, state
    counts = sum(c for c, _ in everyone)
    merged = everyone[0][1]
    for _, other in everyone[1:]:
        if merged is None:
            merged = other
        elif other is not None:
            for m, per_method in merged.items():
                for name, metric in per_method.items():
                    metric.merge(other[m][name])
    return counts, merged


def evaluate(
    config: Any,
    workdir: str,
    *,
    checkpoint: str | None = None,
    split: str = "validation",
    methods: Sequence[str] = ("cam",),
    batch_size: int | None = None,
    max_examples: int | None = None,
    figures: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Evaluate the model trained in ``workdir`` (or ``checkpoint``) on ``split``.

    ``config`` gives the data set and ``config.eval`` (``None``: the config saved in the
    checkpoint). Writes ``report.json``, ``report.md`` and the PNGs into ``workdir``,
    prints the tables when ``verbose``, and returns the results dict. In a multi-process
    run every process evaluates the whole split on its own devices and only process 0
    writes (simple and correct; not faster than one host).
    """
    import jax

    from camjax import data
    from camjax.checkpoints import load_trained
    from camjax.evaluation.figures import write_figures
    from camjax.evaluation.predictor import predictor
    from camjax.evaluation.report import format_markdown, write_report
    from camjax.methods import METHODS
    from camjax.metrics import default_cam_thresholds

    workdir = os.path.abspath(workdir)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(sorted(METHODS))}")
    loaded = load_trained(config, workdir, checkpoint=checkpoint)
    config = loaded.config
    metric_names = registry.check_names(config.eval.get("metrics", DEFAULT_METRICS))
    bs = int(batch_size or config.eval.batch_size)
    # Ten-crop testing (protocols.ten_crop): the 256-side resize with original sizes/boxes.
    ten_crop = bool(config.eval.get("ten_crop", False))
    from camjax.protocols.predict import required

    # The network's side first, then the data's: config goes down the layers once.
    predict = predictor(
        loaded,
        top_k=min(5, len(loaded.class_names)),
        protocols=required(metric_names),
        ten_crop=ten_crop,
    )
    score_fn = loaded.score_fn()
    batches = loaded.eval_batches(split, bs, max_examples=max_examples, ten_crop=ten_crop)
    info = data.info(config.data)
    results, samples = evaluate_stream(
        batches,
        predict,
        methods=methods,
        metrics=metric_names,
        has_masks=bool(info.has_masks),
        cam_thresholds=default_cam_thresholds(1.0 / int(config.eval.cam_threshold_steps)),
        options=config.eval.to_dict(),
        score_fn=score_fn,
        progress=_printer(info.num_examples.get(split), verbose),
    )
    results.update(
        model=config.model.name,
        dataset=config.data.name,
        split=split,
        image_size=int(loaded.image_size),
        checkpoint=loaded.checkpoint_name,
        has_masks=bool(info.has_masks),
        units="percent",
    )
    if jax.process_index() != 0:  # every process computed the same numbers; one writes
        return results
    if figures:
        results["figures"] = write_figures(workdir, results, samples, loaded.class_names)
    # Each evaluation keeps its own copy (never overwritten); the workdir's report.* is
    # the latest one.
    step = _step_name(loaded.checkpoint_name)
    kept = _unique_dir(os.path.join(workdir, "reports", f"{split}-{step}"))
    write_report(results, kept)
    write_report(results, workdir)
    if verbose:
        print("\n" + format_markdown(results))
        print(f"report: {os.path.join(workdir, 'report.md')} (kept in {kept})")
    return results


def _step_name(checkpoint_name: str) -> str:
    tail = str(checkpoint_name).rsplit(" ", 1)[-1]
    return f"step{tail}" if tail.isdigit() else "model"


def _unique_dir(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, ... whichever does not exist yet (created)."""
    candidate, n = path, 1
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{path}-{n}"


def _printer(total: int | None, verbose: bool) -> Callable[[int], None] | None:
    if not verbose:
        return None
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        of = f"/{total}" if total else ""
        print(f"\revaluated {done[0]}{of} images", end="", flush=True)

    return progress
