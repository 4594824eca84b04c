"""Streaming evaluation of CAM methods: every number of the paper's tables, one pass.

``evaluate(config, workdir, ...)`` restores a trained model, streams the evaluation split
through ``camjax.extract`` once per method, accumulates the metrics batch by batch
(nothing but counts and a handful of figure examples is kept, so 50,000 ImageNet images
never sit in memory), then writes ``report.json``, ``report.md`` and the PNGs.

``evaluate_stream(batches, predict, ...)`` is the same loop on any iterator of batches and
any ``predict(method, batch)``: tests drive it with hand-made maps and known answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camjax.evaluation.centre import centre_maps
from camjax.evaluation.scores import MethodScores, classification_counts

Predict = Callable[[str, Mapping[str, np.ndarray]], Mapping[str, Any]]

NUM_FIGURE_EXAMPLES = 8


def _np(x: Any) -> np.ndarray:
    return np.asarray(x)


class _FigureSample:
    """The first few valid examples of the stream, kept for the figures only."""

    def __init__(self, limit: int):
        self.limit = limit
        self.items: list[dict[str, Any]] = []

    def add(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        valid = _np(batch.get("valid", np.ones(len(batch["label"]), bool)))
        for i in np.flatnonzero(valid):
            if len(self.items) >= self.limit:
                return
            self.items.append(
                {
                    "image": _np(batch["image"][i]),
                    "label": int(batch["label"][i]),
                    "bboxes": _np(batch["bboxes"][i]),
                    "bbox_valid": _np(batch["bbox_valid"][i]),
                    "class_ids": _np(out["class_ids"][i]),
                    "probs": _np(out["probs"][i]),
                    "maps": _np(out["maps"][i]),
                    "boxes": _np(out["boxes"][i]),
                }
            )


def evaluate_stream(
    batches: Iterable[Mapping[str, Any]],
    predict: Predict,
    *,
    methods: Sequence[str] = ("cam",),
    include_centre: bool = True,
    has_masks: bool = False,
    cam_thresholds: np.ndarray | None = None,
    num_figure_examples: int = NUM_FIGURE_EXAMPLES,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Evaluate ``methods`` over ``batches``; return ``(results, figure_samples)``.

    Each batch is a dict as ``camjax.data.eval_iterator`` yields (``image``, ``label``,
    ``bboxes``, ``bbox_valid``, ``valid``, and ``mask`` when ``has_masks``).
    ``predict(method, batch)`` returns what ``camjax.extract(..., gt_labels=label)``
    returns: ``logits``, ``class_ids [B,k]``, ``probs``, ``maps [B,k,H,W]``, ``boxes``,
    ``gt_maps [B,1,H,W]``, ``gt_boxes [B,1,4]``. Classification error comes from the
    first method's logits (every method shares the network). The centre baseline uses the
    same predicted classes with :func:`camjax.evaluation.centre.centre_maps`.
    ``cam_thresholds``: the MaxBoxAcc/PxAP grid (default 0.00..0.99, step 0.01).
    """
    from camjax.boxes import HEURISTIC_LOOSE, HEURISTIC_TIGHT

    # The centre baseline borrows a network method's classes, so it always comes last.
    names = [m for m in dict.fromkeys(methods) if m != "centre"]
    if not names:
        raise ValueError("evaluate_stream needs at least one method besides 'centre'")
    names += ["centre"] if include_centre or "centre" in methods else []
    scores: dict[str, MethodScores] = {}
    samples = {m: _FigureSample(num_figure_examples) for m in names}
    top1 = top5 = count = 0
    t0 = time.perf_counter()
    for batch in batches:
        labels = _np(batch["label"])
        valid = _np(batch.get("valid", np.ones(len(labels), bool))).astype(bool)
        first = None
        for m in names:
            if m == "centre":
                out = _centre_prediction(first, batch)
            else:
                out = predict(m, batch)
            if first is None:
                first = out
                c1, c5, n = classification_counts(_np(out["logits"]), labels, valid)
                top1, top5, count = top1 + c1, top5 + c5, count + n
            if m not in scores:
                hw = tuple(_np(batch["image"]).shape[1:3])
                scores[m] = MethodScores(has_masks, cam_thresholds, hw)
            scores[m].update(batch, out)
            samples[m].add(batch, out)
        if progress is not None:
            progress(int(valid.sum()))
    if count == 0:
        raise ValueError("the evaluation stream held no valid example")
    seconds = time.perf_counter() - t0
    results = {
        "num_examples": count,
        "classification": {
            "top1_error": 100.0 * (1 - top1 / count),
            "top5_error": 100.0 * (1 - top5 / count),
        },
        "methods": {m: scores[m].result() for m in names},
        "heuristic_thresholds": {"tight": HEURISTIC_TIGHT, "loose": HEURISTIC_LOOSE},
        "timing": {"seconds": seconds, "images_per_s": count / max(seconds, 1e-9)},
    }
    return results, {m: s.items for m, s in samples.items()}


def _centre_prediction(first: Mapping[str, Any], batch: Mapping[str, Any]) -> dict:
    from camjax.boxes import largest_component_box

    class_ids = _np(first["class_ids"])
    b, k = class_ids.shape
    h, w = _np(batch["image"]).shape[1:3]
    maps = centre_maps(b, k, h, w)
    box = _np(largest_component_box(np.ascontiguousarray(maps[:1, :1]), 0.2))[0, 0]
    return {
        "logits": first["logits"],
        "class_ids": class_ids,
        "probs": first["probs"],
        "maps": maps,
        "boxes": np.broadcast_to(box, (b, k, 4)),
        "gt_maps": centre_maps(b, 1, h, w),
        "gt_boxes": np.broadcast_to(box, (b, 1, 4)),
    }


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

    Writes ``report.json``, ``report.md`` and the PNGs into ``workdir``, prints the
    tables when ``verbose``, and returns the results dict (see ``report.py``). In a
    multi-process run every process evaluates the whole split on its own devices and
    only process 0 writes (simple and correct; not faster than one host).
    """
    import jax

    from camjax.evaluation.figures import write_figures
    from camjax.evaluation.loading import load_trained
    from camjax.evaluation.report import format_markdown, write_report
    from camjax.metrics import default_cam_thresholds
    from camjax.saliency import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(sorted(METHODS))}")
    loaded = load_trained(config, workdir, checkpoint=checkpoint)
    info = loaded.info
    bs = int(batch_size or config.eval.batch_size)
    batches = loaded.eval_batches(split, bs, max_examples=max_examples)
    predict = loaded.predictor(top_k=min(5, info.num_classes))
    results, samples = evaluate_stream(
        batches,
        predict,
        methods=methods,
        has_masks=bool(info.has_masks),
        cam_thresholds=default_cam_thresholds(1.0 / int(config.eval.cam_threshold_steps)),
        progress=_printer(info.num_examples.get(split), verbose),
    )
    results.update(
        model=config.model.name,
        dataset=config.data.name,
        split=split,
        image_size=int(config.data.image_size),
        checkpoint=loaded.checkpoint_name,
        has_masks=bool(info.has_masks),
        units="percent",
    )
    if jax.process_index() != 0:  # every process computed the same numbers; one writes
        return results
    if figures:
        results["figures"] = write_figures(workdir, results, samples, loaded.class_names)
    write_report(results, workdir)
    if verbose:
        print("\n" + format_markdown(results))
        print(f"report: {os.path.join(workdir, 'report.md')}")
    return results


def _printer(total: int | None, verbose: bool) -> Callable[[int], None] | None:
    if not verbose:
        return None
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        of = f"/{total}" if total else ""
        print(f"\revaluated {done[0]}{of} images", end="", flush=True)

    return progress
