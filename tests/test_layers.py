"""The package's layers read one way: ``common/`` <- one folder per algorithm <- ``compare``, the
CLI and the benchmarks. ``common/`` imports no algorithm, no algorithm imports another, and no two
modules import each other."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sb3_dreamer"
#: An algorithm folder is a package with SB3's ``policies`` module (``common`` and ``compare`` are not).
ALGORITHMS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists() and (p / "policies.py").exists())


def imports_of(path: pathlib.Path) -> set[str]:
    """Every ``sb3_dreamer`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "sb3_dreamer")
    return found


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_the_algorithm_folders_are_found():
    assert {"dreamer_v2", "dreamer_v3"} <= set(ALGORITHMS)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("sb3_dreamer.common")))
def test_common_imports_only_common(module):
    outside = {m for m in GRAPH[module] if not m.startswith("sb3_dreamer.common")}
    assert not outside, f"{module} imports {outside}: common/ must not depend on algorithms or tools"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_no_algorithm_imports_another(algorithm):
    own = f"sb3_dreamer.{algorithm}"
    for module, imported in GRAPH.items():
        if module == own or module.startswith(own + "."):
            others = {m for m in imported if not m.startswith((own, "sb3_dreamer.common"))}
            assert not others, f"{module} imports {others}: an algorithm folder uses only common/ and itself"


def test_no_import_cycles():
    def resolve(name: str) -> str | None:  # a module, or the package whose __init__ holds the name
        while name and name not in GRAPH:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for r in map(resolve, imported) if r and r != m} for m, imported in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in edges.get(module, ()):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, module, nxt])
            if nxt not in state:
                visit(nxt, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
