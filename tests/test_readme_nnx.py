"""The README's "Flax NNX" example (in "Your own model") runs as written and prints what
it says."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _subsection() -> str | None:
    text = README.read_text()
    m = re.search(r"^### Flax NNX\n(.*?)(?=^##)", text + "\n## ", re.S | re.M)
    return m.group(1) if m else None


def test_nnx_snippet_runs_and_prints_what_it_says():
    section = _subsection()
    assert section is not None, "README.md has no 'Flax NNX' subsection"
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"prints\n\n```\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md:Flax NNX", "exec"), {"__name__": "readme"})
    assert out.getvalue() == printed
