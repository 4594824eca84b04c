"""The metrics, each in one file with its pure functions, its evaluator and its registration.

A metric file holds the jittable per-batch function (e.g. :func:`box_hits`), the
evaluator that adds those counts up (``update`` per batch, ``result()`` at the end,
``merge`` of another host's counts; exact counts on device, :mod:`~camjax.metrics.counter`)
and the :class:`MetricSpec` it registers into :data:`METRICS`, the table of the metrics
``config.eval.metrics`` can name. Shared pieces: :mod:`~camjax.metrics.registry` (the
table), :mod:`~camjax.metrics.counter`, :mod:`~camjax.metrics.inputs` (what a metric
reads and its checks), :mod:`~camjax.metrics.overlap` (IoU) and
:mod:`~camjax.metrics.perturbation` (what the faithfulness metrics share).

A file registers every name it computes (``max_box_acc.py``: MaxBoxAcc and MaxBoxAccV2,
one evaluator; ``loc_error.py``: the localization errors and GT-known). Add a metric: a
file here that calls :func:`register`, and its import line below.
"""

# Each metric file registers what it defines when imported.
from camjax.metrics import (
    average_drop,
    heuristic,
    insertion_deletion,
    loc_error,
    max_box_acc,
    paper_loc,
    pxap,
    released_loc,
    road,
    wsol_box,
)
from camjax.metrics.inputs import (
    MASK_BACKGROUND,
    MASK_FOREGROUND,
    MASK_IGNORE,
    default_cam_thresholds,
)
from camjax.metrics.loc_error import (
    LocalizationErrorEvaluator,
    gt_known_hits,
    localization_hits,
)
from camjax.metrics.max_box_acc import BoxEvaluator, box_hits
from camjax.metrics.overlap import box_area, iou, max_iou
from camjax.metrics.pxap import (
    MaskEvaluator,
    pixel_histograms,
    precision_recall_from_histograms,
    pxap_from_histograms,
)
from camjax.metrics.registry import (
    METRICS,
    Metric,
    MetricContext,
    MetricSpec,
    available,
    check_names,
    create,
    get,
    register,
)
from camjax.metrics.wsol_box import WsolBoxCounts

__all__ = [
    "MASK_BACKGROUND",
    "MASK_FOREGROUND",
    "MASK_IGNORE",
    "METRICS",
    "BoxEvaluator",
    "LocalizationErrorEvaluator",
    "MaskEvaluator",
    "Metric",
    "MetricContext",
    "MetricSpec",
    "WsolBoxCounts",
    "available",
    "average_drop",
    "box_area",
    "box_hits",
    "check_names",
    "create",
    "default_cam_thresholds",
    "get",
    "gt_known_hits",
    "heuristic",
    "insertion_deletion",
    "iou",
    "loc_error",
    "localization_hits",
    "max_box_acc",
    "max_iou",
    "paper_loc",
    "pixel_histograms",
    "precision_recall_from_histograms",
    "pxap",
    "pxap_from_histograms",
    "register",
    "released_loc",
    "road",
    "wsol_box",
]
