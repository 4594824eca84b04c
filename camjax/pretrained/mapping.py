"""What every state-dict mapping shares: its error, and the list of what did not fit."""

from __future__ import annotations

from collections.abc import Sequence


class MappingError(ValueError):
    """A state dict that does not fit the Flax variables; the message lists every problem."""


def raise_if_unfit(
    what: str, missing: Sequence[str], unexpected: Sequence[str], wrong_shape: Sequence[str]
) -> None:
    """Raise one :class:`MappingError` naming every missing, unexpected and mis-shaped
    tensor of ``what`` (e.g. "torchvision vgg16 state dict"), or return if all fit."""
    problems = [
        f"{label} ({len(items)}): {', '.join(items)}"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", wrong_shape),
        )
        if items
    ]
    if problems:
        raise MappingError(f"{what} does not fit the model; " + "; ".join(problems))
