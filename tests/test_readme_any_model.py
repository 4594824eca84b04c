"""The README's "Your own model" section, its "Flax NNX" subsection and the "Any JAX
model" section run as written and print what they say."""

import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# (heading, the part up to the next heading at this level or above)
SNIPPETS = [
    ("## Your own model", r"^## "),
    ("### Flax NNX", r"^##"),
    ("## Any JAX model", r"^## "),
]


@pytest.mark.parametrize("heading, end", SNIPPETS)
def test_snippet_runs_and_prints_what_it_says(heading, end):
    text = README.read_text() + "\n## "
    m = re.search(rf"^{re.escape(heading)}\n(.*?)(?={end})", text, re.S | re.M)
    assert m is not None, f"README.md has no {heading!r} section"
    section = m.group(1)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"prints\n\n```\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md:{heading.lstrip('# ')}", "exec"), {"__name__": "readme"})
    assert out.getvalue() == printed
