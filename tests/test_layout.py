"""The package's layering: data -> models -> methods -> boxes -> metrics -> evaluation,
with the apps (train, bulk extraction, CLI, demo) on top. A module may import only from
its own layer or below (checked on the source, so a lazy import inside a function counts
too), and camjax's own modules hold no measurement of one CPU in their docstrings."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1] / "camjax"

# Bottom to top. A top-level name (module or subpackage of camjax) sits on one layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared_library", "config_files", "files", "data"),
    ("models", "cpu"),
    ("pretrained", "checkpoints"),
    ("maps", "methods"),
    ("labeling", "component_tree", "boxes", "localize", "overlay"),
    ("metrics", "protocols"),
    ("evaluation",),
    ("train", "extract"),
    ("cli", "__init__", "__main__"),
)
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "camjax" and len(parts) > 1 and parts[1] in LEVEL:
                out.add(parts[1])
    return out


def test_every_module_is_on_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")}
    assert units - set(LEVEL) == set(), "place new modules in tests/test_layout.py's LAYERS"


def test_imports_point_down_the_layers():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        for target in _imports(path):
            if LEVEL[target] > LEVEL[unit]:
                wrong.append(f"{path.relative_to(ROOT.parent)} imports camjax.{target}")
    assert wrong == []


# Timings belong in bench output and the README, where the machine is named.
TIMING = re.compile(r"\b\d+(\.\d+)?\s?(ms|img/s|images/s|s on|seconds on)\b|\b\d+ (CPU )?cores\b")


def test_no_cpu_measurements_in_docstrings():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
        for node in nodes:
            doc = ast.get_docstring(node) or ""
            for m in TIMING.finditer(doc):
                found.append(f"{path.relative_to(ROOT.parent)}: {m.group(0)!r}")
    assert found == []
