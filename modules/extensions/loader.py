"""Finding and loading extensions: `extensions/<folder>/extension.json` + `extension.py`.

A folder is an extension when it has `extension.json` (name, version, api_version, enabled,
description). Enabled ones (the manifest's `enabled`, overridden by the Settings list) have their
`extension.py` imported as a package (so it may import its own modules relatively) and its
`setup(api)` called; `style.css` and `javascript/*.js` are read for the page. A manifest that asks
for a newer API, a missing setup(), or an exception while importing or in setup() leave that
extension out with its error shown in the Settings list; the others load. Nothing is installed or
downloaded: an extension brings what it needs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable

from modules.extensions.api import API_VERSION, ExtensionApi
from modules.extensions.registry import Extension, ExtensionRegistry, Manifest

log = logging.getLogger(__name__)

MANIFEST = "extension.json"
ENTRY = "extension.py"


def read_manifest(folder: Path) -> Manifest:
    """The folder's manifest; ValueError with the reason when it cannot be used."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{MANIFEST} is not readable JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ValueError(f'{MANIFEST} needs a "name"')
    api_version = data.get("api_version", 1)
    if not isinstance(api_version, int) or isinstance(api_version, bool):
        raise ValueError(f'"api_version" must be a whole number, not {api_version!r}')
    return Manifest(
        name=data["name"].strip(), version=str(data.get("version", "0")), api_version=api_version,
        enabled=bool(data.get("enabled", True)), description=str(data.get("description", "")),
    )


def discover(root: Path, enabled_override: dict[str, bool]) -> list[Extension]:
    """Every extension folder under `root` (sorted by folder name), loaded or not yet."""
    found: list[Extension] = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST).exists()):
        try:
            manifest = read_manifest(folder)
        except ValueError as error:
            found.append(Extension(folder, Manifest(folder.name), enabled=False, error=str(error)))
            continue
        if any(e.name == manifest.name for e in found):
            found.append(Extension(folder, manifest, enabled=False, error=f"another extension is already named {manifest.name!r}"))
            continue
        found.append(Extension(folder, manifest, enabled=enabled_override.get(manifest.name, manifest.enabled)))
    return found


def load_extensions(root: Path, enabled_override: dict[str, bool], setting: Callable[[str], Any]) -> ExtensionRegistry:
    """Discovers the extensions under `root` and loads the enabled ones. `setting(key)` reads an
    extension setting ("<extension>.<key>")."""
    registry = ExtensionRegistry(discover(root, enabled_override))
    for extension in registry.extensions:
        if extension.enabled and extension.error is None:
            _load(extension, setting)
    loaded = [e.name for e in registry.loaded]
    if registry.extensions:
        log.info("Extensions: %s loaded%s", ", ".join(loaded) or "none",
                 "".join(f"; {e.name}: {e.status}" for e in registry.extensions if e.api is None))
    return registry


def _load(extension: Extension, setting: Callable[[str], Any]) -> None:
    manifest = extension.manifest
    if manifest.api_version > API_VERSION:
        extension.error = f"needs extension API {manifest.api_version}; this Easel has {API_VERSION}"
        return
    entry = extension.folder / ENTRY
    if not entry.exists():
        extension.error = f"has no {ENTRY}"
        return
    module_name = "easel_extension_" + re.sub(r"\W", "_", extension.folder.name)
    api = ExtensionApi(manifest.name, extension.folder, setting)
    try:
        spec = importlib.util.spec_from_file_location(module_name, entry, submodule_search_locations=[str(extension.folder)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # so its own relative imports find it
        spec.loader.exec_module(module)
        setup = getattr(module, "setup", None)
        if not callable(setup):
            extension.error = f"{ENTRY} defines no setup(api) function"
            return
        setup(api)
    except Exception as error:  # any failure leaves this extension out, not Easel
        log.exception("Extension %r failed to load", manifest.name)
        extension.error = f"{type(error).__name__}: {error}"
        sys.modules.pop(module_name, None)
        return
    extension.api = api
    extension.css = _read(extension.folder / "style.css")
    scripts = sorted((extension.folder / "javascript").glob("*.js")) if (extension.folder / "javascript").is_dir() else []
    extension.javascript = "\n".join(_read(path) for path in scripts)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as error:
        log.warning("Could not read %s: %s", path, error)
        return ""
