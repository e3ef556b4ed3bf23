"""DESIGN.md's rules that a program can check: gradio stays in modules/ui, nothing reaches a hub."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_gradio_is_imported_only_in_modules_ui_and_webui():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "modules").rglob("*.py")
        if "gradio" in _imports(p) and (ROOT / "modules" / "ui") not in p.parents
    ]
    assert offenders == []


def test_no_hub_downloads_in_product_code():
    banned = ("hf_hub_download", "snapshot_download", "cached_download")
    offenders = []
    for p in list((ROOT / "modules").rglob("*.py")) + [ROOT / "webui.py"]:
        if p.exists() and any(word in p.read_text(encoding="utf-8") for word in banned):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []


def test_pickles_are_only_loaded_weights_only():
    for p in (ROOT / "modules").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                keywords = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in keywords and getattr(keywords["weights_only"], "value", None) is True, f"{p}:{node.lineno}"


# --- the import graph ------------------------------------------------------------------------------
# Which package may import which (docs/architecture.md): the engine and its tables below, the
# application layer (jobs, results, services) above them, the UI and the API on top. An arrow that
# points up makes the engine depend on the app around it, and a cycle makes the two one knot.


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules_imports() -> dict[str, set[str]]:
    """modules/ module -> the modules/ modules it imports (anywhere in the file, lazy imports too;
    not the ones under `if TYPE_CHECKING:`, which never run)."""
    modules = {_module_name(p): p for p in (ROOT / "modules").rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for n in ast.walk(node)}
        found: set[str | None] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                found |= {resolve(alias.name) for alias in node.names if alias.name.startswith("modules")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("modules"):
                found |= {resolve(f"{node.module}.{alias.name}") or resolve(node.module) for alias in node.names}
        graph[name] = {m for m in found if m is not None and m != name}
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles_between_modules_or_packages():
    graph = _modules_imports()
    assert _cycles(graph) == []
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        packages.setdefault(_package(module), set()).update(_package(m) for m in imported if _package(m) != _package(module))
    assert _cycles(packages) == []


# The engine's packages know nothing of the application around them.
ENGINE = ("modules.generation", "modules.sampling", "modules.prompts", "modules.checkpoints", "modules.lora", "modules.upscalers",
          "modules.controlnet", "modules.detailer")
APPLICATION = ("modules.app", "modules.services", "modules.backends", "modules.extensions", "modules.history", "modules.outputs",
               "modules.jobs", "modules.api", "modules.ui", "modules.infotext")


def test_the_engine_imports_nothing_from_the_application_layer():
    offenders = sorted(
        f"{module} imports {imported}"
        for module, imports in _modules_imports().items() if module.startswith(ENGINE)
        for imported in imports if imported.startswith(APPLICATION)
    )
    assert offenders == []



def test_model_families_are_asked_for_their_facts_never_tested_by_name():
    """A family's facts live in its Family row (modules/checkpoints/architecture.py); code elsewhere
    asks the row, so a new family is a new row, not a hunt for string tests."""
    import re

    names = "|".join(re.escape(f'"{name}"') for name in ("sd1-inpaint", "sd2-v", "sdxl-base", "sdxl-refiner"))
    by_name = re.compile(rf"family(_name)?\.?(name)?\s*(==|!=|\.startswith|\.endswith)|family\.name\s+in\b|{names}")
    offenders = [f"{p.relative_to(ROOT)}:{number}" for p in (ROOT / "modules").rglob("*.py") if (ROOT / "modules" / "checkpoints") not in p.parents
                 for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if by_name.search(line)]
    assert offenders == []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "modules").rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
