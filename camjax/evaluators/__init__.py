"""Streaming WSOL evaluators: ``update(batch...)`` on device, ``result()`` as plain floats.

- :class:`BoxEvaluator`: MaxBoxAcc / MaxBoxAccV2 (Choe et al., CVPR 2020).
- :class:`MaskEvaluator`: PxAP (Choe et al., CVPR 2020).
- :class:`LocalizationErrorEvaluator`: top-1/top-5 localization error, GT-known
  accuracy, classification errors (Zhou et al., CVPR 2016).

Each module also exposes its jitted pure ``update_*`` functions and ``init_state`` for
use inside a larger jitted or pmapped step; states are pytrees of exact counts that add.
"""

from camjax.evaluators.box import BoxEvaluator
from camjax.evaluators.localization import LocalizationErrorEvaluator
from camjax.evaluators.mask import MaskEvaluator

__all__ = ["BoxEvaluator", "LocalizationErrorEvaluator", "MaskEvaluator"]
