"""The import rules DESIGN.md sets ("a layer imports only layers to its left; nothing imports cli"), checked on the
source with ``ast`` (nothing is imported):

- Module-level imports between edgeseg modules form no circle. An import at module level runs when the module is
  first imported, so a circle there means a half-initialised module or an order-dependent ImportError. Importing
  ``edgeseg.a.b`` also runs ``edgeseg.a``'s ``__init__``, so that counts as an import of ``edgeseg.a`` too, except
  from inside ``edgeseg.a`` (a package importing its own submodules, and they each other, is the normal layout).
- Function-level (lazy) imports break no import-time circle and are allowed, but they must still point one way:
  between top-level packages (``edgeseg.bench``, ``edgeseg.deploy``, ...), counting lazy imports too, there is no
  circle beyond the ones listed in ``KNOWN_PACKAGE_CIRCLES`` with the reason each is tolerated. A new circle fails;
  a listed one that is gone fails too, so the list only shrinks.
- Nothing imports ``edgeseg.cli`` (but ``python -m edgeseg``'s ``__main__``), and ``edgeseg.bench`` imports nothing
  of ``edgeseg.deploy`` at any level (bench takes a probe as an argument; ``deploy/`` may import bench).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"
KNOWN_PACKAGE_CIRCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str], me: str | None = None) -> list[tuple[str, bool]]:
    """(edgeseg module imported, at module level?) for each import in ``path``; ``from a import b`` names module
    ``a.b`` where that is a module, else ``a``. Imports under ``if TYPE_CHECKING:`` never run and are left out."""
    tree = ast.parse(path.read_text(), str(path))
    me = me or module_name(path)
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.split(".")[0] == "edgeseg")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    pkg = me.split(".") if is_package else me.split(".")[:-1]
                    pkg = pkg[: len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                if base.split(".")[0] != "edgeseg":
                    continue
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in known else base, top))
            else:
                inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, inner)

    visit(tree, True)
    return found


def graph(module_level_only: bool) -> dict[str, set[str]]:
    """Module -> the edgeseg modules it imports (with the packages whose __init__ that runs)."""
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, top in imports(path, known):
            if module_level_only and not top:
                continue
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                t = ".".join(parts[:k])
                if t in known and t != m and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def top_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_level_import_circle():
    assert circles(graph(module_level_only=True)) == []


def test_packages_import_one_way_lazy_imports_included():
    edges: dict[str, set[str]] = {}
    for m, targets in graph(module_level_only=False).items():
        outside = {top_package(t) for t in targets} - {top_package(m)}
        edges.setdefault(top_package(m), set()).update(outside)
    assert {frozenset(c) for c in circles(edges)} == KNOWN_PACKAGE_CIRCLES


def test_nothing_imports_cli_and_bench_imports_no_deploy():
    for m, targets in graph(module_level_only=False).items():
        assert m == "edgeseg.__main__" or "edgeseg.cli" not in targets, f"{m} imports edgeseg.cli"
        if m == "edgeseg.bench" or m.startswith("edgeseg.bench."):
            assert not any(t == "edgeseg.deploy" or t.startswith("edgeseg.deploy.") for t in targets), m


def test_the_checker_sees_a_circle(tmp_path):
    """The checker itself: a module-level circle through a package's __init__ and a lazy one are both found."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("import edgeseg.bench\n\ndef f():\n    from edgeseg.deploy import jetson\n")
    found = imports(src, {"edgeseg.bench", "edgeseg.deploy", "edgeseg.deploy.jetson"}, "edgeseg.m")
    assert found == [("edgeseg.bench", True), ("edgeseg.deploy.jetson", False)]
