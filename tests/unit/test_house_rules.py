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
