"""Checks a compiled program reports once, on the call that compiled it.

Some mistakes are visible only in the numbers: a layer whose gradient is identically zero
for the target (the head of a ViT reads only the class token, so Grad-CAM at the last
encoder block is all zero), or plain CAM on a network whose head does not score the
global average of the named layer (its identity ``mean_ij M_c + b_c = S_c`` fails).
While a program is traced, the methods :func:`report` such a condition as a boolean
array; the program returns those flags with its result, and the plain-call wrapper
(:class:`Pending`) reads them *only on the call that traced the program* (one device
sync, then never again for that compiled program) and issues a :class:`CamjaxWarning`
per flag that is set. Calls inside the caller's own ``jit``/``vmap`` cannot be checked
(the flags are traced) and warn nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_ACTIVE: contextvars.ContextVar[list[tuple[str, jax.Array]] | None] = contextvars.ContextVar(
    "camjax_checks", default=None
)


class CamjaxWarning(UserWarning):
    """A map that is valid to compute but probably not what was meant (see the message)."""


def report(message: str, flag: jax.Array) -> None:
    """Record ``flag`` (a boolean scalar: set means ``message`` applies) in the program
    being traced; a no-op outside :func:`collecting`."""
    active = _ACTIVE.get()
    if active is not None:
        active.append((message, jnp.asarray(flag, bool).reshape(())))


@contextlib.contextmanager
def collecting() -> Iterator[list[tuple[str, jax.Array]]]:
    """Collect the :func:`report` calls made inside (at the program's trace level)."""
    token = _ACTIVE.set([])
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """No collecting inside (a ``lax.map``/``scan`` body: its values cannot leave it)."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class Pending:
    """Messages of the traces not yet checked, for one jitted program."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, ...]] = []

    def traced(self, messages: tuple[str, ...]) -> None:
        """Called at trace time with the messages of the flags the program returns."""
        with self._lock:
            self._messages.append(messages)

    def check(self, flags: tuple[Any, ...]) -> None:
        """After a call: warn for the set flags if this call traced the program."""
        with self._lock:
            if not self._messages:
                return
            messages = self._messages.pop()
        if not flags or any(isinstance(f, jax.core.Tracer) for f in flags):
            return
        for message, flag in zip(messages, flags, strict=True):
            if bool(np.asarray(flag)):
                warnings.warn(message, CamjaxWarning, stacklevel=3)


def cam_identity(maps: jax.Array, scores: jax.Array, bias: jax.Array) -> jax.Array:
    """Whether plain CAM's identity fails: ``max |mean_ij M_c + b_c - S_c|`` beyond
    ``1e-3 (1 + max |S|)`` over the finite images (``scores`` and ``bias [B, N]``)."""
    lhs = maps.mean(axis=(-2, -1)) + bias
    err = jnp.abs(lhs - scores)
    ok = jnp.isfinite(err)
    scale = 1.0 + jnp.max(jnp.where(ok, jnp.abs(scores), 0.0), initial=0.0)
    return jnp.max(jnp.where(ok, err, 0.0), initial=0.0) > 1e-3 * scale


__all__ = ["CamjaxWarning", "Pending", "cam_identity", "collecting", "report", "suspended"]
