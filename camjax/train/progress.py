"""Observability: console progress lines and TensorBoard event files (process 0 only)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

import jax


class Progress:
    """Prints ``step, loss, acc, images/s, ETA`` and writes scalars to TensorBoard.

    images/s counts the global batch over the wall time since the previous report, so it
    includes input and host overhead. TensorFlow is imported lazily, CPU only (GPUs are
    hidden from it so it never competes with JAX for device memory).
    """

    def __init__(self, workdir: str, num_steps: int, batch_size: int, *, tensorboard=True):
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.is_main = jax.process_index() == 0
        self._writer = None
        if tensorboard and self.is_main:
            self._writer = _summary_writer(os.path.join(workdir, "tensorboard"))
        self._t = time.perf_counter()
        self._step = None

    def start(self, step: int) -> None:
        self._t, self._step = time.perf_counter(), step

    def report(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> str:
        """One console line; ``images/s`` and ``ETA`` from the steps since the last call."""
        now = time.perf_counter()
        parts = [f"step {step}/{self.num_steps}"]
        parts += [f"{prefix}_{k} {float(v):.4f}" for k, v in metrics.items()]
        scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
        if prefix == "train" and self._step is not None and step > self._step:
            dt = (now - self._t) / (step - self._step)
            ips = self.batch_size / dt
            eta = dt * (self.num_steps - step)
            parts += [f"{ips:.1f} img/s", f"ETA {_hms(eta)}"]
            scalars["train/images_per_second"] = ips
            self._t, self._step = now, step
        line = "  ".join(parts)
        if self.is_main:
            print(line, flush=True, file=sys.stdout)
            self.scalars(step, scalars)
        return line

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        # tf.summary.scalar needs the tensorboard package, which tensorflow-cpu does not
        # pull in; tf.summary.write with the scalars plugin's metadata writes the same
        # event that TensorBoard's scalar dashboard reads.
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        with self._writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.write(k, tf.constant(v, tf.float32), metadata=meta)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _summary_writer(logdir: str):
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf.summary.create_file_writer(logdir)


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
