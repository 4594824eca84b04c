"""Native XLA:CPU kernels, compiled on first use and called through the XLA FFI.

``conv_kernels.cc`` holds AVX-512 kernels for CPU training: direct stride-1 NHWC
convolutions (forward, which also gives the input gradient, and weight gradient) and
one-pass batch-norm statistics (forward sums, and the backward sums with ReLU's mask).
They are built with the system C++ compiler against the FFI headers that ship with
jaxlib, for this machine's CPU (``-march=native``), and cached by
:mod:`camjax.native.compiler` keyed by the source, the jaxlib version, the compiler and
the CPU's features, so the build (~6 s) happens once per machine.

``kernels()`` returns the loaded library, or ``None`` when the kernels cannot be used:
no C++ compiler, a CPU without AVX-512, a failed build (one warning says why), or
``CAMJAX_NATIVE=0`` in the environment. Callers then take XLA's own path, which
gives the same values.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import jax
import jaxlib
import numpy as np
from jax import lax

from camjax.native import compiler

_SOURCE = Path(__file__).with_name("conv_kernels.cc")
TARGETS = ("camjax_conv_fwd", "camjax_conv_dw", "camjax_batch_stats", "camjax_batch_grad_stats")


@functools.cache
def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _build(cxx: str) -> Path:
    return compiler.shared_library(
        _SOURCE.read_text(),
        "conv_kernels",
        cxx,
        [
            "-O3",
            "-march=native",
            "-ffp-contract=off",
            "-std=c++17",
            "-w",
            f"-I{jax.ffi.include_dir()}",
        ],
        suffix=".cc",
        key=f"{jaxlib.__version__} {_cpu_flags()}",
    )


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The compiled, FFI-registered kernel library, or ``None`` (see module doc)."""
    if os.environ.get("CAMJAX_NATIVE", "1") == "0":
        return None
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx512f" not in _cpu_flags():
        return None
    cxx = _compiler()
    if cxx is None:
        warnings.warn("camjax: no C++ compiler found; using XLA's CPU convolutions", stacklevel=2)
        return None
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(cxx)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        warnings.warn(f"camjax: native kernels unavailable ({err}); using XLA's", stacklevel=2)
        return None
    if lib.camjax_native_isa() != 512:
        return None
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return lib


def available(dtype) -> bool:
    """Whether float arrays of ``dtype`` can take the native kernels here."""
    return dtype == np.float32 and kernels() is not None


def on_cpu(use_native: bool, native_fn, xla_fn, *args):
    """``native_fn(*args)`` when lowering for CPU (if ``use_native``), else ``xla_fn``:
    ``lax.platform_dependent`` keeps GPU and TPU programs on XLA's ops."""
    if not use_native:
        return xla_fn(*args)
    return lax.platform_dependent(*args, cpu=native_fn, default=xla_fn)


def vary_together(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """``arrays`` cast (``lax.pcast``) to vary over the union of their ``shard_map``
    mesh axes; unchanged outside ``shard_map``. Applied to a custom-VJP function's
    inputs before the call, autodiff of the cast sums the replicated inputs' gradients
    over those axes, so the backward rule may return per-device partial gradients."""
    varying = frozenset().union(*(jax.typeof(v).manual_axis_type.varying for v in arrays))
    return tuple(
        lax.pcast(v, tuple(varying - jax.typeof(v).manual_axis_type.varying), to="varying")
        for v in arrays
    )


def call(target: str, shape: tuple[int, ...], *operands: jax.Array, **attrs) -> jax.Array:
    """``target(*operands)`` -> a float32 array of ``shape`` (attrs: ints and bools).

    Under ``shard_map`` an FFI call needs operands that vary over the same mesh axes, so
    replicated operands (kernels, statistics) are cast to the union of the operands'
    axes, and the result varies over them too. ``vmap`` runs the call per example.
    """
    if kernels() is None:  # also registers the targets on first use
        raise RuntimeError("camjax's native CPU kernels are not available here")
    operands = vary_together(*operands)
    out = jax.typeof(operands[0]).update(shape=tuple(shape), dtype=np.dtype(np.float32))
    fn = jax.ffi.ffi_call(target, out, vmap_method="sequential")
    typed = {k: (v if isinstance(v, bool) else np.int64(v)) for k, v in attrs.items()}
    return fn(*operands, **typed)
