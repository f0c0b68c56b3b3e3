"""The package's architecture, read from its source: subpackages by concern on floors, imports
only downward (from the commands and experiments down to the model math), no import circles,
no file over 400 lines, and a docstring on every subpackage saying what lives there.

The imports are read with `ast` (every `import` and `from ... import`, also those inside
functions), so a lazy import cannot hide a circle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "npvae"
# floor of each subpackage: a module may import its own floor's package and the floors below.
FLOORS = {"core": 0, "engine": 1, "training": 2, "reporting": 3, "runs": 4,
          "experiments": 5, "estimator": 5, "app": 6}
COMMANDS = ("run", "sweep", "active", "report", "active_report")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The npvae modules `path` imports (a `from P import name` of a submodule counts as an
    import of that submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "npvae"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "npvae":
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) for m, p in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle [a, b, ..., a] in `edges`, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def floor(module: str):
    """(floor, subpackage) of a module; the top level (npvae, the commands) is above all."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in FLOORS:
        return len(FLOORS), parts[-1]
    return FLOORS[parts[1]], parts[1]


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_sees_lazy_and_relative_imports():
    g = graph()
    assert "npvae.core.gmm" in g["npvae.core.model"]              # from . import gmm
    assert "npvae.training.presets" in g["npvae.training.cli"]     # a subpackage
    assert "npvae.runs.runner" in g["npvae.experiments.sweep.worker"]


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_run_down_the_floors():
    wrong = []
    for m, targets in graph().items():
        here, pkg = floor(m)
        for t in targets:
            there, other = floor(t)
            if there > here or (there == here and other != pkg and here < len(FLOORS)):
                wrong.append(f"{m} imports {t}")
    assert not wrong, "imports that climb a floor:\n" + "\n".join(wrong)


def test_every_subpackage_says_what_lives_there():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 15, f"{init.relative_to(ROOT)} needs a docstring"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_file_is_longer_than_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_commands_keep_their_names():
    mods = modules()
    for c in COMMANDS:
        tree = ast.parse(mods[f"npvae.{c}"].read_text())
        names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 for a in n.names}
        assert "main" in names, f"python -m npvae.{c} has no main"
