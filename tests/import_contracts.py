"""The import graph of the product, read from the source (no import is executed), and
the contracts that keep its rooms apart.

A *component* is a top-level package (``workbench``, ``privacy_budgets``,
``datasets_synthetic``), or, inside ``federation``, one of its direct children
(``federation.site``, ``federation.coordinator``, ``federation.cli_support``...): the
rooms of CONTRIBUTING.md. Every import statement counts, wherever it stands (inside a
function, under ``TYPE_CHECKING``, in a ``try``): each is a dependency a reader meets.

The contracts, checked by ``tests/test_import_contracts.py``:

- ``LAYERS``, top to bottom: a component imports only components of lower layers;
  components of one layer never import each other (``site`` and ``coordinator``).
  Every component must stand in a layer, so a new package is placed on purpose.
- ``FORBIDDEN_EXTERNAL``: third-party packages a component must not import
  (``privacy_budgets``: no torch, no Flower; ``training``, ``analytics``, ``data``: no Flower).
- no cycle between components (a layering violation usually is one, but this is said
  on its own so that the message names the circle).
- no private name (``_x``) imported from another module of ours (``PRIVATE_ALLOWED``
  lists the ones left to a later change).
- the workbench's own modules import each other without a circle (``module_graph``): the
  front door (``session``) stands on its back ends, planning and results, never under them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PRODUCT = ("workbench", "federation", "privacy_budgets", "datasets_synthetic")
SPLIT = "federation"  # the package whose direct children are components of their own

# Top to bottom. A component may import any component of a lower layer, none of its own
# layer (but itself) and none above.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        {"workbench"},
        {"federation.engines"},
        {"federation.site", "federation.coordinator"},
        {"federation.protocol"},
        {"federation.training", "federation.analytics", "datasets_synthetic"},
        {"federation.data"},
        # Above the errors they map: the exit-code table (cli_support) and the one door to
        # Flower's private names (its error is an InternalFault), below every room.
        {"federation.cli_support", "federation.flwr_contract", "federation.monitoring", "federation.service_units"},
        {
            "federation.errors",
            "federation.processes",
            "federation.app_bundle",
        },
        {"federation"},  # the package's own __init__
        {"privacy_budgets"},
    )
)

# Private names another module may still import (none: rename it public or move it).
PRIVATE_ALLOWED: frozenset[str] = frozenset()

FLOWER = ("flwr",)
FORBIDDEN_EXTERNAL: dict[str, tuple[str, ...]] = {
    "privacy_budgets": ("torch", "flwr", "opacus"),
    "federation.training": FLOWER,
    "federation.analytics": FLOWER,
    "federation.data": FLOWER,
}


@dataclass(frozen=True)
class Import:
    """One imported module, as ``importer`` names it at ``line``."""

    importer: str  # dotted module name
    path: Path
    line: int
    imported: str  # dotted module name (for ``from x import y``: x.y when x.y is a module, else x)
    name: str = ""  # for ``from x import y``: y


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_imports(root: Path, packages: tuple[str, ...] = PRODUCT) -> list[Import]:
    """Every import statement of every module under ``root/<package>``."""
    modules = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(name, path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, importer=name, is_package=is_package)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.append(
                        Import(name, path, node.lineno, candidate if candidate in modules else base, alias.name)
                    )
    return found


def _absolute(node: ast.ImportFrom, *, importer: str, is_package: bool) -> str:
    if not node.level:
        return str(node.module)
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def component(module: str) -> str:
    """The component a dotted module name belongs to (for third-party modules: its top package)."""
    parts = module.split(".")
    if parts[0] == SPLIT and len(parts) > 1:
        return f"{SPLIT}.{parts[1]}"
    return parts[0]


def is_ours(module: str) -> bool:
    return module.split(".")[0] in PRODUCT


def layer_of(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    return None


def violations(imports: list[Import]) -> list[str]:
    """Every broken contract, one line each, naming the file and line."""
    problems = []
    for imp in imports:
        source = component(imp.importer)
        target = component(imp.imported)
        where = f"{imp.path.as_posix()}:{imp.line}"
        if source == target:
            continue
        if is_ours(imp.imported):
            problems += _layering(source, target, where, imp)
        for banned in FORBIDDEN_EXTERNAL.get(source, ()):
            if target == banned:
                problems.append(f"{where}: {imp.importer} imports {imp.imported}; {source} must not import {banned}")
    problems += [f"components that import each other in a circle: {', '.join(group)}" for group in cycles(imports)]
    problems += private_imports(imports)
    return sorted(set(problems))


def private_imports(imports: list[Import]) -> list[str]:
    """``from x import _y`` where x is another module of ours: rename it public or move it."""
    return [
        f"{imp.path.as_posix()}:{imp.line}: {imp.importer} imports the private name {imp.name} of {imp.imported}"
        for imp in imports
        if imp.name.startswith("_")
        and not imp.name.startswith("__")
        and is_ours(imp.imported)
        and imp.imported != imp.importer
        and f"{imp.imported}:{imp.name}" not in PRIVATE_ALLOWED
    ]


def _layering(source: str, target: str, where: str, imp: Import) -> list[str]:
    high, low = layer_of(source), layer_of(target)
    for name, index in ((source, high), (target, low)):
        if index is None:
            return [f"{where}: {name} stands in no layer of tests/import_contracts.py LAYERS; place it there"]
    if high == low:
        return [
            f"{where}: {imp.importer} imports {imp.imported}; {source} and {target} share a layer "
            "and never import each other"
        ]
    if high > low:
        return [f"{where}: {imp.importer} imports {imp.imported}; {source} sits below {target} and must not import it"]
    return []


def graph(imports: list[Import]) -> dict[str, set[str]]:
    """Component -> the components of ours it imports."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        source, target = component(imp.importer), component(imp.imported)
        edges.setdefault(source, set())
        if is_ours(imp.imported) and source != target:
            edges[source].add(target)
    return edges


def module_graph(imports: list[Import], *, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (inside one component)."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.importer.split(".")[0] == package:
            edges.setdefault(imp.importer, set())
            if imp.imported.split(".")[0] == package and imp.imported != imp.importer:
                edges[imp.importer].add(imp.imported)
    return edges


def cycles(imports: list[Import]) -> list[list[str]]:
    """The groups of components that import each other in a circle, each sorted by name."""
    return circles(graph(imports))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one member, each sorted by name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups
