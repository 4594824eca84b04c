"""Maps and boxes for each protocol, and how a metric finds them in a predictor's output.

A predictor (``camjax.evaluation.predictor.predictor``) adds
``out["protocols"][name]``: the :func:`camjax.localize.localize` output with the protocol's
options (:data:`camjax.protocols.PROTOCOLS`). A predictor that adds nothing (the centre
baseline, hand-made ones in tests) is read through :func:`maps_for`, which falls back to
the default ``maps`` / ``gt_maps`` with the protocol's box rule applied to them as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from camjax.protocols import get


def required(metric_names: Iterable[str]) -> tuple[str, ...]:
    """The protocols whose maps the named metrics read (their ``MetricSpec.protocol``), in
    metric order."""
    from camjax.metrics import registry

    specs = [registry.get(m) for m in metric_names]
    return tuple(dict.fromkeys(s.protocol for s in specs if s.protocol))


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
    """``{protocol: localize output}`` for ``names`` (one jitted call each)."""
    from camjax.localize import LocalizeSpec, localize

    out = {}
    for name in dict.fromkeys(names):
        p = get(name)
        spec = LocalizeSpec(
            method=method, top_k=top_k, normalization=p.normalization,
            upsample_method=p.upsample_method, map_resolution=p.map_resolution,
        )  # fmt: skip
        r = localize(model, variables, images, spec, gt_labels=labels)
        out[name] = {k: np.asarray(v) for k, v in r.items()}
    return out


def maps_for(out: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The outputs a ``name`` metric reads: ``out["protocols"][name]`` or ``out`` itself."""
    per = out.get("protocols") or {}
    return per.get(name, out)


def ten_crop_released(
    model: Any,
    variables: Any,
    batch: Mapping[str, Any],
    labels: Any,
    *,
    method: str,
    top_k: int,
    crop: int,
    jpeg_quality: int | None = None,
) -> dict[str, np.ndarray]:
    """The ``released`` protocol with ten-crop testing, boxes at the original image size.

    ``batch`` holds the 256-side resize (``image``), ``orig_hw`` and ``valid``
    (``camjax.data.eval_iterator(..., size=256, original=True)``). The merged maps
    (:func:`camjax.protocols.ten_crop.predict`) are resized to each original image with
    OpenCV's ``INTER_CUBIC`` (MATLAB's ``imresize`` is bicubic too; it also antialiases
    when shrinking, which this does not) and boxed as released. Returns ``class_ids``
    and ``probs`` (ranked by the ten crops' mean probability) and ``boxes12 [B, k + 1,
    2, 4]`` (bbox1/bbox2 of the top-k maps, then of the label's map), in original pixels.
    """
    import cv2

    from camjax.protocols import released, ten_crop

    r = ten_crop.predict(
        model, variables, batch["image"], labels, method=method, top_k=top_k, crop=crop
    )
    maps = np.concatenate([r["maps"], r["gt_maps"]], axis=1)
    boxes12 = np.zeros(maps.shape[:2] + (2, 4), np.int32)
    valid = np.asarray(batch.get("valid", np.ones(len(maps), bool)), bool)
    for i in np.flatnonzero(valid):
        h, w = (int(v) for v in np.asarray(batch["orig_hw"])[i])
        m = np.stack([cv2.resize(x.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
                      for x in maps[i]])  # fmt: skip
        boxes12[i] = released.boxes(m, jpeg_quality)
    return {"class_ids": r["class_ids"], "probs": r["probs"], "boxes12": boxes12}
