"""Parallel, ordered, bounded read-ahead: ``fn`` over items in threads, results in order.

At most ``window`` items are in flight or waiting to be consumed, so memory does not grow
with the number of items when the consumer (the model) is slower than the readers.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def ordered_map(
    fn: Callable[[T], Any], items: Iterable[T], *, threads: int, window: int
) -> Iterator[tuple[T, Any, BaseException | None]]:
    """Yield ``(item, fn(item), None)`` or ``(item, None, error)`` in the order of ``items``.

    Exceptions from ``fn`` are returned, not raised (an unreadable file is a result);
    ``window >= 1`` bounds the items read ahead of the consumer.
    """
    if threads < 1 or window < 1:
        raise ValueError(f"threads and window must be >= 1, got {threads}, {window}")
    pending: collections.deque = collections.deque()
    it = iter(items)
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="camjax-read") as pool:
        try:
            for item in it:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= window:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:  # a consumer that stops early: drop what was not started
            for _, fut in pending:
                fut.cancel()


def _result(item, fut):
    try:
        return item, fut.result(), None
    except Exception as e:  # any decoder failure is a result, never a crash
        return item, None, e


__all__ = ["ordered_map"]
