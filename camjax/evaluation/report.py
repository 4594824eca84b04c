"""report.json and report.md: the evaluation's numbers, laid out like the paper's tables.

The Markdown file has three tables:
  1. classification error (the paper's Table 1 columns),
  2. localization error (the paper's Table 2: top-1 / top-5 error, a box from each of
     the top-5 predicted classes, right when the class is right and IoU >= 0.5 with any
     ground-truth box), with the test-set heuristic variant beside it,
  3. the later WSOL protocol (Choe et al., CVPR 2020): GT-known localization, MaxBoxAcc,
     MaxBoxAccV2 with its three IoU components, and PxAP where masks exist.
Every method is a row, the centre baseline last. All numbers are percentages.
Both files are written atomically (temporary file + rename), so a reader never sees a
half-written report.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import Any

# Display names, in the order the rows appear; unknown methods follow, title-cased.
METHOD_NAMES: dict[str, str] = {
    "cam": "CAM",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "xgradcam": "XGrad-CAM",
    "scorecam": "Score-CAM",
    "layercam": "LayerCAM",
    "backprop": "Backprop",
    "centre": "Centre baseline",
}

# The paper's Table 2 (ILSVRC 2014 validation, localization error top-1 / top-5, %),
# quoted so a reader can place their numbers (Zhou et al., CVPR 2016).
PAPER_TABLE2: tuple[tuple[str, float, float], ...] = (
    ("GoogLeNet-GAP", 56.40, 43.00),
    ("VGGnet-GAP", 57.20, 45.14),
    ("GoogLeNet-GMP", 57.78, 45.26),
    ("AlexNet-GAP", 67.19, 52.16),
    ("Backprop on GoogLeNet", 61.31, 50.55),
)

IOU_KEYS = ("30", "50", "70")  # MaxBoxAccV2 components: IoU 0.3, 0.5, 0.7


def atomic_write(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def method_order(methods: Mapping[str, Any]) -> list[str]:
    """Known methods in :data:`METHOD_NAMES` order, then the rest, centre always last."""
    known = [m for m in METHOD_NAMES if m in methods and m != "centre"]
    rest = sorted(m for m in methods if m not in METHOD_NAMES)
    tail = ["centre"] if "centre" in methods else []
    return known + rest + tail


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.2f}"


def _row_name(method: str, model: str) -> str:
    if method == "centre":
        return "Centre baseline (centred Gaussian map, no network)"
    return f"{METHOD_NAMES.get(method, method.title())} on {model}"


def _heuristic_note(thresholds: Mapping[str, float] | None) -> str:
    if not thresholds:
        return ""
    return (
        f"; tight = {100 * thresholds['tight']:.0f}%, loose = "
        f"{100 * thresholds['loose']:.0f}% of the map's max"
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown (see the module docstring for the tables)."""
    model = results.get("model", "model")
    split = results.get("split", "validation")
    split_word = "val." if split == "validation" else f"{split}"
    methods = results["methods"]
    order = method_order(methods)
    cls = results["classification"]
    out = [
        f"# camjax evaluation: {model} on {results.get('dataset', '?')} ({split})",
        "",
        f"{results.get('num_examples', '?')} images at "
        f"{results.get('image_size', '?')}x{results.get('image_size', '?')}; "
        f"checkpoint: {results.get('checkpoint', 'n/a')}. All numbers in %.",
        "",
        "## Classification error",
        "",
        _table(
            ["Network", f"top-1 {split_word} error", f"top-5 {split_word} error"],
            [[model, _fmt(cls["top1_error"]), _fmt(cls["top5_error"])]],
        ),
        "",
        "## Localization error (layout of Zhou et al. 2016, Table 2)",
        "",
        "A box per top-5 predicted class (20% of the map's max, largest connected "
        "component); right when the class is right and IoU >= 0.5 with any ground-truth "
        "box. *Heuristic*: the paper's test-set variant (tight and loose boxes from the "
        "top-1 and top-2 maps, a loose box from the top-3 map"
        + _heuristic_note(results.get("heuristic_thresholds"))
        + ").",
        "",
    ]
    rows = []
    for m in order:
        r = methods[m]
        rows.append(
            [
                _row_name(m, model),
                _fmt(r.get("loc_top1_error")),
                _fmt(r.get("loc_top5_error")),
                _fmt(r.get("heuristic_top1_error")),
                _fmt(r.get("heuristic_top5_error")),
            ]
        )
    out.append(
        _table(
            [
                "Method",
                f"top-1 {split_word} error",
                f"top-5 {split_word} error",
                "heuristic top-1",
                "heuristic top-5",
            ],
            rows,
        )
    )
    out += [
        "",
        "## WSOL accuracy (protocol of Choe et al. 2020)",
        "",
        "GT-known: box of the ground-truth class's map at 20%, IoU >= 0.5. MaxBoxAcc: "
        "best accuracy over CAM thresholds at IoU 0.5, largest component. MaxBoxAccV2: "
        "mean over IoU 0.3/0.5/0.7 of the best accuracy over CAM thresholds, any "
        "component's box counts. PxAP: area under the pixel precision-recall curve.",
        "",
    ]
    rows = []
    for m in order:
        r = methods[m]
        per_iou = r.get("max_box_acc_v2_per_iou") or {}
        rows.append(
            [
                _row_name(m, model),
                _fmt(r.get("gt_known_loc")),
                _fmt(r.get("max_box_acc")),
                _fmt(r.get("max_box_acc_v2")),
                *(_fmt(per_iou.get(k)) for k in IOU_KEYS),
                _fmt(r.get("pxap")),
            ]
        )
    out.append(
        _table(
            [
                "Method",
                "GT-known loc",
                "MaxBoxAcc",
                "MaxBoxAccV2",
                "IoU 0.3",
                "IoU 0.5",
                "IoU 0.7",
                "PxAP",
            ],
            rows,
        )
    )
    out += [
        "",
        "For reference, the paper's Table 2 on ILSVRC val (loc. error top-1 / top-5): "
        + "; ".join(f"{n} {a:.2f} / {b:.2f}" for n, a, b in PAPER_TABLE2)
        + ".",
        "",
    ]
    figures = results.get("figures") or []
    if figures:
        out += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy / jax scalars and arrays
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN; "n/a" in the Markdown
    return x


def write_report(results: Mapping[str, Any], workdir: str) -> tuple[str, str]:
    """Write ``report.json`` and ``report.md`` into ``workdir``; return both paths."""
    json_path = os.path.join(workdir, "report.json")
    md_path = os.path.join(workdir, "report.md")
    atomic_write(json_path, json.dumps(_jsonable(results), indent=2, sort_keys=True) + "\n")
    atomic_write(md_path, format_markdown(results))
    return json_path, md_path
