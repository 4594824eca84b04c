"""PNG figures of an evaluation: example grid, top-5 class maps, box accuracy curves.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global figure
state and no display needed), at a fixed size in pixels (``figsize * DPI``, no tight
cropping), and written atomically. Images arrive normalised for the model; for display
each is min-max rescaled to [0, 1], which undoes any per-channel affine normalisation up
to contrast.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from camjax.evaluation.report import atomic_write, display_name

DPI = 100
PRED_COLOUR = "#00e000"  # predicted box: green
GT_COLOUR = "#ff2020"  # ground-truth boxes: red
CMAP = "jet"  # the paper's figures use this colour map
IOU_STYLES = {"30": ":", "50": "-", "70": "--"}


def display_image(image: np.ndarray) -> np.ndarray:
    """Min-max rescale an ``[H, W, 3]`` image to [0, 1] for display (constant -> 0.5)."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(np.min(image)), float(np.max(image))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.full_like(image, 0.5)
    return (image - lo) / (hi - lo)


def _box_patch(box: Sequence[int], colour: str, width: float = 2.0) -> Rectangle:
    # Inclusive pixel corners: pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates.
    x0, y0, x1, y1 = (float(v) for v in box)
    return Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=colour, lw=width
    )


def _save(fig: Figure, path: str) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write(path, buf.getvalue())
    return path


def _overlay_axis(ax, image, cam_map, title: str, boxes=(), gt_boxes=()) -> None:
    ax.imshow(display_image(image), interpolation="bilinear")
    if cam_map is not None:
        ax.imshow(
            np.asarray(cam_map), cmap=CMAP, alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear"
        )
    for b in gt_boxes:
        ax.add_patch(_box_patch(b, GT_COLOUR))
    for b in boxes:
        ax.add_patch(_box_patch(b, PRED_COLOUR))
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def example_grid(
    path: str,
    images: np.ndarray,
    maps: np.ndarray,
    pred_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    titles: Sequence[str],
    *,
    cols: int = 4,
    cell_inches: float = 2.5,
) -> str:
    """A grid of examples, each an image pair: the image, and its CAM overlay with the
    predicted box (green) and ground-truth boxes (red).

    Args: ``images [N,H,W,3]``, ``maps [N,H,W]`` in [0, 1], ``pred_boxes [N,4]``,
    ``gt_boxes [N,G,4]`` with ``gt_valid [N,G]``, one title per example.
    Size: ``2 * cols * cell_inches`` by ``rows * cell_inches`` inches at :data:`DPI`.
    """
    n = len(images)
    if n == 0:
        raise ValueError("example_grid needs at least one example")
    rows = -(-n // cols)
    fig = Figure(figsize=(2 * cols * cell_inches, rows * cell_inches))
    axes = fig.subplots(rows, 2 * cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        gts = [b for b, v in zip(gt_boxes[i], gt_valid[i], strict=True) if v]
        _overlay_axis(axes[r, 2 * c], images[i], None, "image", gt_boxes=gts)
        _overlay_axis(
            axes[r, 2 * c + 1], images[i], maps[i], titles[i], boxes=[pred_boxes[i]], gt_boxes=gts
        )
        axes[r, 2 * c].axis("on")
        axes[r, 2 * c + 1].axis("on")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.25)
    return _save(fig, path)


def top_classes_figure(
    path: str,
    image: np.ndarray,
    maps: np.ndarray,
    class_names: Sequence[str],
    probs: Sequence[float],
    boxes: np.ndarray | None = None,
    *,
    cell_inches: float = 2.5,
) -> str:
    """One image and the maps of its top-k classes side by side (the paper's Figure 3).

    ``maps [k,H,W]`` in [0, 1]; size ``(k + 1) * cell_inches`` by ``cell_inches + 0.5``.
    """
    k = len(maps)
    fig = Figure(figsize=((k + 1) * cell_inches, cell_inches + 0.5))
    axes = fig.subplots(1, k + 1, squeeze=False)[0]
    _overlay_axis(axes[0], image, None, "input")
    for j in range(k):
        bx = [boxes[j]] if boxes is not None else []
        _overlay_axis(
            axes[j + 1],
            image,
            maps[j],
            f"{j + 1}. {class_names[j]}\np = {float(probs[j]):.3f}",
            boxes=bx,
        )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.80, wspace=0.05)
    return _save(fig, path)


def curve_figure(
    path: str,
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    thresholds: Mapping[str, Sequence[float]],
    *,
    panel_inches: float = 4.0,
) -> str:
    """Box accuracy (%) against CAM threshold, one line per IoU threshold, one panel per
    method: the curve whose maximum is MaxBoxAcc(V2).

    ``curves[method][iou_key]`` is the accuracy at each of ``thresholds[method]``.
    Size ``len(curves) * panel_inches`` by ``panel_inches`` inches.
    """
    if not curves:
        raise ValueError("curve_figure needs at least one method's curve")
    methods = list(curves)
    fig = Figure(figsize=(len(methods) * panel_inches, panel_inches))
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, m in zip(axes, methods, strict=True):
        t = np.asarray(thresholds[m], dtype=np.float64)
        for key, acc in curves[m].items():
            acc = np.asarray(acc, dtype=np.float64)
            best = int(np.argmax(acc))
            ax.plot(
                t,
                acc,
                IOU_STYLES.get(key, "-"),
                label=f"IoU 0.{key[0]}: max {acc[best]:.1f} at {t[best]:.2f}",
            )
            ax.plot([t[best]], [acc[best]], "o", ms=3, color="k")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 100)
        ax.set_xlabel("CAM threshold (fraction of max)")
        ax.set_ylabel("box accuracy (%)")
        ax.set_title(display_name(m), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("box accuracy vs CAM threshold (any component's box, as MaxBoxAccV2)", fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.14, top=0.86, wspace=0.3)
    return _save(fig, path)


def _name(class_names: Sequence[str], i: int) -> str:
    return class_names[i] if 0 <= i < len(class_names) else str(i)


def write_figures(
    workdir: str,
    results: Mapping,
    samples: Mapping[str, Sequence[Mapping]],
    class_names: Sequence[str],
) -> list[str]:
    """Write the evaluation's PNGs into ``workdir``; return their file names.

    ``examples_<method>.png`` (grid, top-1 class map and box), ``top5_<method>.png``
    (the first example's top-k maps), ``box_accuracy_curve.png`` (all methods).
    """
    written = []
    for method, items in samples.items():
        if not items or method == "centre":
            continue
        titles = []
        for it in items:
            pred, gt = int(it["class_ids"][0]), it["label"]
            mark = "ok" if pred == gt else "wrong"
            titles.append(f"pred {_name(class_names, pred)} ({mark})\ngt {_name(class_names, gt)}")
        name = f"examples_{method}.png"
        example_grid(
            f"{workdir}/{name}",
            np.stack([it["image"] for it in items]),
            np.stack([it["maps"][0] for it in items]),
            np.stack([it["boxes"][0] for it in items]),
            np.stack([it["bboxes"] for it in items]),
            np.stack([it["bbox_valid"] for it in items]),
            titles,
        )
        written.append(name)
        first = items[0]
        name = f"top5_{method}.png"
        top_classes_figure(
            f"{workdir}/{name}",
            first["image"],
            first["maps"],
            [_name(class_names, int(c)) for c in first["class_ids"]],
            first["probs"],
            first["boxes"],
        )
        written.append(name)
    curves, thresholds = {}, {}
    for method, r in results["methods"].items():
        v2 = r.get("max_box_acc_v2")  # the metric's results, or (flat layout) its number
        curve = v2.get("curve") if isinstance(v2, Mapping) else r.get("curve")
        if curve:
            curves[method] = curve["box_acc"]
            thresholds[method] = curve["cam_thresholds"]
    if curves:
        curve_figure(f"{workdir}/box_accuracy_curve.png", curves, thresholds)
        written.append("box_accuracy_curve.png")
    return written
