"""Imports inside the package point one way: no cycles, estimators below explanations.

Read statically (every ``import`` statement, at module level or inside a
function), so a lazy import cannot hide a dependency.
"""

import ast
from pathlib import Path

import napari_microstructure

PACKAGE = Path(napari_microstructure.__file__).parent
NAME = "napari_microstructure"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package modules imported anywhere in ``path`` (absolute names)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith(NAME):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(NAME))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in _imports(p) if t in modules and t != m} for m, p in modules.items()}


#: the one io module core may use: maps are written to a chunked result store as they are
#: computed (``store=`` of ``probability_map`` / ``classify_map``)
CORE_MAY_IMPORT = {f"{NAME}.io.store"}


def test_core_never_imports_napari_layers_or_the_command_line():
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith(f"{NAME}.core"):
            bad = {t for t in targets if not t.startswith(f"{NAME}.core") and t not in CORE_MAY_IMPORT}
            assert not bad, (module, bad)
    # and that store module leans on nothing in core but the errors and the file helpers, which lean on
    # the errors alone (no way back up)
    leaves = {f"{NAME}.core.errors", f"{NAME}.core._files"}
    assert graph[f"{NAME}.core._files"] <= {f"{NAME}.core.errors"}, graph[f"{NAME}.core._files"]
    for allowed in CORE_MAY_IMPORT:
        assert graph[allowed] <= leaves, graph[allowed]


def test_estimators_import_no_explanations_and_pipelines_not_each_other():
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith((f"{NAME}.core.micrograph", f"{NAME}.core.ebsd", f"{NAME}.core.nn")):
            assert not {t for t in targets if t.startswith(f"{NAME}.core.explain")}, module
        if module.startswith(f"{NAME}.core.micrograph"):
            assert not {t for t in targets if t.startswith(f"{NAME}.core.ebsd")}, module
        if module.startswith(f"{NAME}.core.ebsd"):
            assert not {t for t in targets if t.startswith(f"{NAME}.core.micrograph")}, module
    # the EBSD map code uses the classifier's public methods only
    mapping = (PACKAGE / "core" / "ebsd" / "mapping.py").read_text()
    assert "clf._" not in mapping


def test_no_import_cycle_in_core():
    graph = {m: {t for t in ts if t.startswith(f"{NAME}.core")} for m, ts in _graph().items()
             if m.startswith(f"{NAME}.core")}
    # package __init__ files re-export their modules: count only module -> module edges
    graph = {m: {t for t in ts if not (PACKAGE.parent / (t.replace(".", "/") + "/__init__.py")).exists()}
             for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
