"""report.json and report.md: the evaluation's numbers, laid out like the papers' tables.

The Markdown file has the classification error (the paper's Table 1 columns), the
protocols the numbers follow (:mod:`camjax.protocols`), then one table per distinct
``MetricSpec.table`` of the metrics the evaluation computed (``results["metrics"]``, see
:mod:`camjax.metrics.registry`): a row per method (the centre baseline last), the
spec's ``columns``, its ``description`` under the table. Nothing here names a metric, so
a new metric needs no edit of this file. All numbers are percentages.
Both files are written atomically (temporary file + rename), so a reader never sees a
half-written report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from camjax.files.atomic import atomic_write

CENTRE_NAME = "Centre baseline"


def display_name(method: str) -> str:
    """A method's name in the report: the registry's ``Method.display``
    (:mod:`camjax.methods`), the centre baseline's, or the key title-cased."""
    from camjax.methods import METHODS

    if method == "centre":
        return CENTRE_NAME
    return METHODS[method].display if method in METHODS else method.title()


# The paper's Table 2 (ILSVRC 2014 validation, localization error top-1 / top-5, %),
# quoted so a reader can place their numbers (Zhou et al., CVPR 2016).
PAPER_TABLE2: tuple[tuple[str, float, float], ...] = (
    ("GoogLeNet-GAP", 56.40, 43.00),
    ("VGGnet-GAP", 57.20, 45.14),
    ("GoogLeNet-GMP", 57.78, 45.26),
    ("AlexNet-GAP", 67.19, 52.16),
    ("Backprop on GoogLeNet", 61.31, 50.55),
)


def method_order(methods: Mapping[str, Any]) -> list[str]:
    """Registered methods in registration order, then the rest, centre always last."""
    from camjax.methods import METHODS

    known = [m for m in METHODS if m in methods]
    rest = sorted(m for m in methods if m not in METHODS and m != "centre")
    tail = ["centre"] if "centre" in methods else []
    return known + rest + tail


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.2f}"


def _row_name(method: str, model: str) -> str:
    if method == "centre":
        return "Centre baseline (centred Gaussian map, no network)"
    return f"{display_name(method)} on {model}"


# What the metrics outside camjax.protocols read: extract's default maps.
DEFAULT_PROTOCOL = (
    "`camjax`: maps min-max normalised after bilinear upsampling; boxes at 20% of the "
    "normalised max (largest component), MaxBoxAcc/PxAP thresholds on the same maps"
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _lookup(per_method: Mapping[str, Any], metric: str, key: str) -> Any:
    """``key`` (dotted for nested dicts, e.g. ``max_box_acc_v2_per_iou.30``) in the
    result of ``metric``, else in the method's flat results."""
    for root in (per_method.get(metric), per_method):
        value: Any = root
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                value = None
                break
            value = value[part]
        if value is not None:
            return value
    return None


def _metric_names(results: Mapping[str, Any]) -> list[str]:
    from camjax.metrics import registry

    if "metrics" in results:
        return [str(n) for n in results["metrics"]]
    # Older layout: every registered metric whose keys are present, by name.
    flat = [r for r in results["methods"].values() if isinstance(r, Mapping)]
    return [
        name
        for name, spec in sorted(registry.METRICS.items())
        if any(_lookup(r, name, k) is not None for r in flat for k, _ in spec.columns)
    ]


def protocol_lines(names: list[str]) -> list[str]:
    """One line per protocol the named metrics follow (name, title, source)."""
    from camjax.metrics import registry
    from camjax.protocols import get

    protocol = {n: s.protocol for n, s in registry.METRICS.items()}
    used = list(dict.fromkeys(protocol.get(n) or "camjax" for n in names))
    lines = []
    for p in used:
        if p == "camjax":
            lines.append(f"- {DEFAULT_PROTOCOL}.")
        else:
            proto = get(p)
            lines.append(f"- `{proto.name}`: {proto.title}; source: {proto.source}.")
    return lines


def metric_tables(results: Mapping[str, Any], model: str) -> list[str]:
    """The Markdown of every metric table, generically from the registered specs."""
    from camjax.metrics import registry

    methods = results["methods"]
    order = method_order(methods)
    tables: dict[str, list[Any]] = {}
    for name in _metric_names(results):
        spec = registry.get(name)
        tables.setdefault(spec.table, []).append(spec)
    out = []
    for heading, specs in tables.items():
        header = ["Method"] + [h for s in specs for _, h in s.columns]
        rows = [
            [_row_name(m, model)]
            + [_fmt(_lookup(methods[m], s.name, k)) for s in specs for k, _ in s.columns]
            for m in order
        ]
        notes = " ".join(dict.fromkeys(s.description for s in specs if s.description))
        out += [f"## {heading}", ""] + ([notes, ""] if notes else []) + [_table(header, rows), ""]
    return out


def format_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown (see the module docstring for the tables)."""
    model = results.get("model", "model")
    split = results.get("split", "validation")
    split_word = "val." if split == "validation" else f"{split}"
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
        "## Protocols",
        "",
        *protocol_lines(_metric_names(results)),
        "",
        *metric_tables(results, model),
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
