"""The import graph of the shipped packages: no circle, and no arrow pointing up.

Every module of protocol, transcode, gateway, peer and bench is parsed with
``ast`` (nothing is imported or run) and every import in it becomes an arrow
from the module to the module it names: imports at module level, imports
inside functions (a function-local import that closes a circle is still a
circle, only deferred to the first call), and imports under
``if TYPE_CHECKING:`` (mypy follows them, and the importer's meaning depends
on the imported module's types; such a circle is one refactor away from a
runtime one). ``from pkg import name`` points at ``pkg.name`` when that is a
module, else at ``pkg``. A package's ``__init__`` that runs before one of its
modules is not an arrow of its own: re-exporting submodules from an
``__init__`` is how a package presents its API, not a dependency.

Modules are grouped into components (a subpackage of gateway, a top-level
module of gateway, or a whole package), and ``LAYERS`` lists the components
from the bottom up. An arrow may only point into a lower row; components in
the same row are siblings and do not import each other. Changing the
architecture means editing ``LAYERS`` (and ``PLACED``), nothing else.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.paths import ROOT

# Bottom first. An import may point only into a strictly lower row.
LAYERS: list[tuple[str, ...]] = [
    ("protocol",),  # the wire and control formats: stdlib only
    ("transcode", "peer"),  # ffmpeg and WebM; the Python peer (each needs only protocol)
    ("gateway", "gateway.errors", "gateway.metrics", "gateway.health", "gateway.demo", "gateway.internals"),
    ("gateway.netpolicy",),  # the address policy: the fetcher's, and the config's check of allow-lists
    ("gateway.config",),
    ("gateway.media",),
    # Upstreams make the media layer's Track and implement its Source protocol;
    # live ingests read them through that protocol only.
    ("gateway.sources", "gateway.live"),
    ("gateway.nat",),
    ("gateway.http",),
    ("gateway.swarm",),
    ("gateway.admin",),
    ("gateway.cluster",),
    ("gateway.app",),  # the composition root of the gateway
    ("bench",),  # may import any shipped package, never tests/
    ("gateway.cli",),  # the `ztream` command: dispatches `ztream bench` and `ztream peer` too
]

# Modules that belong to another component than their package's. Today: the
# modules on their way into protocol/, held to its rules before they move.
# Every entry must name an existing module (delete it once the module moved).
PLACED: dict[str, str] = {}

PACKAGES = ("protocol", "transcode", "gateway", "peer", "bench")
# Never imported by shipped code.
FORBIDDEN = ("tests",)


@dataclass(frozen=True)
class Arrow:
    source: str  # importing module
    target: str  # imported module (ours), or a FORBIDDEN top-level name
    where: str  # path:line
    how: str  # "module level", "in a function", "TYPE_CHECKING"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}  ({self.where}, {self.how})"


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        if not (ROOT / package).is_dir():
            continue  # protocol/ exists once its branch is merged
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with how it is reached (module level, in a function, TYPE_CHECKING)."""

    def walk(node: ast.AST, how: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, how
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "in a function" if how == "module level" else how)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "TYPE_CHECKING")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), how)
            else:
                yield from walk(child, how)

    yield from walk(tree, "module level")


@cache
def all_arrows() -> tuple[Arrow, ...]:
    return tuple(arrows(modules()))


def arrows(found: dict[str, Path]) -> list[Arrow]:
    def ours(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    out: list[Arrow] = []
    for module, path in found.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, how in _imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                names = [f"{origin}.{alias.name}" if ours(f"{origin}.{alias.name}") == f"{origin}.{alias.name}"
                         else origin for alias in node.names]
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for name in dict.fromkeys(names):
                top = name.partition(".")[0]
                if top in FORBIDDEN:
                    out.append(Arrow(module, top, where, how))
                    continue
                target = ours(name)
                if target is not None and target != module:
                    out.append(Arrow(module, target, where, how))
    return out


def component(module: str) -> str:
    placed = [prefix for prefix in PLACED if module == prefix or module.startswith(prefix + ".")]
    if placed:
        return PLACED[max(placed, key=len)]
    parts = module.split(".")
    if parts[0] == "gateway" and len(parts) > 1:
        return ".".join(parts[:2])  # a subpackage, or a top-level module of gateway
    return parts[0]


def rows() -> dict[str, int]:
    rank: dict[str, int] = {}
    for row, names in enumerate(LAYERS):
        for name in names:
            assert name not in rank, f"{name} is in two rows of LAYERS"
            rank[name] = row
    return rank


def cross_arrows() -> list[Arrow]:
    return [a for a in all_arrows() if a.target in FORBIDDEN or component(a.source) != component(a.target)]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def report(found: list[Arrow]) -> str:
    return "\n" + "\n".join(f"  {a}" for a in sorted(found, key=lambda a: (a.source, a.target, a.where)))


def test_the_graph_is_read() -> None:
    """The parser sees what is there: known arrows of every kind, so the other tests can fail."""
    found = all_arrows()
    assert len(modules()) > 50
    kinds = {a.how for a in found}
    assert {"module level", "in a function"} <= kinds, kinds
    pairs = {(a.source, a.target) for a in found}
    assert ("gateway.app", "gateway.config") in pairs
    assert ("gateway.sources.hls_follow", "gateway.sources.hls") in pairs  # from . import hls
    assert ("gateway.sources.url", "gateway.media.catalog") in pairs  # from ..media.catalog import


def test_every_component_has_a_row_and_every_placed_module_exists() -> None:
    found = modules()
    rank = rows()
    missing = sorted({component(m) for m in found} - rank.keys())
    assert not missing, f"components with no row in LAYERS: {missing}"
    stale = sorted(m for m in PLACED if m not in found)
    assert not stale, f"PLACED names modules that do not exist (moved?): {stale}"


def test_nothing_shipped_imports_tests() -> None:
    found = [a for a in all_arrows() if a.target in FORBIDDEN]
    assert not found, "shipped code imports the tests:" + report(found)


def test_no_circle_between_components() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a in cross_arrows():
        if a.target not in FORBIDDEN:
            graph[component(a.source)].add(component(a.target))
    found = circles(graph)
    edges = [a for a in cross_arrows() if a.target not in FORBIDDEN
             and any(component(a.source) in c and component(a.target) in c for c in found)]
    assert not found, f"import circles between components: {found}; the arrows that close them:" + report(edges)


def test_no_circle_between_modules() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a in all_arrows():
        if a.target not in FORBIDDEN:
            graph[a.source].add(a.target)
    found = circles(graph)
    edges = [a for a in all_arrows() if any(a.source in c and a.target in c for c in found)]
    assert not found, f"import circles between modules: {found}:" + report(edges)


def test_arrows_point_down() -> None:
    rank = rows()
    up = [a for a in cross_arrows() if a.target not in FORBIDDEN
          and component(a.source) in rank and component(a.target) in rank
          and rank[component(a.target)] >= rank[component(a.source)]]
    assert not up, "imports that point up or sideways in LAYERS:" + report(up)
