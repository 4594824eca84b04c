"""Former home of folder extraction; kept so that older callers keep working.

New code calls :func:`camjax.bulk.extract_to` and reads results with
:func:`camjax.bulk.open_extraction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def extract_folder(
    loaded: Any,
    inputs: Sequence[str],
    out_dir: str,
    *,
    top_k: int = 5,
    method: str = "cam",
    threshold: float = 0.2,
    batch_size: int = 16,
    overlays: bool = False,
    progress: bool = True,
    **kw: Any,
) -> dict[str, Any]:
    """:func:`camjax.bulk.extract_to` replacing what ``out_dir`` held (as this function
    always did), with overlays of the top-1 map; the summary also names the first shard's
    ``jsonl`` and ``npz`` (all of a run of up to 1,000 images) and the overlay folder."""
    import os

    from camjax.bulk import extract_to

    kw.setdefault("overwrite", True)
    summary = extract_to(
        loaded, inputs, out_dir, top_k=top_k, method=method, threshold=threshold,
        batch_size=batch_size, overlays=1 if overlays else 0, progress=progress, **kw,
    )  # fmt: skip
    first = os.path.join(out_dir, "part-00000")
    summary["jsonl"] = first + ".jsonl"
    summary["npz"] = first + ".npz" if os.path.exists(first + ".npz") else None
    summary["overlays"] = os.path.join(out_dir, "overlays") if overlays else None
    return summary
