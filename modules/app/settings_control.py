"""Settings as the UI's Settings tab and the API's /options change them.

`apply` checks every value before anything changes, switches the checkpoint and VAE through the
model controls, saves the rest to config.json (written whole, then renamed) and applies what can
change live (cache sizes, the queue limit); settings that need a restart are saved and logged.
Settings Easel does not use itself (A1111 options clients set, extensions' settings) are kept beside
its own in config.json and shown by `values`.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from modules.app.models import ModelControl
from modules.checkpoints.manager import ModelManager
from modules.config import Settings, SettingsStore
from modules.errors import UserError
from modules.extensions.registry import ExtensionRegistry
from modules.jobs import JobQueue

log = logging.getLogger(__name__)

# Settings that only take effect when Easel starts again.
RESTART_SETTINGS = ("device", "dtype", "sd_vae_checkpoint_cache", "language")
EXTENSIONS_ENABLED_KEY = "extensions_enabled"  # config.json: {extension name: enabled}, set from Settings


class SettingsControl:
    """Reading and changing the settings (config.json)."""

    def __init__(self, store: SettingsStore, models: ModelControl, manager: ModelManager, queue: JobQueue, extensions: ExtensionRegistry):
        self.store = store
        self.models = models
        self.manager = manager
        self.queue = queue
        self.extensions = extensions

    @property
    def settings(self) -> Settings:
        return self.store.settings

    def values(self) -> dict[str, Any]:
        """All settings, with the active checkpoint's title and hash (A1111's `/options` shape)."""
        values = {**self.store.extra, **{f.name: getattr(self.settings, f.name) for f in fields(Settings)}}
        title = self.models.active_title()
        if title is not None:
            values["sd_model_checkpoint"] = title
        values["sd_checkpoint_hash"] = self.models.active_sha256()
        values["sd_vae"] = self.manager.vae_choice
        return values

    def apply(self, values: dict[str, Any]) -> list[str]:
        """Applies settings: the checkpoint and VAE are switched, others validated and saved (all of
        them checked before anything changes). Returns the keys it did not know (ignored, as A1111)."""
        known = {f.name for f in fields(Settings)}
        unknown = [key for key in values if key not in known and key != "sd_checkpoint_hash"]
        rest = {k: v for k, v in values.items() if k in known and k not in ("sd_model_checkpoint", "sd_vae")}
        for key, value in rest.items():
            try:
                self.settings.validate(key, value)
            except ValueError as error:
                raise UserError(str(error)) from error
        for key in ("sd_model_checkpoint", "sd_vae"):
            if key in values and not isinstance(values[key], str):
                raise UserError(f"{key} must be a string, not {values[key]!r}.")
        with self.manager.lock:
            if "sd_model_checkpoint" in values:
                self.models.switch_checkpoint(values["sd_model_checkpoint"])
            if "sd_vae" in values:
                self.models.switch_vae(values["sd_vae"])
            if rest:
                self.store.update(rest)
                self._apply_live(rest)
        return unknown

    def save_extra(self, values: dict[str, Any]) -> None:
        """Stores settings Easel does not use itself (the API's A1111 options, already checked by
        the caller) in config.json beside Easel's own; `values()` shows them."""
        if not values:
            return
        self.store.extra.update(values)
        self.store.save()  # written whole to a temporary file and renamed: never half a file

    def set_extensions_enabled(self, enabled: dict[str, bool]) -> list[str]:
        """Saves which extensions load at the next start; returns the names whose state changes
        then (their code is loaded or dropped only by a restart)."""
        known = {e.name: e for e in self.extensions.extensions}
        unknown = sorted(set(enabled) - set(known))
        if unknown:
            raise UserError(f"There is no extension named {unknown[0]!r}.")
        self.save_extra({EXTENSIONS_ENABLED_KEY: {**(self.store.extra.get(EXTENSIONS_ENABLED_KEY) or {}), **enabled}})
        return sorted(name for name, on in enabled.items() if on != (known[name].api is not None))

    def set_extension_setting(self, extension: str, key: str, value: Any) -> None:
        declared = {(name, s.key): s for name, s in self.extensions.settings()}
        spec = declared.get((extension, key))
        if spec is None:
            raise UserError(f"Extension {extension!r} has no setting {key!r}.")
        if spec.choices and value not in spec.choices:
            raise UserError(f"{spec.label} must be one of {', '.join(spec.choices)}, not {value!r}.")
        self.save_extra({f"{extension}.{key}": value})

    def _apply_live(self, values: dict[str, Any]) -> None:
        if "sd_checkpoint_cache" in values:
            self.manager.set_cache_size(self.settings.sd_checkpoint_cache)
        if "max_queued_jobs" in values:
            self.queue.set_limit(self.settings.max_queued_jobs)
        if "sd2_prediction" in values:
            self.manager.options.sd2_prediction = self.settings.sd2_prediction  # for the next load
        later = [key for key in values if key in RESTART_SETTINGS]
        if later:
            log.info("Saved %s; they take effect when Easel restarts.", ", ".join(later))
