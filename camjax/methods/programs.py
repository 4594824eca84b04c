"""The compile cache: one jitted program per model, reused by every plain call.

``camjax.extract`` and :func:`camjax.methods.compute_maps` run a ``jax.jit``-compiled
program built once per model by :func:`program`. The model is *closed over*, not a
static argument of the jit, so a Linen module with unhashable fields (lists, dicts,
config objects: ``functools.partial(ResNet, stage_sizes=[2, 2, 2, 2])``) works as its
authors wrote it. Within one program, ``jax.jit``'s own cache keys on the variables'
structure and shapes, the input shape and the static options, so repeated calls with the
same model, variables structure and input shape reuse one compiled program and trace
nothing.

The cache (the only process-wide state camjax keeps, filled on first use, never at
import) is keyed by

- the model's *value* when it is hashable (a camjax ``CAMNet``, a Linen module with
  hashable fields, an NNX graph definition): equal models share one program; at most
  :data:`MAX_BY_VALUE` such entries are kept (least recently used dropped);
- the model's *identity* otherwise: a weak reference, so the entry (and its compiled
  programs) goes when the model is garbage collected, and a program never keeps its
  model alive (it holds the model through the weak reference too).

:func:`clear` empties it.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MAX_BY_VALUE = 64

_LOCK = threading.RLock()  # re-entrant: a weakref callback may run inside program()
_BY_VALUE: OrderedDict[tuple[str, Hashable], Any] = OrderedDict()
_BY_ID: dict[tuple[str, int], tuple[weakref.ref, Any]] = {}


class ByIdentity:
    """A static jit argument hashed and compared by identity (an unhashable target or
    keyword value); holds its object strongly, as any static argument does."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByIdentity) and other.value is self.value

    def __repr__(self) -> str:
        return f"ByIdentity({type(self.value).__name__} at {id(self.value):#x})"


def static(value: Any) -> Any:
    """``value`` if hashable, else :class:`ByIdentity` of it (for a static jit argument)."""
    try:
        hash(value)
    except TypeError:
        return ByIdentity(value)
    return value


def unwrap(value: Any) -> Any:
    """The object :func:`static` wrapped (or ``value`` itself)."""
    return value.value if isinstance(value, ByIdentity) else value


def _hashable(model: Any) -> bool:
    try:
        hash(model)
    except TypeError:
        return False
    return True


def program(kind: str, model: Any, build: Callable[[Callable[[], Any]], Any]) -> Any:
    """The cached program ``kind`` of ``model``, built by ``build(get_model)`` on first use.

    ``get_model()`` returns the model; ``build`` must reach the model only through it
    (never hold it), so that an identity-keyed entry does not keep its model alive.
    """
    with _LOCK:
        if _hashable(model):
            key = (kind, model)
            hit = _BY_VALUE.get(key)
            if hit is not None:
                _BY_VALUE.move_to_end(key)
                return hit
            value = build(lambda: model)
            _BY_VALUE[key] = value
            while len(_BY_VALUE) > MAX_BY_VALUE:
                _BY_VALUE.popitem(last=False)
            return value
        ident = (kind, id(model))
        hit = _BY_ID.get(ident)
        if hit is not None and hit[0]() is model:
            return hit[1]

        def forget(_: weakref.ref, ident: tuple[str, int] = ident) -> None:
            with _LOCK:
                entry = _BY_ID.get(ident)
                if entry is not None and entry[0]() is None:
                    del _BY_ID[ident]

        ref = weakref.ref(model, forget)

        def get_model() -> Any:
            m = ref()
            if m is None:  # only traced while a caller holds the model
                raise RuntimeError("camjax: the model of this program was garbage collected")
            return m

        value = build(get_model)
        _BY_ID[ident] = (ref, value)
        return value


def clear() -> None:
    """Drop every cached program (they are rebuilt and recompiled on the next call)."""
    with _LOCK:
        _BY_VALUE.clear()
        _BY_ID.clear()


def size() -> int:
    """How many models have cached programs (for tests)."""
    with _LOCK:
        return len(_BY_VALUE) + len(_BY_ID)


__all__ = ["MAX_BY_VALUE", "ByIdentity", "clear", "program", "size", "static", "unwrap"]
