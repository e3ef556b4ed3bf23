"""Restoring a picture in this Easel: its parameters, and the models it names looked up here.

`modules/infotext/restore.py` turns an infotext's values into request fields and names the settings
Easel has no place for. This adds what needs the model folders: the checkpoint (by hash, then name),
the VAE (by file name), the LoRAs and embeddings. Whatever is not here joins the same "not applied"
list, so the UI's notice and the API's error name every missing piece in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Collection

from modules.detailer.infotext import suffix as detailer_suffix
from modules.errors import UserError
from modules.generation.request import HIRES_UPSCALERS
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import NotApplied, not_applied_sentence, restore_request

if TYPE_CHECKING:
    from modules.checkpoints.registry import ModelFile, ModelRegistry
    from modules.controlnet.catalog import ControlNetCatalog
    from modules.controlnet.units import ControlUnit
    from modules.detailer.catalog import DetectorCatalog
    from modules.lora.files import LoraLibrary
    from modules.prompts.embeddings import EmbeddingLibrary


@dataclass
class PictureSettings:
    """What restoring a picture does here: the request fields to set, the checkpoint and VAE to
    switch to (None: keep the current one), and every setting that could not be applied."""

    params: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    checkpoint: "ModelFile | None" = None
    vae: str | None = None
    not_applied: list[NotApplied] = field(default_factory=list)

    def summary(self) -> str:
        """"Not applied: key: value (reason); ..." or "" when everything was applied."""
        return not_applied_sentence(self.not_applied)


class PictureRestorer:
    """Restores pictures against the models this Easel has."""

    def __init__(self, registry: "ModelRegistry", loras: "LoraLibrary | None", embeddings: "EmbeddingLibrary | None",
                 upscalers: Collection[str] = HIRES_UPSCALERS, controlnets: "ControlNetCatalog | None" = None,
                 detectors: "DetectorCatalog | None" = None):
        self.registry, self.loras, self.embeddings, self.upscalers = registry, loras, embeddings, upscalers
        self.controlnets, self.detectors = controlnets, detectors

    def restore(self, infotext: str, settable: Collection[str], *, hires_in_picture: bool = False) -> PictureSettings:
        """The picture's settings for a target that takes the fields `settable` (see restore_request)."""
        params = parse_infotext(infotext)
        restored = restore_request(params, settable, upscalers=self.upscalers, hires_in_picture=hires_in_picture)
        settings = PictureSettings(params, restored.fields)
        settings.checkpoint, model_issue = self.checkpoint(params.get("Model hash"), params.get("Model"))
        settings.vae, vae_issue = self.vae(params.get("VAE"), params.get("VAE hash"))
        settings.not_applied = [*(issue for issue in (model_issue, vae_issue) if issue), *restored.not_applied,
                                *self.missing_networks(params.get("Prompt", ""), params)]
        if restored.fields.get("detailer") is not None and self.detectors is not None:
            have = set(self.detectors.names())
            for position, tab in restored.fields["detailer"].active_tabs:
                if tab.ad_model not in have:
                    key = "ADetailer model" + detailer_suffix(position)
                    settings.not_applied.append(NotApplied(key, tab.ad_model, "not among your detectors (models/adetailer)"))
        if "control_units" in restored.fields:
            settings.fields["control_units"], unit_issues = self.control_units(restored.fields["control_units"])
            settings.not_applied += unit_issues
        return settings

    def control_units(self, units: dict[int, "ControlUnit"]) -> tuple[dict[int, "ControlUnit"], list[NotApplied]]:
        """The restored units with their model and preprocessor as named here; a model or
        preprocessor Easel does not have is named (the unit keeps None / none), and so is every
        unit's control image, which a picture does not carry."""
        from modules.controlnet.preprocess import ALIASES, PREPROCESSORS

        found: dict[int, ControlUnit] = {}
        issues: list[NotApplied] = []
        for slot, unit in units.items():
            key = f"ControlNet {slot}"
            module = ALIASES.get(unit.module, unit.module)
            if module not in PREPROCESSORS:
                issues.append(NotApplied(key, f"Module: {unit.module}", "not a preprocessor Easel has; the unit uses none"))
                module = "none"
            model = unit.model
            if model not in ("None", ""):
                try:
                    model = self.controlnets.find(model).title if self.controlnets is not None else "None"
                except UserError:
                    model = "None"
                if model == "None":
                    issues.append(NotApplied(key, f"Model: {unit.model}", "not among your ControlNet models (models/ControlNet)"))
            found[slot] = replace(unit, module=module, model=model)
            issues.append(NotApplied(key, "control image", "a picture does not carry its control image: add it to the unit"))
        return found, issues

    def checkpoint(self, model_hash: str | None, model_name: str | None) -> tuple["ModelFile | None", NotApplied | None]:
        """The checkpoint a picture names, by its hash first, then by name; what to tell the user
        when it is not here, or only its name matched."""
        if model_hash:
            wanted = model_hash.strip().lower()
            for entry in self.registry.checkpoints:
                known = self.registry.known_sha256(entry)
                if known is not None and known.startswith(wanted):
                    return entry, None
        named = " ".join(part for part in (model_name or "", f"[{model_hash}]" if model_hash else "") if part)
        if model_name:
            by_name: ModelFile | None
            try:
                by_name = self.registry.find_checkpoint(model_name)
            except UserError:
                by_name = None
            if by_name is not None:
                known = self.registry.known_sha256(by_name)
                if model_hash and known is not None and not known.startswith(model_hash.strip().lower()):
                    return by_name, NotApplied("Model", named, f"using {by_name.name}, same name but its hash {known[:10]} differs")
                return by_name, None
        if not named:
            return None, None
        return None, NotApplied("Model", named, "not among your checkpoints")

    def vae(self, name: str | None, vae_hash: str | None) -> tuple[str | None, NotApplied | None]:
        """The VAE a picture names (its file name), or what to tell the user when it is not here."""
        if not name:
            return None, None
        try:
            entry = self.registry.find_vae(name)
        except UserError:
            entry = None
        if entry is None or entry.name != name and entry.path.name != name:
            return None, NotApplied("VAE", name, "not among your VAEs")
        known = self.registry.known_sha256(entry)
        if vae_hash and known is not None and not known.startswith(vae_hash.strip().lower()):
            return entry.name, NotApplied("VAE", name, f"using {entry.name}, same name but its hash {known[:10]} differs")
        return entry.name, None

    def missing_networks(self, prompt: str, params: dict[str, str]) -> list[NotApplied]:
        """The LoRAs (tags in `prompt`, "Lora hashes") and embeddings ("TI hashes") a picture names
        that are not here."""
        from modules.prompts.extra_networks import extract_extra_networks

        missing: list[NotApplied] = []
        if self.loras is not None:
            wanted = {call.positional[0] for call in extract_extra_networks(prompt)[1] if call.kind == "lora" and call.positional}
            wanted |= set(hash_names(params.get("Lora hashes", "")))
            have = {e.name for e in self.loras.entries()} | {e.alias for e in self.loras.entries()}
            missing += [NotApplied("LoRA", name, f"not in {self.loras.folder.name}/") for name in sorted(wanted - have)]
        if self.embeddings is not None:
            wanted = set(hash_names(params.get("TI hashes", "")))
            missing += [NotApplied("Embedding", name, "not among your embeddings") for name in sorted(wanted - set(self.embeddings.embeddings))]
        return missing


def hash_names(value: str) -> list[str]:
    """The names of an infotext's "name: hash, name2: hash" value (Lora hashes, TI hashes)."""
    return [part.rsplit(":", 1)[0].strip() for part in value.strip().strip('"').split(",") if ":" in part]
