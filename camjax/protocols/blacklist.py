"""``eval.blacklist``: validation images left out of localization error, the devkit's way.

The ILSVRC 2014 devkit (``data/ILSVRC2014_clsloc_validation_blacklist.txt``) lists 1,762
validation images, one 1-based image number per line (``36`` is
``ILSVRC2012_val_00000036.JPEG``), whose boxes are unreliable; its localization
evaluation skips them. Batches name their images by that number in ``image_id``
(int, ``-1`` where unknown); a metric that honours the blacklist counts a row only when
``valid`` and its id is not listed.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

_VAL_NAME = re.compile(r"ILSVRC20\d\d_val_(\d{8})")


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> frozenset[int]:
    ids = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            m = _VAL_NAME.search(text)
            try:
                value = int(m.group(1)) if m else int(text)
            except ValueError:
                raise ValueError(
                    f"{path}:{n}: not an image number or ILSVRC validation file name: {text!r}"
                ) from None
            if value < 1:
                raise ValueError(f"{path}:{n}: image numbers start at 1, got {value}")
            ids.add(value)
    return frozenset(ids)


def load(path: str) -> frozenset[int]:
    """The image numbers listed in ``path`` (devkit format; file names also accepted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"eval.blacklist: no file at {path}")
    return _read(os.path.abspath(path), os.path.getmtime(path))


def image_number(file_name: str) -> int:
    """``.../ILSVRC2012_val_00000036.JPEG`` -> 36; ``-1`` for any other name."""
    m = _VAL_NAME.search(str(file_name))
    return int(m.group(1)) if m else -1


def counted(batch: Mapping[str, Any], options: Mapping[str, Any]) -> np.ndarray:
    """``[B]`` bool: the rows a localization metric counts (``valid`` and not listed)."""
    n = len(batch["label"])
    valid = np.asarray(batch.get("valid", np.ones(n, bool)), bool)
    path = options.get("blacklist") if options else None
    if not path:
        return valid
    if "image_id" not in batch:
        raise ValueError(
            "eval.blacklist needs batches with an 'image_id' (ILSVRC validation image "
            "numbers); this data set's batches have none"
        )
    listed = np.isin(np.asarray(batch["image_id"]), np.fromiter(load(str(path)), np.int64))
    return valid & ~listed
