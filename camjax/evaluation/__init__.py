"""Evaluation of CAM methods: the paper's tables (report.json / report.md) and figures."""

from camjax.evaluation.centre import centre_map, centre_maps
from camjax.evaluation.report import format_markdown, write_report
from camjax.evaluation.runner import evaluate, evaluate_stream

__all__ = [
    "centre_map",
    "centre_maps",
    "evaluate",
    "evaluate_stream",
    "format_markdown",
    "write_report",
]
