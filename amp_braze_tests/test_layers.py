"""The package's layers run one way: each area imports only areas below it, no import circle at
any depth, and the Braze package imports nothing else from amp_braze (DESIGN.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import amp_braze

PACKAGE = Path(amp_braze.__file__).parent
# Lowest first. An area may import its own modules and areas of lower layers; never a peer.
LAYERS: list[set[str]] = [
    {"braze"},
    {"failpoints", "sql_reads", "sorted_rows", "catalogue", "engagement_schema", "metadata"},
    {"config"},
    {"storage"},
    # Which shard a customer is in, the layout a storage root is split in; figures over shards.
    {"shards", "shard_figures"},
    {"resources"},
    {"profiles", "identity", "currents"},
    {"audiences"},
    {"sync"},
    {"events"},
    {"definitions"},
    {"step_preload"},  # what a run's step server imports: the definitions, built once
    {"resharding"},  # runs a sync's jobs in this process, and changes the number of shards
    {"demo"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Per module, the amp_braze modules it imports (``from pkg import sub`` is an edge to sub),
    at any depth of the module: imports inside functions count too."""
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out = edges.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
                if subs:
                    out |= subs
                if base in modules and len(subs) < len(node.names):
                    out.add(base)
        out.discard(name)
    return edges


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "amp_braze"


def _layer(area: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if area in names)


EDGES = _imports(_modules())


def test_every_area_has_a_layer():
    areas = {_area(m) for m in EDGES} - {"amp_braze"}
    assert areas <= set().union(*LAYERS), sorted(areas - set().union(*LAYERS))


def test_areas_import_only_areas_below_them():
    wrong = sorted(
        f"{src} imports {dst}"
        for src, dsts in EDGES.items()
        for dst in dsts
        if _area(src) != _area(dst)
        and "amp_braze" not in (_area(src), _area(dst))
        and _layer(_area(dst)) >= _layer(_area(src))
    )
    assert wrong == []


def test_the_braze_package_imports_nothing_else_from_amp_braze():
    outside = sorted(
        f"{src} imports {dst}"
        for src, dsts in EDGES.items()
        if _area(src) == "braze"
        for dst in dsts
        if _area(dst) != "braze"
    )
    assert outside == []


def test_no_import_circle_at_any_depth():
    """No module reaches itself through the modules it imports (within an area too)."""
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(EDGES.get(m, ())):
            if state.get(n) == 1:
                circles.append(" -> ".join(path[path.index(n) :] + [m, n]))
            elif n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(EDGES):
        if m not in state:
            visit(m, [])
    assert circles == []
