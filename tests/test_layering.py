"""The layers of src/inferhub, as rules read from the code's own imports (docs/architecture.md draws them).

Every module is parsed with ``ast``; every import counts, at the top or inside a function, except those
under ``if TYPE_CHECKING:`` (they never run). A failure lists each wrong-way import as
``module:line imports target (rule)``. No database, no server.

Each package's public surface is checked the same way: its ``__init__.py`` lists its public modules in
``__all__`` (and imports nothing from inferhub), and a module with a leading underscore is private to its package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "inferhub"
DOMAIN = (
    "tenancy",
    "fleet",
    "deferred",
)  # plain records and their policy: they depend on nothing that stores or serves

# TEMPORARY exceptions, "module -> target", each while another branch rewrites the file. Keep it empty.
ALLOWED: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # inferhub.api.admin_routes
    line: int
    target: str  # inferhub.store.backends, sqlalchemy.exc


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs, so it counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _exists(module: str) -> bool:
    base = SRC.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path, module: str | None = None) -> Iterator[Import]:
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name)
            continue
        base = node.module or ""
        if node.level:  # relative: from . import x, from ..store import y
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            # ``from inferhub.api import admin_routes`` imports the module inferhub.api.admin_routes
            candidate = f"{base}.{alias.name}"
            yield Import(module, node.lineno, candidate if _exists(candidate) else base)


@cache
def _all_imports() -> tuple[Import, ...]:
    found = (each for path in sorted((SRC / ROOT).rglob("*.py")) for each in _imports(path))
    return tuple(dict.fromkeys(found))


def all_imports() -> list[Import]:
    """Each (module, line, target) once: ``from x import a, b`` is one import of x. Parsed once per run."""
    return list(_all_imports())


def layer(module: str) -> str | None:
    """The top-level part of inferhub a module belongs to (``api``, ``errors``), or None outside inferhub."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    return parts[1] if len(parts) > 1 else ROOT


def _under(target: str, *prefixes: str) -> bool:
    return any(target == prefix or target.startswith(prefix + ".") for prefix in prefixes)


def _inner(*layers: str) -> tuple[str, ...]:
    return tuple(f"{ROOT}.{name}" for name in layers)


def _is_route_module(target: str) -> bool:
    return _under(target, f"{ROOT}.api") and target.rsplit(".", 1)[-1].endswith("_routes")


# (rule, the layers it binds, does this target break it?)
RULES = [
    ("api/ and ui/ import no store/", ("api", "ui"), lambda t: _under(t, *_inner("store"))),
    ("api/ and ui/ import no SQLAlchemy", ("api", "ui"), lambda t: _under(t, "sqlalchemy")),
    ("ui/ imports no api route module", ("ui",), _is_route_module),
    ("observability/ imports no gateway/, api/, ui/, store/", ("observability",),
     lambda t: _under(t, *_inner("gateway", "api", "ui", "store"))),
    ("store/ imports no api/, gateway/, ui/", ("store",), lambda t: _under(t, *_inner("api", "gateway", "ui"))),
    ("gateway/ imports no store/, api/, ui/, SQLAlchemy (no database on the request path)", ("gateway",),
     lambda t: _under(t, *_inner("store", "api", "ui"), "sqlalchemy")),
    ("backends/ imports no store/, gateway/, api/", ("backends",),
     lambda t: _under(t, *_inner("store", "gateway", "api"))),
    ("domain packages import no store/, api/, ui/, gateway/, SQLAlchemy", DOMAIN,
     lambda t: _under(t, *_inner("store", "api", "ui", "gateway"), "sqlalchemy")),
    ("protocols/ (pure translations) import only errors, json_checks and backends.base", ("protocols",),
     lambda t: _under(t, ROOT) and not _under(t, *_inner("protocols", "errors", "json_checks", "backends.base"))),
]  # fmt: skip


def _private_owner(target: str) -> str | None:
    """The package an underscored module belongs to (``inferhub.api`` for ``inferhub.api._params``), else None."""
    parts = target.split(".")
    if parts[0] != ROOT:
        return None
    for depth, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:depth])
    return None


def private_imports(imports: list[Import]) -> list[str]:
    """Imports of another package's underscored module: ``inferhub.x._y`` from outside ``inferhub.x``."""
    out = []
    for found in imports:
        owner = _private_owner(found.target)
        if owner is not None and not _under(found.module, owner):
            out.append(f"{found.module}:{found.line} imports {found.target} (private to {owner})")
    return out


def violations(imports: list[Import]) -> list[str]:
    out = []
    for found in imports:
        if f"{found.module} -> {found.target}" in ALLOWED:
            continue
        for rule, layers, breaks in RULES:
            if layer(found.module) in layers and breaks(found.target):
                out.append(f"{found.module}:{found.line} imports {found.target} ({rule})")
    return out


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Which top-level parts of inferhub import which (``api`` → ``gateway``); a top-level module is its own part."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        source, target = layer(found.module), layer(found.target)
        if target is None or source == target or f"{found.module} -> {found.target}" in ALLOWED:
            continue
        if target == ROOT:  # ``from inferhub import x`` names a module: its own part
            continue
        graph.setdefault(source, set()).add(target)  # type: ignore[arg-type]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan), each sorted; every one is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycle_evidence(group: list[str], imports: list[Import]) -> list[str]:
    members = set(group)
    return [f"{f.module}:{f.line} imports {f.target} (no import cycles between packages: {' ↔ '.join(group)})"
            for f in imports if layer(f.module) in members and layer(f.target) in members
            and layer(f.module) != layer(f.target)]  # fmt: skip


def test_every_import_goes_the_right_way() -> None:
    found = violations(all_imports())
    assert not found, f"{len(found)} wrong-way import(s):\n" + "\n".join(found)


def test_no_import_cycles_between_packages() -> None:
    imports = all_imports()
    groups = cycles(package_graph(imports))
    assert not groups, "\n".join(line for group in groups for line in _cycle_evidence(group, imports))


def test_no_module_imports_another_packages_private_module() -> None:
    found = private_imports(all_imports())
    assert not found, f"{len(found)} import(s) of a private module from outside its package:\n" + "\n".join(found)


# -- each package's declared public surface -----------------------------------------------------------------


def _declared_all(tree: ast.Module) -> list[str] | None:
    """The literal ``__all__`` at the top of a module, or None when it has none."""
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            return list(ast.literal_eval(node.value))
    return None


def _defined_names(tree: ast.Module) -> set[str]:
    """The names an ``__init__`` binds itself (def, class, assignment), not those it imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _submodules(package: Path) -> set[str]:
    """A package's direct modules and subpackages by name (``__init__`` and ``__main__`` left out)."""
    found = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    return found | {p.parent.name for p in package.glob("*/__init__.py")}


def surface_problems(package: Path, name: str) -> list[str]:
    """What is wrong with one package's declared surface; empty when ``__all__`` names exactly its public modules."""
    init = package / "__init__.py"
    tree = ast.parse(init.read_text(), filename=str(init))
    declared = _declared_all(tree)
    if declared is None:
        return [f"{name}: __init__.py declares no __all__"]
    modules, own = _submodules(package), _defined_names(tree)
    problems = [f"{name}: __all__ lists {n!r}, private (leading underscore)" for n in declared if n.startswith("_")]
    problems += [f"{name}: __all__ lists {n!r}, neither a module of it nor defined in its __init__.py"
                 for n in declared if not n.startswith("_") and n not in modules and n not in own]  # fmt: skip
    problems += [f"{name}: public module {n!r} missing from __all__ (declare it, or rename it _{n})"
                 for n in sorted(modules) if not n.startswith("_") and n not in declared]  # fmt: skip
    problems += [f"{name}:{f.line} __init__.py imports {f.target} (re-exports make importing a package costly "
                 "and can close a cycle: list the module in __all__ instead)"
                 for f in _imports(init, name) if _under(f.target, ROOT)]  # fmt: skip
    return problems


def packages() -> list[tuple[Path, str]]:
    return [(init.parent, _module_name(init)) for init in sorted((SRC / ROOT).rglob("__init__.py"))]


def test_every_package_declares_its_public_modules() -> None:
    found = [problem for package, name in packages() for problem in surface_problems(package, name)]
    assert not found, "\n".join(found)


def test_allowed_list_names_only_imports_that_exist() -> None:
    """A temporary exception outlives its reason silently unless this fails once the import is gone."""
    present = {f"{f.module} -> {f.target}" for f in all_imports()}
    assert present >= ALLOWED, sorted(ALLOWED - present)


# -- the checker itself: it must see what it is meant to see --------------------------------------------


def _parse(tmp_path: Path, name: str, source: str) -> list[Import]:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return list(_imports(path, f"{ROOT}.{name}"))


def test_imports_under_type_checking_are_skipped_and_lazy_ones_count(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from inferhub.store.keys import A\nelse:\n    import sqlalchemy\n"
        "def f():\n    from inferhub.gateway.pipeline import Gateway\n"
    )
    targets = {found.target for found in _parse(tmp_path, "api", source)}
    assert targets == {"typing", "sqlalchemy", "inferhub.gateway.pipeline"}


@pytest.mark.parametrize(
    ("module", "target", "broken"),
    [
        ("inferhub.api.admin_routes", "inferhub.store.backends", True),
        ("inferhub.ui.pages", "sqlalchemy.exc", True),
        ("inferhub.ui._fleet_pages", "inferhub.api.admin_routes", True),
        ("inferhub.ui._fleet_pages", "inferhub.api.schemas", False),
        ("inferhub.observability.metrics", "inferhub.gateway.registry", True),
        ("inferhub.store.keys", "inferhub.tenancy.keys", False),
        ("inferhub.store.keys", "inferhub.gateway.auth", True),
        ("inferhub.backends.base", "inferhub.store.models", True),
        ("inferhub.tenancy.keys", "sqlalchemy", True),
        ("inferhub.api.context", "inferhub.gateway.pipeline", False),
        ("inferhub.gateway.metering", "inferhub.tenancy.keys", False),
        ("inferhub.gateway.registry", "inferhub.store.routes", True),
    ],
)
def test_rules_catch_what_they_name(module: str, target: str, broken: bool) -> None:
    assert bool(violations([Import(module, 1, target)])) is broken


@pytest.mark.parametrize(
    ("module", "target", "broken"),
    [
        ("inferhub.ui.routes", "inferhub.api._params", True),
        ("inferhub.app", "inferhub.ui._fleet_pages", True),
        ("inferhub.api.schemas", "inferhub.api._params", False),
        ("inferhub.store.migrations.versions.x", "inferhub.store._rag_schema", False),
        ("inferhub.services", "inferhub", False),  # from inferhub import __version__
        ("inferhub.api.admin_routes", "inferhub.store.models", False),
    ],
)
def test_private_module_rule_catches_what_it_names(module: str, target: str, broken: bool) -> None:
    assert bool(private_imports([Import(module, 1, target)])) is broken


@pytest.mark.parametrize(
    ("init", "expected"),
    [
        ('__all__ = ["public", "CONSTANT"]\nCONSTANT = 1\n', []),
        ("X = 1\n", ["declares no __all__"]),
        ('__all__ = ["public", "_helper"]\n', ["'_helper', private"]),
        ('__all__ = ["public", "gone"]\n', ["'gone', neither a module"]),
        ("__all__ = []\n", ["'public' missing from __all__"]),
        ('from inferhub.pkg.public import thing\n__all__ = ["public", "thing"]\n',
         ["'thing', neither a module", "imports inferhub.pkg.public (re-exports"]),
    ],
)  # fmt: skip
def test_surface_check_catches_what_it_names(tmp_path: Path, init: str, expected: list[str]) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(init)
    (package / "public.py").write_text("")
    (package / "_helper.py").write_text("")
    problems = surface_problems(package, "inferhub.pkg")
    assert len(problems) == len(expected), problems
    assert all(want in got for want, got in zip(expected, problems, strict=True)), problems


def test_a_cycle_between_packages_is_found() -> None:
    graph = package_graph([Import("inferhub.a.x", 1, "inferhub.b.y"), Import("inferhub.b.y", 2, "inferhub.c"),
                           Import("inferhub.c", 3, "inferhub.a.z"), Import("inferhub.d", 4, "inferhub.a")])  # fmt: skip
    assert cycles(graph) == [["a", "b", "c"]]
