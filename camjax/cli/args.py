"""What every subcommand's options share: the parser, argument types, choices."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (``camjax train: error: ...``), exit code 2; ``--help``
    shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def choices(registry: str) -> list[str]:
    """Names of a light registry (``"methods"`` or ``"models"``, the pretrained ones),
    read without loading weights."""
    if registry == "methods":
        from camjax.methods import METHODS

        return sorted(METHODS)
    from camjax.pretrained import WEIGHTS

    return sorted(WEIGHTS)


def positive(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def fraction(text: str) -> float:
    """A float in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def dash_style(argv: Sequence[str]) -> list[str]:
    """``--batch_size`` -> ``--batch-size`` (the option name only; values untouched)."""
    out, after_dashdash = [], False
    for tok in argv:
        if tok == "--":
            after_dashdash = True
        if not after_dashdash and tok.startswith("--"):
            name, eq, value = tok.partition("=")
            tok = name.replace("_", "-") + eq + value
        out.append(tok)
    return out
