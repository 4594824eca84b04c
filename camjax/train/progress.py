"""Observability: console progress lines and TensorBoard event files (process 0 only).

Scalars (``WORKDIR/tensorboard``): ``train/loss``, ``train/accuracy``,
``train/learning_rate`` (the base schedule's value; per-group multipliers apply on top),
``train/step_time_s`` and ``train/input_wait_s`` (seconds per step, the latter blocked
in the input pipeline), ``train/images_per_second``, and ``eval/*`` at each evaluation;
image ``eval/cam_overlays``: CAM overlays of a fixed validation batch with the
predicted box (green) and the ground-truth boxes (red), written at each evaluation.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Mapping

import jax
import numpy as np


class Progress:
    """Prints ``step, loss, acc, lr, step time, images/s, ETA`` and writes TensorBoard events.

    The first report (after the first step) shows how long that step took, compilation
    included; every later one measures the steps since the previous report, so rates and
    the ETA exclude compilation from the first interval on. TensorFlow is imported
    lazily, CPU only (GPUs are hidden from it so it never competes with JAX for memory).
    """

    def __init__(
        self,
        workdir: str,
        num_steps: int,
        batch_size: int,
        *,
        tensorboard: bool = True,
        learning_rate: Callable[[int], float] | None = None,
    ):
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.is_main = jax.process_index() == 0
        self._writer = None
        if tensorboard and self.is_main:
            self._writer = _summary_writer(os.path.join(workdir, "tensorboard"))
        self._t = time.perf_counter()
        self._step = None
        self._wait = 0.0
        self._first = True

    def start(self, step: int) -> None:
        self._t, self._step, self._wait, self._first = time.perf_counter(), step, 0.0, True

    def restart_clock(self, step: int) -> None:
        """Time the next interval from now (after an evaluation, which is not a step)."""
        self._t, self._step, self._wait = time.perf_counter(), step, 0.0

    def waited(self, seconds: float) -> None:
        """Add time spent blocked on the input pipeline (``next(batches)``)."""
        self._wait += seconds

    def report(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> str:
        """One console line; rates and ``ETA`` from the steps since the last call."""
        now = time.perf_counter()
        parts = [f"step {step}/{self.num_steps}"]
        parts += [f"{prefix}_{k} {float(v):.4f}" for k, v in metrics.items()]
        scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
        if prefix == "train" and self.learning_rate is not None:
            lr = float(self.learning_rate(step - 1))  # the rate the last step used
            parts.append(f"lr {lr:.3g}")
            scalars["train/learning_rate"] = lr
        if prefix == "train" and self._step is not None and step > self._step:
            n = step - self._step
            dt, wait = (now - self._t) / n, self._wait / n
            if self._first:  # compilation included: no rate, no ETA yet
                parts.append(f"first step {dt:.1f} s (incl. compilation)")
            else:
                ips = self.batch_size / dt
                parts += [
                    f"{dt * 1e3:.0f} ms/step (input {100 * wait / dt:.0f}%)",
                    f"{ips:.1f} img/s",
                    f"ETA {_hms(dt * (self.num_steps - step))}",
                ]
                scalars["train/images_per_second"] = ips
                scalars["train/step_time_s"] = dt
                scalars["train/input_wait_s"] = wait
            self._t, self._step, self._wait, self._first = time.perf_counter(), step, 0.0, False
        line = "  ".join(parts)
        if self.is_main:
            print(line, flush=True, file=sys.stdout)
            self.scalars(step, scalars)
        return line

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        import tensorflow as tf

        # tf.summary.scalar/image need the tensorboard package, which tensorflow-cpu does
        # not pull in; tf.summary.write with the plugins' metadata writes the same events
        # that TensorBoard's scalar and image dashboards read.
        with self._writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.write(k, tf.constant(v, tf.float32), metadata=_metadata("scalars"))
        self._writer.flush()

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """Write one ``uint8 [H, W, 3]`` image summary (PNG-encoded)."""
        if self._writer is None:
            return
        import tensorflow as tf
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
        h, w = image.shape[:2]
        # The image plugin's layout: [width, height, PNG bytes...] as strings.
        value = tf.constant([str(w).encode(), str(h).encode(), buf.getvalue()], tf.string)
        with self._writer.as_default(step=step):
            tf.summary.write(name, value, metadata=_metadata("images"))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def cam_grid(
    images: np.ndarray,
    maps: np.ndarray,
    pred_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    cols: int = 4,
    scale: int = 1,
) -> np.ndarray:
    """``uint8`` grid of CAM overlays: each image (min-max scaled for display, enlarged
    ``scale`` times by pixel repetition) with its map, predicted box (green) and valid
    ground-truth boxes (red); 2-pixel black gutters."""
    from camjax.evaluation.figures import display_image
    from camjax.overlay import overlay

    if scale > 1:  # inclusive pixel boxes: x0 -> x0 * s, x1 -> x1 * s + s - 1
        images = np.repeat(np.repeat(np.asarray(images), scale, axis=1), scale, axis=2)
        grow = np.array([0, 0, scale - 1, scale - 1])
        pred_boxes = np.asarray(pred_boxes) * scale + grow
        gt_boxes = np.asarray(gt_boxes) * scale + grow
    n, h, w = len(images), images.shape[1], images.shape[2]
    rows = -(-n // cols)
    gap = 2
    out = np.zeros((rows * (h + gap) - gap, min(n, cols) * (w + gap) - gap, 3), np.uint8)
    for i in range(n):
        gts = np.asarray(gt_boxes[i])[np.asarray(gt_valid[i], bool)].reshape(-1, 4)
        boxes = np.concatenate([np.asarray(pred_boxes[i]).reshape(1, 4), gts])
        colors = [(0, 255, 0)] + [(255, 0, 0)] * len(gts)
        img = np.round(display_image(images[i]) * 255).astype(np.uint8)
        cell = overlay(img, maps[i], boxes=boxes, box_colors=colors, box_width=1)
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = cell
    return out


def _metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    )


def _summary_writer(logdir: str):
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf.summary.create_file_writer(logdir)


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
