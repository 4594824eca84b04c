"""The built-in evaluation metrics, one module each; importing this registers them.

Add a metric: a new module here that calls ``camjax.evaluation.registry.register`` and
one import line below; then name it in ``config.eval.metrics``.
"""

from camjax.evaluation.metrics import (  # noqa: F401  (each import registers one metric)
    average_drop,
    gt_known,
    heuristic,
    insertion_deletion,
    loc_error,
    max_box_acc,
    max_box_acc_v2,
    paper_loc,
    pxap,
    released_loc,
    road,
    wsol_box,
)
