"""The loaded extensions and what they registered; calls their hooks, each behind its own guard.

`ExtensionRegistry.fire(hook, argument)` calls every enabled extension's functions for `hook` in
load order (folder name order). An exception is caught there: logged with the extension's name and
the traceback, and turned into a notice the next job result carries (each extension+hook once per
run of Easel, so a failing per-step hook does not flood the page). The generation goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.extensions.api import HOOKS, ApiRoute, ExtensionApi, ExtensionSetting, Script, Tab
from modules.i18n import N_

log = logging.getLogger(__name__)


@dataclass
class Manifest:
    """extension.json: what an extension says about itself."""

    name: str
    version: str = "0"
    api_version: int = 1
    enabled: bool = True  # the default; the Settings list overrides it
    description: str = ""


@dataclass
class Extension:
    """One folder of extensions/: its manifest, whether it is enabled, and (when loaded) what it registered."""

    folder: Path
    manifest: Manifest
    enabled: bool
    api: ExtensionApi | None = None  # None: disabled, or failed to load (see `error`)
    error: str | None = None
    css: str = ""
    javascript: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def status(self) -> str:
        if self.error:
            return N_(f"failed: {self.error}")
        if not self.enabled:
            return N_("disabled")
        return N_("loaded") if self.api is not None else N_("enabled (loads at the next start)")


@dataclass
class ExtensionRegistry:
    extensions: list[Extension] = field(default_factory=list)
    _reported: set[tuple[str, str]] = field(default_factory=set)
    _notices: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> list[Extension]:
        return [e for e in self.extensions if e.api is not None]

    def get(self, name: str) -> Extension | None:
        return next((e for e in self.extensions if e.name == name), None)

    # -- hooks -----------------------------------------------------------------------------------

    def has(self, hook: str) -> bool:
        return any(e.api.hooks[hook] for e in self.loaded)  # type: ignore[union-attr]

    def fire(self, hook: str, argument: Any) -> None:
        """Calls every extension's `hook` functions with `argument`; a failure is contained."""
        assert hook in HOOKS, hook
        for extension in self.loaded:
            for function in extension.api.hooks[hook]:  # type: ignore[union-attr]
                self.guarded(extension.name, hook, function, argument)

    def guarded(self, extension: str, where: str, function, *args: Any) -> Any:
        """`function(*args)`, or None after logging and noting an exception it raised."""
        try:
            return function(*args)
        except Exception as error:  # an extension's bug must not stop the generation
            self.report(extension, where, error)
            return None

    def report(self, extension: str, where: str, error: BaseException) -> None:
        log.error("Extension %r failed in %s: %s", extension, where, error, exc_info=error)
        if (extension, where) not in self._reported:
            self._reported.add((extension, where))
            self._notices.append(f"Extension {extension!r} failed in {where} ({type(error).__name__}: {error}); the job went on without it")

    def take_notices(self) -> list[str]:
        """The failures not shown yet (each extension+hook once)."""
        notices, self._notices = self._notices, []
        return notices

    # -- what extensions added ------------------------------------------------------------------

    def scripts(self, tab: str, always_on: bool | None = None) -> list[Script]:
        found = [s for e in self.loaded for s in e.api.scripts if tab in s.tabs]  # type: ignore[union-attr]
        return [s for s in found if always_on is None or s.always_on == always_on]

    def find_script(self, name: str, tab: str) -> Script | None:
        """A script of `tab` by title or API name, any case."""
        wanted = name.strip().lower()
        return next((s for s in self.scripts(tab) if s.name == wanted), None)

    def tabs(self) -> list[tuple[str, Tab]]:
        return [(e.name, t) for e in self.loaded for t in e.api.tabs]  # type: ignore[union-attr]

    def settings(self) -> list[tuple[str, ExtensionSetting]]:
        return [(e.name, s) for e in self.loaded for s in e.api.settings]  # type: ignore[union-attr]

    def routes(self) -> list[tuple[str, ApiRoute]]:
        return [(e.name, r) for e in self.loaded for r in e.api.routes]  # type: ignore[union-attr]

    def css(self) -> str:
        return "\n".join(e.css for e in self.loaded if e.css)

    def javascript(self) -> list[tuple[str, str]]:
        return [(e.name, e.javascript) for e in self.loaded if e.javascript]
