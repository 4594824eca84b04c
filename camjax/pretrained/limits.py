"""What a weight file may cost the reader: its error type and its allocation budget.

Every reader (:mod:`~camjax.pretrained.reader` for ``.pth``,
:mod:`~camjax.pretrained.safetensors`) charges a :class:`Budget` *before* it allocates:
the pickle bytes and the objects its opcodes make, the largest raw storage held at a time,
and every array it returns. A file that asks for more is refused with a
:class:`CheckpointError` naming what asked, before the allocation happens.

The default budget is ``DEFAULT_BASE_BYTES + DEFAULT_FILE_FACTOR * file size``: a real
checkpoint's tensors are its own bytes (about 1x, plus the one storage being copied), so
this never refuses an honest file, while a few-hundred-byte file that asks for gigabytes
(zero strides, deflate bombs, one storage viewed a million times) is refused.
"""

from __future__ import annotations

DEFAULT_BASE_BYTES = 64 << 20
DEFAULT_FILE_FACTOR = 4
MAX_DEPTH = 100  # containers nested deeper than this are refused (state dicts nest ~3)
MAX_NDIM = 64  # numpy's limit on array dimensions
MAX_INT = (1 << 63) - 1  # sizes, strides, offsets and element counts stay below this


class CheckpointError(ValueError):
    """A weight file that is unsafe, corrupt, truncated, over budget or not tensors."""


def show(value: object, limit: int = 60) -> str:
    """A short, safe description of a value read from a file, for error messages.

    Never ``repr`` of a whole attacker-made object: a huge int cannot be printed (Python
    caps int-to-str at 4300 digits) and a deeply nested list overflows ``repr``.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"an int of {value.bit_length()} bits"
    if isinstance(value, str | bytes):
        text = repr(value[:limit])
        return text + ("..." if len(value) > limit else "")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple | list) and len(value) <= 8:
        if all(type(v) in (int, float, bool, str) for v in value):  # flat: no recursion
            inner = ", ".join(show(v) for v in value)
            if isinstance(value, list):
                return f"[{inner}]"
            return f"({inner},)" if len(value) == 1 else f"({inner})"
    return f"a {type(value).__name__}"


def mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes < 1 << 62 else "over 4 EiB"


class Budget:
    """Bytes a load may still allocate; :meth:`charge` before each allocation."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.used = 0

    @classmethod
    def for_file(cls, file_size: int, max_bytes: int | None = None) -> Budget:
        """``max_bytes``, or the default budget for a file of ``file_size`` bytes."""
        if max_bytes is None:
            max_bytes = DEFAULT_BASE_BYTES + DEFAULT_FILE_FACTOR * file_size
        return cls(max_bytes)

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` for ``what``, or raise :class:`CheckpointError` if over."""
        if nbytes < 0 or self.used + nbytes > self.max_bytes:
            raise CheckpointError(
                f"{what} needs {mib(nbytes)}, over the reader's budget of "
                f"{mib(self.max_bytes)} ({mib(self.used)} already used; pass max_bytes "
                "to allow more)"
            )
        self.used += nbytes


__all__ = ["MAX_DEPTH", "Budget", "CheckpointError", "show"]
