"""Maps and boxes for each protocol, and how a metric finds them in a predictor's output.

A predictor (``camjax.evaluation.loading.Loaded.predictor``) adds
``out["protocols"][name]``: the :func:`camjax.extract` output with the protocol's
options (:data:`camjax.protocols.PROTOCOLS`). A predictor that adds nothing (the centre
baseline, hand-made ones in tests) is read through :func:`maps_for`, which falls back to
the default ``maps`` / ``gt_maps`` with the protocol's box rule applied to them as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camjax.protocols import get

# The registered metrics that read a protocol's maps (camjax/evaluation/metrics/).
METRIC_PROTOCOL = {"paper_loc": "paper", "released_loc": "released", "wsol_box": "wsol"}


def required(metric_names: Iterable[str]) -> tuple[str, ...]:
    """The protocols whose maps the named metrics read, in metric order."""
    return tuple(dict.fromkeys(METRIC_PROTOCOL[m] for m in metric_names if m in METRIC_PROTOCOL))


def protocol_outputs(
    model: Any,
    variables: Any,
    images: Any,
    labels: Any,
    *,
    method: str,
    top_k: int,
    names: Sequence[str],
) -> dict[str, dict[str, np.ndarray]]:
    """``{protocol: extract output}`` for ``names`` (one jitted ``extract`` call each)."""
    from camjax.extraction import extract

    out = {}
    for name in dict.fromkeys(names):
        p = get(name)
        r = extract(
            model, variables, images, top_k, method=method, gt_labels=labels,
            normalization=p.normalization, upsample_method=p.upsample_method,
            map_resolution=p.map_resolution,
        )  # fmt: skip
        out[name] = {k: np.asarray(v) for k, v in r.items()}
    return out


def maps_for(out: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The outputs a ``name`` metric reads: ``out["protocols"][name]`` or ``out`` itself."""
    per = out.get("protocols") or {}
    return per.get(name, out)
