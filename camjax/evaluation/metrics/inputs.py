"""The parts of an evaluation batch that the metrics read, as numpy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# camjax's own fast rules (min-max normalised maps, float cuts, on device); the exact
# protocols of the paper, the released code and the WSOL benchmark are paper_loc,
# released_loc and wsol_box (camjax.protocols).
TABLE_LOC = "Localization error, camjax's min-max rule (layout of Zhou et al. 2016, Table 2)"
TABLE_WSOL = "WSOL accuracy, camjax's on-device rule (metrics of Choe et al. 2020)"
IOU_LOC = 0.5  # the paper's (and ILSVRC's) localization criterion


def valid(batch: Mapping[str, Any]) -> np.ndarray:
    """``[B]`` bool: False marks padding rows, which are never counted."""
    n = len(batch["label"])
    return np.asarray(batch.get("valid", np.ones(n, bool)), bool)


def gt(batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(bboxes [B,G,4], bbox_valid [B,G])`` of the batch."""
    return np.asarray(batch["bboxes"]), np.asarray(batch["bbox_valid"])


def gt_maps(out: Mapping[str, Any]) -> np.ndarray:
    """``[B, H, W]``: the ground-truth class's map of each image."""
    return np.asarray(out["gt_maps"])[:, 0]
