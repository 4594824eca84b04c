"""What evaluation runs on each batch of a loaded network: ``predict(method, batch)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from camjax.checkpoints import Loaded


def predictor(
    loaded: Loaded,
    top_k: int = 5,
    threshold: float = 0.2,
    protocols: tuple[str, ...] = (),
    ten_crop: bool = False,
) -> Callable[[str, Mapping[str, np.ndarray]], dict[str, Any]]:
    """``predict(method, batch)``: :func:`camjax.localize.localize` with the batch's labels
    (GT-known); ``out["protocols"][name]`` for each of ``protocols``
    (:mod:`camjax.protocols`; ``released`` from ten crops when ``ten_crop``)."""
    from camjax.localize import LocalizeSpec, localize
    from camjax.protocols import predict as proto

    model, variables = loaded.model, loaded.variables

    def predict(method: str, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        labels = np.asarray(batch["label"], np.int32)
        if "valid" in batch:  # padding rows may carry any label; they are never counted
            labels = np.where(np.asarray(batch["valid"], bool), labels, 0)
        spec = LocalizeSpec(method=method, top_k=top_k, threshold=threshold)
        out = localize(model, variables, batch["image"], spec, gt_labels=labels)
        out = {k: np.asarray(v) for k, v in out.items()}
        if protocols:
            single = [p for p in protocols if not (ten_crop and p == "released")]
            out["protocols"] = proto.protocol_outputs(
                model, variables, batch["image"], labels, method=method, top_k=top_k,
                names=single,
            )  # fmt: skip
            if len(single) < len(protocols):  # released, ten-crop (mergeTenCrop.m)
                out["protocols"]["released"] = proto.ten_crop_released(
                    model, variables, batch, labels, method=method, top_k=top_k,
                    crop=loaded.image_size,
                )  # fmt: skip
        return out

    return predict
