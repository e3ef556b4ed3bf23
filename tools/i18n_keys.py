"""Every English text Easel may show, for the translation tables (modules/locales/*.json).

    .venv/bin/python tools/i18n_keys.py              # lists the texts a table lacks (zh-CN)
    .venv/bin/python tools/i18n_keys.py --json KEYS  # writes them all, with where each comes from

Three sources:
1. the page as built: every label, choice, tooltip under a label, button, tab and accordion marked
   `L(...)` (walked on a real build of the UI on a tiny model);
2. the code: the literal texts handed to `say(...)`, `error_html(...)`, `L(...)`, the tooltips and
   the script texts;
3. the sentences users read from the code below the UI: `UserError` messages (and its subclasses)
   and the notes jobs write, as templates: an f-string's `{expression}` becomes a `{name}`; and the
   texts kept as data, marked `N_("...")` where they are written.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAY_FUNCTIONS = {"say", "L", "error_html", "html", "step_html", "starting_html"}
ERROR_CLASSES = re.compile(r"(User|Request|ModelLoad|ModelNotFound|UnreadableImage|PromptSyntax|QueueFull|OutOfMemory|StyleFile|ImageSave|"
                           r"HistoryNotFound|JobNotFound|UnknownUpscaler|Extras|ControlNet|Preprocessor|UnsafeCheckpoint|Detector[A-Za-z]*|Detailer[A-Za-z]*|Extension[A-Za-z]*|DynamicPrompts[A-Za-z]*|RegionalPrompt|Merge)Error$")
# Read by HTTP clients or in the console, never on the page: the API's own errors, the command line.
NOT_SHOWN = ("modules/api/", "modules/cmd_args.py", "modules/backends/")


def _template(node: ast.expr) -> str | None:
    """A literal string, or an f-string as a template ({name} for each expression)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts, count, used = [], 0, set()
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value).replace("{", "{{").replace("}", "}}"))
            else:
                expression = ast.unparse(value.value) if isinstance(value, ast.FormattedValue) else "value"
                name = re.sub(r"\W+", "_", expression).strip("_").split("_")[-1] or f"value{count}"
                if not name.isidentifier() or name[0].isdigit():
                    name = f"value{count}"
                base, number = name, 2
                while name in used:  # each value its own name, so a translation can put them in any order
                    name, number = f"{base}{number}", number + 1
                used.add(name)
                parts.append("{" + name + "}")
                count += 1
        text = "".join(parts)
        return text.replace("{{", "{").replace("}}", "}")
    return None


def code_texts() -> dict[str, str]:
    """text -> where it was found."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "modules").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative.startswith(NOT_SHOWN):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else ""
            arguments = list(node.args)
            if name in SAY_FUNCTIONS and relative.startswith("modules/ui"):
                candidates = arguments[:2] if name == "html" else arguments[:1]
            elif ERROR_CLASSES.search(name) or name == "UserError":
                candidates = arguments[:1]
            elif name == "N_":
                candidates = arguments[:1]
            elif name == "NotApplied" and len(arguments) >= 3:
                candidates = arguments[2:3]
            elif name == "append" and isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value).endswith("notes"):
                candidates = arguments[:1]
            else:
                continue
            for argument in candidates:
                text = _template(argument)
                if text and re.search(r"[A-Za-z]{2}", text):
                    found.setdefault(text, f"{relative}:{node.lineno}")
    return found


def built_page():
    """The page's Blocks as `webui.py` builds them, on a tiny model (nothing is served)."""
    import tempfile

    from modules.cmd_args import parse_args
    from modules.services import build_services
    from modules.ui.app import build_ui
    from tools.make_test_models import write_test_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_test_checkpoint(root / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1", "tiny", seed=1)
        args = parse_args(["--models-dir", str(root / "models"), "--data-dir", str(root / "data"), "--skip-load", "--no-demo-model"])
        services = build_services(args, load_now=False)
        try:
            return build_ui(services)
        finally:
            services.close()


def page_texts() -> dict[str, str]:
    """Every L(...) text of the page as built (labels, choices, info, values) on a tiny model."""
    from gradio.i18n import I18nData

    found: dict[str, str] = {}
    blocks = built_page()

    def visit(value: object, where: str) -> None:
        if isinstance(value, I18nData):
            found.setdefault(value.key, where)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, where)

    for block in blocks.blocks.values():
        where = f"page:{getattr(block, 'elem_id', None) or type(block).__name__}"
        for attribute in ("label", "info", "placeholder", "value", "choices"):
            visit(getattr(block, attribute, None), where)
    return found


def all_texts() -> dict[str, str]:
    from modules.ui.page_script import SCRIPT_TEXTS
    from modules.ui.text import GRADIO_GAPS
    from modules.ui.tooltips import TOOLTIPS

    texts = {**page_texts(), **code_texts()}
    for text in (*TOOLTIPS.values(), *SCRIPT_TEXTS):
        texts.setdefault(text, "modules/ui/tooltips.py")
    for text in GRADIO_GAPS.values():
        texts.setdefault(text, "modules/ui/text.py")
    for manifest in sorted((ROOT / "extensions").glob("*/extension.json")):  # the bundled extensions' descriptions
        description = json.loads(manifest.read_text(encoding="utf-8")).get("description")
        if description:
            texts.setdefault(description, str(manifest.relative_to(ROOT)))
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every text and its origin to this file")
    parser.add_argument("--language", default="zh-CN")
    options = parser.parse_args()
    texts = all_texts()
    if options.json:
        options.json.write_text(json.dumps(texts, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    table_path = ROOT / "modules" / "locales" / f"{options.language}.json"
    table = json.loads(table_path.read_text(encoding="utf-8")) if table_path.exists() else {}
    missing = sorted(text for text in texts if text not in table)
    for text in missing:
        print(f"{texts[text]}\t{text}")
    print(f"{len(texts)} texts, {len(missing)} without a {options.language} translation", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
