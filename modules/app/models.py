"""The model controls the UI and the API share: which checkpoints and VAEs there are, switching them
(remembered in config.json), the start-up checkpoint, unload/reload, and the embeddings and LoRAs
offered as extra networks.

A switch from the UI or the API does the same thing here: switch, hash for the title, remember. A
failed switch leaves the previous model working (the manager's rule). The start-up checkpoint is
`--ckpt`, else the `sd_model_checkpoint` setting, else the first listed (a user's model before
Easel's demo); it is loaded by `load_startup_checkpoint` (in the background once the server
answers) or by the first generation, whichever comes first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection

from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE, LoadedModel, ModelManager
from modules.checkpoints.registry import ModelFile, ModelRegistry
from modules.config import SettingsStore
from modules.demo_model import GenerationDefaults, defaults_for, first_checkpoint
from modules.errors import ModelNotFoundError, UserError
from modules.picture_restore import PictureRestorer
from modules.prompts.conditioning import count_prompt_tokens

if TYPE_CHECKING:
    from modules.controlnet.catalog import ControlNetCatalog
    from modules.detailer.catalog import DetectorCatalog
    from modules.hypernetworks.files import HypernetworkLibrary
    from modules.lora.files import LoraLibrary
    from modules.prompts.embeddings import EmbeddingLibrary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtraNetwork:
    """An embedding or a LoRA as the UI lists it: what clicking it adds to the prompt."""

    kind: str  # "embedding" | "lora" | "hypernetwork"
    name: str
    short_hash: str
    preview: Path | None  # a picture beside the file (<stem>.png/.jpg/.webp or <stem>.preview.png)
    tag: str  # the trigger word, <lora:name:1> or <hypernet:name:1>


def preview_beside(path: Path) -> Path | None:
    """A1111's preview picture for a model file: <stem>.preview.png or <stem>.png/.jpg/.jpeg/.webp."""
    for candidate in (path.with_suffix(".preview.png"), *(path.with_suffix(ext) for ext in (".png", ".jpg", ".jpeg", ".webp"))):
        if candidate.is_file():
            return candidate
    return None


class ModelControl:
    """Checkpoints, VAEs and extra networks as the UI and the API use them."""

    def __init__(self, registry: ModelRegistry, manager: ModelManager, store: SettingsStore, loras: "LoraLibrary",
                 embeddings: "EmbeddingLibrary", checkpoints_dir: Path, startup_path: Path | None = None,
                 hires_upscalers: Callable[[], Collection[str]] | None = None, controlnets: "ControlNetCatalog | None" = None,
                 detectors: "DetectorCatalog | None" = None, hypernetworks: "HypernetworkLibrary | None" = None):
        self.hypernetworks = hypernetworks  # models/hypernetworks, rescanned with the rest
        self.registry = registry
        self.hires_upscalers = hires_upscalers  # () -> the names hires fix takes now (latent modes, built-ins, model files)
        self.controlnets = controlnets  # the ControlNet models a restored unit names are looked up in
        self.detectors = detectors  # the detectors a restored ADetailer tab names are looked up in
        self.manager = manager
        self.store = store  # remembers the chosen checkpoint and VAE (config.json)
        self.loras = loras
        self.embeddings = embeddings
        self.checkpoints_dir = checkpoints_dir  # named in the "no checkpoint" message
        self.startup_path = startup_path  # --ckpt
        self.last_checkpoint: ModelFile | None = None  # the one `reload_checkpoint` brings back after an unload

    # what there is ------------------------------------------------------------------------------

    def active_title(self) -> str | None:
        loaded = self.manager.loaded
        return self.registry.title(loaded.checkpoint) if loaded is not None else None

    def active_sha256(self) -> str | None:
        loaded = self.manager.loaded
        return self.registry.known_sha256(loaded.checkpoint) if loaded is not None else None

    def checkpoint_choices(self) -> list[tuple[str, str]]:
        """(title shown, name kept) per checkpoint: the name stays the same when the hash becomes
        known, so a choice made before hashing is still valid after."""
        return [(self.registry.title(entry), entry.name) for entry in self.registry.checkpoints]

    def vae_choices(self) -> list[str]:
        return [VAE_AUTOMATIC, VAE_NONE, *(vae.name for vae in self.registry.vaes)]

    def startup_name(self) -> str | None:
        """The active checkpoint's name, else the one the first generation will load."""
        if self.manager.loaded is not None:
            return self.manager.loaded.checkpoint.name
        try:
            return self._startup_choice().name
        except UserError:
            return None

    def startup_title(self) -> str | None:
        """The active checkpoint's title, else the one the first generation will load."""
        title = self.active_title()
        if title is not None:
            return title
        try:
            return self.registry.title(self._startup_choice())
        except UserError:
            return None

    def generation_defaults(self) -> GenerationDefaults:
        """The demo model's own size and CFG when Easel starts on it, else A1111's 512x512 and 7."""
        return defaults_for(self.startup_name())

    def extra_networks(self) -> list[ExtraNetwork]:
        """The embeddings, then the LoRAs, then the hypernetworks the UI offers, each by name."""
        embeddings = [ExtraNetwork("embedding", name, e.shorthash, preview_beside(e.path), name)
                      for name, e in sorted(self.embeddings.embeddings.items(), key=lambda item: item[0].lower())]
        loras = [ExtraNetwork("lora", e.name, self.loras.short_hash(e), e.preview(), f"<lora:{e.name}:1>")
                 for e in sorted(self.loras.entries(), key=lambda entry: entry.name.lower())]
        hypernetworks = [ExtraNetwork("hypernetwork", e.name, "", preview_beside(e.path), f"<hypernet:{e.name}:1>")
                         for e in sorted(self.hypernetworks.entries() if self.hypernetworks is not None else [], key=lambda entry: entry.name.lower())]
        return embeddings + loras + hypernetworks

    def picture_restorer(self) -> PictureRestorer:
        """Restores a picture's settings against the models here (Send to, paste, the API's infotext)."""
        if self.hires_upscalers is None:
            return PictureRestorer(self.registry, self.loras, self.embeddings, controlnets=self.controlnets, detectors=self.detectors)
        return PictureRestorer(self.registry, self.loras, self.embeddings, self.hires_upscalers(), self.controlnets, self.detectors)

    def count_tokens(self, prompt: str) -> tuple[int, int]:
        """(tokens, limit) of the longest text the prompt becomes (A1111's `N/75` counter)."""
        return count_prompt_tokens(self.manager.clip_tokenizer(), prompt)

    # changing it --------------------------------------------------------------------------------

    def switch_checkpoint(self, query: str | ModelFile, remember: bool = True) -> LoadedModel:
        """Makes a checkpoint active (the manager hashes it for its title). With `remember`, it
        becomes the `sd_model_checkpoint` setting. On failure the old model stays."""
        with self.manager.lock:
            loaded = self.manager.switch_checkpoint(query)
            self.last_checkpoint = loaded.checkpoint
            if remember:
                self.store.update({"sd_model_checkpoint": self.registry.title(loaded.checkpoint)})
            return loaded

    def switch_vae(self, choice: str) -> str:
        """Sets the VAE ("Automatic", "None" or a VAE name) and remembers it; returns the choice as stored."""
        with self.manager.lock:
            if choice not in (VAE_AUTOMATIC, VAE_NONE):
                choice = self.registry.find_vae(choice).name
            if self.manager.loaded is not None:
                self.manager.switch_vae(choice)
            else:
                self.manager.vae_choice = choice  # applies when a checkpoint is loaded
            self.store.update({"sd_vae": choice})
            return choice

    def restore_vae_choice(self) -> None:
        """The VAE remembered in the settings, checked against the folders (Automatic if it is gone)."""
        choice = self.store.settings.sd_vae
        if choice not in (VAE_AUTOMATIC, VAE_NONE):
            try:
                choice = self.registry.find_vae(choice).name
            except ModelNotFoundError as error:
                log.warning("%s Using Automatic.", error)
                choice = VAE_AUTOMATIC
        self.manager.vae_choice = choice

    def refresh(self) -> None:
        """Rescans the model folders, the embeddings and the LoRAs (new files appear without a restart)."""
        self.registry.refresh()
        self.embeddings.refresh()
        self.loras.refresh()
        if self.hypernetworks is not None:
            self.hypernetworks.refresh()

    def unload_checkpoint(self) -> None:
        with self.manager.lock:
            if self.manager.loaded is not None:
                self.last_checkpoint = self.manager.loaded.checkpoint
            self.manager.unload()

    def reload_checkpoint(self) -> LoadedModel:
        """Reads the active checkpoint from disk again, or loads the last one after an unload."""
        with self.manager.lock:
            if self.manager.loaded is not None:
                return self.manager.reload()
            if self.last_checkpoint is not None:
                return self.switch_checkpoint(self.last_checkpoint, remember=False)
            return self.switch_checkpoint(self._startup_choice(), remember=False)

    def ensure_model(self) -> LoadedModel:
        """The active model, loading the start-up checkpoint first if none is loaded (UserError if
        there is none to load)."""
        with self.manager.lock:
            if self.manager.loaded is not None:
                return self.manager.loaded
            return self.switch_checkpoint(self._startup_choice(), remember=False)

    def load_startup_checkpoint(self) -> LoadedModel | None:
        """`--ckpt`, else the `sd_model_checkpoint` setting, else the first listed (a user's model
        before Easel's demo, which is listed alone when nothing else is found). Never raises:
        Easel starts without a model and says why."""
        try:
            return self.switch_checkpoint(self._startup_choice(), remember=False)
        except UserError as error:
            log.error("Starting without a model: %s", error)
        except Exception:  # a bug in loading must not keep the UI from starting; the traceback is logged
            log.exception("Starting without a model: loading the checkpoint failed unexpectedly.")
        return None

    def _startup_choice(self) -> ModelFile:
        if self.startup_path is not None:
            entry = self.registry.entry_for_path(self.startup_path)
            if entry is None:
                raise ModelNotFoundError(f"--ckpt {self.startup_path} is not a readable checkpoint file.")
            return entry
        wanted = self.store.settings.sd_model_checkpoint
        if wanted:
            try:
                return self.registry.find_checkpoint(wanted)
            except ModelNotFoundError as error:
                if not self.registry.checkpoints:
                    raise
                log.warning("%s Loading %s instead.", error, first_checkpoint(self.registry.checkpoints).name)
        if not self.registry.checkpoints:
            raise ModelNotFoundError(
                f"No checkpoint found. Put a .safetensors or .ckpt file in {self.checkpoints_dir} "
                "(or start with --ckpt PATH / --ckpt-dir DIR), then press refresh."
            )
        return first_checkpoint(self.registry.checkpoints)
