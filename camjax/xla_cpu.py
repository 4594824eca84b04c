"""XLA:CPU settings camjax applies when it is imported, before JAX starts a backend.

jaxlib 0.10 hands CPU convolutions to YNNPACK by default. YNNPACK runs the weight
gradient of a 3x3 convolution (an output of 3x3 cells, a "kernel" as large as the
feature map) on one thread: on the 2-core development machine the seven weight
gradients of ``tiny_gap`` at 64x64, batch 64, took 207 ms through YNNPACK and 68 ms
through XLA's Eigen path, the whole training step 377 ms against 210 ms
(``bench/train_throughput.py``). So camjax takes convolutions out of YNNPACK's set and
leaves its other fusions (reductions, which are slower on the Eigen path) on.

The flag only touches the CPU backend. It is skipped when ``XLA_FLAGS`` already names a
YNNPACK fusion setting (the user's choice wins), when ``CAMJAX_KEEP_XLA_FLAGS`` is set,
or for a jaxlib outside the tested series. Flags are read once, when JAX creates its
first backend: importing camjax after that point cannot change it, and a warning says so.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping

CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
OPT_OUT = "CAMJAX_KEEP_XLA_FLAGS"
TESTED_JAXLIB = ("0.10.",)  # jaxlib series whose flag parser knows CONV_FLAG


def _backends_started() -> bool:
    from jax._src import xla_bridge  # no public query for "backend already created"

    return bool(xla_bridge.backends_are_initialized())


def apply(environ: MutableMapping[str, str] | None = None) -> bool:
    """Appends :data:`CONV_FLAG` to ``XLA_FLAGS``; returns whether it did."""
    import jaxlib.version

    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    if env.get(OPT_OUT) or "xla_cpu_experimental_ynn_fusion_type" in flags:
        return False
    if not jaxlib.version.__version__.startswith(TESTED_JAXLIB):
        return False
    if environ is None and _backends_started():
        import jax

        if jax.default_backend() != "cpu":
            return False
        warnings.warn(
            "camjax was imported after JAX started its backends, so CPU convolution "
            "gradients stay on YNNPACK (2-3x slower training on CPU); import camjax "
            f"first or set XLA_FLAGS={CONV_FLAG}",
            stacklevel=3,
        )
        return False
    env["XLA_FLAGS"] = f"{flags} {CONV_FLAG}".strip()
    return True
