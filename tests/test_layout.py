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
    ("shared_library", "files", "data"),
    ("models", "cpu"),
    ("pretrained", "checkpoints"),
    ("maps", "methods"),
    ("labeling", "component_tree", "boxes", "localize", "overlay"),
    ("metrics", "protocols"),
    ("evaluation",),
    ("train", "extract", "config"),
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


def _module(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _module_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The camjax modules ``path`` imports, at import time or inside functions: ``from P
    import a`` counts as an import of module ``P.a`` if there is one, else of ``P``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("camjax.")}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "camjax" or node.module.startswith("camjax."):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if sub in modules else node.module)
    return out


def test_no_import_circles():
    # No cycle among camjax's modules, counting imports inside functions too (a lazy
    # import hides a circle, it does not remove it). A package importing its own
    # submodules to gather them is not a cycle; a submodule importing a name from its
    # package's __init__ is an edge back to it.
    paths = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for t in _module_imports(path, set(paths)):
            while t and t not in paths:
                t = t.rpartition(".")[0]
            if t and t != name:
                targets.add(t)
        graph[name] = targets
    cycles, state = [], {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for t in sorted(graph[name]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_private_name_crosses_modules():
    # ``from camjax.x import _y`` (or ``x._y`` on an imported module) outside ``camjax.x``.
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("camjax"):
                for a in n.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{_module(path)} imports {n.module}.{a.name}")
                    imported[a.asname or a.name] = f"{n.module}.{a.name}"
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.startswith("camjax"):
                        imported[a.asname or a.name.split(".")[0]] = a.name
        for n in ast.walk(tree):
            if (
                isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id in imported
                and n.attr.startswith("_")
                and not n.attr.startswith("__")
            ):
                found.append(f"{_module(path)} uses {imported[n.value.id]}.{n.attr}")
    assert found == []


# Timings belong in bench output and the README, where the machine is named.
TIMING = re.compile(
    r"\b\d+(\.\d+)?\s?(ms|img/s|images/s|s on|seconds on|min)\b|\b\d+ (CPU )?cores\b"
    r"|~\s?\d+(\.\d+)?\s?s\b"
)


def _comments(path: pathlib.Path) -> list[str]:
    import io
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [t.string for t in tokens if t.type == tokenize.COMMENT]


def test_no_cpu_measurements_in_docstrings_comments_or_configs():
    found = []
    paths = sorted(ROOT.rglob("*.py")) + sorted((ROOT.parent / "configs").glob("*.py"))
    for path in paths:
        tree = ast.parse(path.read_text())
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)
        ]
        texts = [ast.get_docstring(node) or "" for node in nodes] + _comments(path)
        for text in texts:
            for m in TIMING.finditer(text):
                found.append(f"{path.relative_to(ROOT.parent)}: {m.group(0)!r}")
    assert found == []
