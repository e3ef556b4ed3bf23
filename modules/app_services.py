"""The state objects of a running Easel, built from the command line in one place.

`build_services(args)` makes the settings store, the model registry, the model manager, the job
queue with its worker and the generation service. The UI and the API get the resulting `Services`
and call its methods, so a model switch from either one does the same thing: switch, hash, remember
the choice in config.json. The start-up checkpoint is loaded by `preload()` (webui.py runs it in the
background once the server answers) or by the first generation, whichever comes first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from modules.backends import open_backend
from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import VAE_AUTOMATIC, VAE_NONE, LoadedModel, ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelFile, ModelRegistry
from modules.cmd_args import Args
from modules.config import Settings, SettingsStore
from modules.picture_restore import PictureRestorer
from modules.devices import choose_device, choose_dtype, explain_dtype
from modules.performance import choose_optimizations, choose_threads, cuda_free_bytes
from modules.errors import ModelNotFoundError, UserError
from modules.extensions.api import ModelLoaded
from modules.extensions.loader import load_extensions
from modules.extensions.registry import ExtensionRegistry
from modules.generation.outpaint import OutpaintRequest
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.app import ResultRecorder, Submitter
from modules.backends import RunnerParts
from modules.generation.previews import PreviewChooser
from modules.history import HistorySchemaError, HistoryStore
from modules.jobs import Job, JobQueue
from modules.outputs import OutputWriter
from modules.prompts.conditioning import count_prompt_tokens
from modules.lora.files import LoraLibrary
from modules.prompts.embeddings import EmbeddingLibrary
from modules.prompts.styles import PromptStyle, StyleStore

log = logging.getLogger(__name__)

# Settings that only take effect when Easel starts again.
RESTART_SETTINGS = ("device", "dtype", "sd_vae_checkpoint_cache")
DEMO_PREFIX = "easel-demo-"  # file names of the demo models Easel ships (models/Stable-diffusion)


@dataclass(frozen=True)
class GenerationDefaults:
    """The size and CFG the generation tabs open with."""

    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0
    note: str = ""  # a line shown under the CFG slider when these are a model's own defaults
    outpaint_pixels: int = 128  # "Pixels to expand" (A1111's default)


# The demo model was trained on 64x64 pictures, and at CFG above about 4 its guided predictions
# overshoot (LMS, PLMS and Heun then draw the wrong colours; see its model card).
# Outpainting 128 pixels each way would make its 64x64 picture 320x320, which it fills with a
# crowd of small shapes; 32 makes 128x128.
DEMO_DEFAULTS = GenerationDefaults(64, 64, 2.5, "Easel's demo model: drawn at 64x64 and CFG 2.5, the size and scale it was trained and measured at.", 32)


@dataclass(frozen=True)
class AppPaths:
    """Where Easel reads weights and writes its files (see modules/cmd_args.py)."""

    models_dir: Path
    data_dir: Path

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "Stable-diffusion"

    @property
    def vae_dir(self) -> Path:
        return self.models_dir / "VAE"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def hash_cache_file(self) -> Path:
        return self.data_dir / "cache.json"

    @property
    def tokenizer_cache(self) -> Path:
        return self.data_dir / "caches" / "tokenizers"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def embeddings_dir(self) -> Path:
        return self.models_dir / "embeddings"

    @property
    def vae_approx_dir(self) -> Path:
        return self.models_dir / "VAE-approx"

    @property
    def styles_file(self) -> Path:
        return self.data_dir / "styles.csv"

    @property
    def preview_factors_file(self) -> Path:
        return self.data_dir / "caches" / "preview_factors.json"

    @property
    def database(self) -> Path:
        return self.data_dir / "history.sqlite3"


@dataclass(frozen=True)
class ExtraNetwork:
    """An embedding or a LoRA as the UI lists it: what clicking it adds to the prompt."""

    kind: str  # "embedding" | "lora"
    name: str
    short_hash: str
    preview: Path | None  # a picture beside the file (<stem>.png/.jpg/.webp or <stem>.preview.png)
    tag: str  # the trigger word, or <lora:name:1>


def preview_beside(path: Path) -> Path | None:
    """A1111's preview picture for a model file: <stem>.preview.png or <stem>.png/.jpg/.jpeg/.webp."""
    for candidate in (path.with_suffix(".preview.png"), *(path.with_suffix(ext) for ext in (".png", ".jpg", ".jpeg", ".webp"))):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Services:
    """What the UI and the API work with. Built once by `build_services`; no globals."""

    args: Args
    paths: AppPaths
    config_store: SettingsStore
    registry: ModelRegistry
    manager: ModelManager
    queue: JobQueue
    generation: Submitter
    styles: StyleStore
    history: HistoryStore
    extensions: ExtensionRegistry = field(default_factory=ExtensionRegistry)
    outputs: OutputWriter | None = None
    last_checkpoint: ModelFile | None = None  # the one `reload_checkpoint` brings back after an unload

    @property
    def settings(self) -> Settings:
        return self.config_store.settings

    # models ------------------------------------------------------------------------------------

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

    def picture_restorer(self) -> PictureRestorer:
        """Restores a picture's settings against the models here (Send to, paste, the API's infotext)."""
        return PictureRestorer(self.registry, self.loras, self.embeddings)

    def startup_name(self) -> str | None:
        """The active checkpoint's name, else the one the first generation will load."""
        if self.manager.loaded is not None:
            return self.manager.loaded.checkpoint.name
        try:
            return self._startup_choice().name
        except UserError:
            return None

    def generation_defaults(self) -> GenerationDefaults:
        """The demo model's own size and CFG when Easel starts on it, else A1111's 512x512 and 7."""
        name = self.startup_name()
        return DEMO_DEFAULTS if name is not None and name.startswith(DEMO_PREFIX) else GenerationDefaults()

    def vae_choices(self) -> list[str]:
        return [VAE_AUTOMATIC, VAE_NONE, *(vae.name for vae in self.registry.vaes)]

    def switch_checkpoint(self, query: str | ModelFile, remember: bool = True) -> LoadedModel:
        """Makes a checkpoint active (the manager hashes it for its title). With `remember`, it
        becomes the `sd_model_checkpoint` setting. On failure the old model stays."""
        with self.manager.lock:
            loaded = self.manager.switch_checkpoint(query)
            self.last_checkpoint = loaded.checkpoint
            if remember:
                self.config_store.update({"sd_model_checkpoint": self.registry.title(loaded.checkpoint)})
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
            self.config_store.update({"sd_vae": choice})
            return choice

    def refresh(self) -> None:
        """Rescans the model folders, the embeddings and the LoRAs (new files appear without a restart)."""
        self.registry.refresh()
        self.embeddings.refresh()
        self.loras.refresh()

    @property
    def loras(self) -> LoraLibrary:
        return self.generation.loras  # type: ignore[return-value]

    @property
    def embeddings(self) -> EmbeddingLibrary:
        return self.manager.embeddings  # type: ignore[return-value]

    def extra_networks(self) -> list[ExtraNetwork]:
        """The embeddings, then the LoRAs, the UI offers, each by name."""
        embeddings = [ExtraNetwork("embedding", name, e.shorthash, preview_beside(e.path), name)
                      for name, e in sorted(self.embeddings.embeddings.items(), key=lambda item: item[0].lower())]
        loras = [ExtraNetwork("lora", e.name, self.loras.short_hash(e), e.preview(), f"<lora:{e.name}:1>")
                 for e in sorted(self.loras.entries(), key=lambda entry: entry.name.lower())]
        return embeddings + loras

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

    def preload(self) -> None:
        """Loads the start-up checkpoint unless one is loaded; logs instead of raising (for a
        background thread at start-up)."""
        if self.manager.loaded is None:
            self.load_startup_checkpoint()
        removed = self.history.prune_missing()
        if removed:
            log.info("History: forgot %d image(s) whose files were deleted.", removed)
        if self.outputs is not None:  # after a kill: the half-written temporary files of its saves
            leftovers = self.outputs.remove_leftovers()
            if leftovers:
                log.info("Outputs: removed %d temporary file(s) left by an interrupted save.", len(leftovers))

    def startup_title(self) -> str | None:
        """The active checkpoint's title, else the one the first generation will load."""
        title = self.active_title()
        if title is not None:
            return title
        try:
            return self.registry.title(self._startup_choice())
        except UserError:
            return None

    # generation --------------------------------------------------------------------------------

    def submit_txt2img(self, request: GenerationRequest, job_id: str | None = None) -> Job:
        """Validates and queues a txt2img job (UserError at once for bad input or a full queue).
        `job_id`: the id to give the job (the API's force_task_id); None: a new one."""
        return self.generation.submit_txt2img(request, job_id=job_id)

    def submit_img2img(self, request: Img2ImgRequest, job_id: str | None = None) -> Job:
        """Validates and queues an img2img/inpaint job: the same events and result as txt2img."""
        return self.generation.submit_img2img(request, job_id=job_id)

    def submit_outpaint(self, request: OutpaintRequest, job_id: str | None = None) -> Job:
        """Validates and queues an outpainting job: the same events and result as img2img."""
        return self.generation.submit_outpaint(request, job_id=job_id)

    def count_tokens(self, prompt: str) -> tuple[int, int]:
        """(tokens, limit) of the longest text the prompt becomes (A1111's `N/75` counter)."""
        return count_prompt_tokens(self.manager.clip_tokenizer(), prompt)

    def save_style(self, name: str, prompt: str, negative_prompt: str) -> None:
        name = (name or "").strip()
        if not name:
            raise UserError("Type a name for the style first.")
        if not prompt.strip() and not negative_prompt.strip():
            raise UserError("The prompt and negative prompt are both empty: nothing to save as a style.")
        self.styles.put(PromptStyle(name, prompt, negative_prompt))
        self.styles.save()

    def close(self) -> None:
        self.queue.close()
        self.history.close()

    # settings ----------------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """All settings, with the active checkpoint's title and hash (A1111's `/options` shape)."""
        values = {**self.config_store.extra, **{f.name: getattr(self.settings, f.name) for f in fields(Settings)}}
        title = self.active_title()
        if title is not None:
            values["sd_model_checkpoint"] = title
        values["sd_checkpoint_hash"] = self.active_sha256()
        values["sd_vae"] = self.manager.vae_choice
        return values

    def set_options(self, values: dict[str, Any]) -> list[str]:
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
                self.switch_checkpoint(values["sd_model_checkpoint"])
            if "sd_vae" in values:
                self.switch_vae(values["sd_vae"])
            if rest:
                self.config_store.update(rest)
                self._apply_live(rest)
        return unknown

    # extensions ----------------------------------------------------------------------------------

    def set_extensions_enabled(self, enabled: dict[str, bool]) -> list[str]:
        """Saves which extensions load at the next start; returns the names whose state changes
        then (their code is loaded or dropped only by a restart)."""
        known = {e.name: e for e in self.extensions.extensions}
        unknown = sorted(set(enabled) - set(known))
        if unknown:
            raise UserError(f"There is no extension named {unknown[0]!r}.")
        self.save_extra_options({EXTENSIONS_ENABLED_KEY: {**(self.config_store.extra.get(EXTENSIONS_ENABLED_KEY) or {}), **enabled}})
        return sorted(name for name, on in enabled.items() if on != (known[name].api is not None))

    def set_extension_setting(self, extension: str, key: str, value: Any) -> None:
        declared = {(name, s.key): s for name, s in self.extensions.settings()}
        spec = declared.get((extension, key))
        if spec is None:
            raise UserError(f"Extension {extension!r} has no setting {key!r}.")
        if spec.choices and value not in spec.choices:
            raise UserError(f"{spec.label} must be one of {', '.join(spec.choices)}, not {value!r}.")
        self.save_extra_options({f"{extension}.{key}": value})

    def save_extra_options(self, values: dict[str, Any]) -> None:
        """Stores settings Easel does not use itself (the API's A1111 options, already checked by
        the caller) in config.json beside Easel's own; `options()` shows them."""
        if not values:
            return
        self.config_store.extra.update(values)
        self.config_store.save()  # written whole to a temporary file and renamed: never half a file

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

    # start-up ----------------------------------------------------------------------------------

    def _startup_choice(self) -> ModelFile:
        if self.args.ckpt is not None:
            entry = self.registry.entry_for_path(self.args.ckpt)
            if entry is None:
                raise ModelNotFoundError(f"--ckpt {self.args.ckpt} is not a readable checkpoint file.")
            return entry
        wanted = self.settings.sd_model_checkpoint
        if wanted:
            try:
                return self.registry.find_checkpoint(wanted)
            except ModelNotFoundError as error:
                if not self.registry.checkpoints:
                    raise
                log.warning("%s Loading %s instead.", error, first_checkpoint(self.registry.checkpoints).name)
        if not self.registry.checkpoints:
            raise ModelNotFoundError(
                f"No checkpoint found. Put a .safetensors or .ckpt file in {self.paths.checkpoints_dir} "
                "(or start with --ckpt PATH / --ckpt-dir DIR), then press refresh."
            )
        return first_checkpoint(self.registry.checkpoints)

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


def build_services(args: Args, load_now: bool = True) -> Services:
    """Builds the settings store, registry, model manager, job queue (worker started) and generation
    service from the command line; with `load_now` (and no --skip-load) loads the start-up
    checkpoint before returning. Raises UserError for an unusable --device/--dtype."""
    paths = AppPaths(models_dir=args.models_dir, data_dir=args.data_dir)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    store = SettingsStore(paths.config_file)
    if not paths.config_file.exists():
        store.save()  # a file to look at and edit from the first start
    settings = store.settings
    registry = ModelRegistry(
        [paths.checkpoints_dir, *args.ckpt_dirs],
        [paths.vae_dir, *args.vae_dirs],
        HashCache(paths.hash_cache_file),
        [args.ckpt] if args.ckpt is not None else [],
        [args.demo_checkpoint] if args.demo_checkpoint is not None else [],
    )
    device = choose_device(args.device or settings.device)
    dtype_choice = args.dtype or settings.dtype
    dtype = choose_dtype(device, dtype_choice)
    torch.set_num_threads(choose_threads(args.threads))
    optimizations = choose_optimizations(device, dtype, cuda_free_bytes(device), memory=args.memory, fast_mode=args.fast_mode)
    log.info("Device %s, %s, %d CPU threads; %s", device, explain_dtype(device, dtype_choice, dtype), torch.get_num_threads(), optimizations.describe())
    options = ManagerOptions(settings.sd_checkpoint_cache, settings.sd_vae_checkpoint_cache, settings.sd2_prediction, optimizations)
    manager = ModelManager(registry, device, dtype, paths.tokenizer_cache, options)
    manager.embeddings = EmbeddingLibrary(paths.embeddings_dir)
    manager.embeddings.refresh()
    loras = LoraLibrary(paths.models_dir / "Lora")
    loras.refresh()
    styles = StyleStore(paths.styles_file)
    try:
        styles.load()
    except UserError as error:
        log.error("%s", error)
    backend = open_backend(args)  # in-process, or Ray Serve replicas (--backend ray)
    queue = JobQueue(max_pending=settings.max_queued_jobs, devices=backend.slots)
    try:
        history = HistoryStore(paths.database, outputs_root=paths.outputs_dir)
    except HistorySchemaError as error:  # written by a newer Easel: keep it untouched, record in memory
        log.error("%s The history of this session is kept in memory only.", error)
        history = HistoryStore(":memory:", outputs_root=paths.outputs_dir)
    extensions = load_extensions_for(args, store)
    manager.on_loaded.append(lambda model: extensions.fire("on_model_loaded", ModelLoaded(model.checkpoint.model_name, model.spec.family.name, model)))
    outputs = OutputWriter(paths.outputs_dir)
    recorder = ResultRecorder(registry, settings, outputs, history)
    built: list[Services] = []  # the runner asks the services for the start-up model (one step later)
    runner = backend.runner(RunnerParts(
        manager, recorder, settings, PreviewChooser(paths.vae_approx_dir, paths.preview_factors_file), extensions, loras,
        ensure_model=lambda: built[0].ensure_model(), default_checkpoint=lambda: built[0].startup_name(),
    ))
    generation = Submitter(queue, runner, settings, styles, loras)
    services = Services(args, paths, store, registry, manager, queue, generation, styles, history, extensions, outputs=outputs)
    built.append(services)
    _restore_vae_choice(services)
    log.info("%d checkpoint(s), %d VAE(s) found.", len(registry.checkpoints), len(registry.vaes))
    queue.start()
    if load_now and not args.skip_load:
        services.load_startup_checkpoint()
    return services


EXTENSIONS_ENABLED_KEY = "extensions_enabled"  # config.json: {extension name: enabled}, set from Settings


def load_extensions_for(args: Args, store: SettingsStore) -> ExtensionRegistry:
    """The extensions of --extensions-dir (none with --disable-extensions), enabled as the Settings
    list says; their settings are read from config.json ("<extension>.<key>")."""
    if args.disable_extensions:
        return ExtensionRegistry()
    enabled = store.extra.get(EXTENSIONS_ENABLED_KEY)
    return load_extensions(args.extensions_dir, enabled if isinstance(enabled, dict) else {}, store.extra.get)


def first_checkpoint(checkpoints: list[ModelFile]) -> ModelFile:
    """The first listed checkpoint that is not one of Easel's demo models, else the first listed:
    the demo is for a fresh install, and a user's own model wins as soon as there is one."""
    return next((entry for entry in checkpoints if not entry.path.name.startswith(DEMO_PREFIX)), checkpoints[0])


def _restore_vae_choice(services: Services) -> None:
    choice = services.settings.sd_vae
    if choice not in (VAE_AUTOMATIC, VAE_NONE):
        try:
            choice = services.registry.find_vae(choice).name
        except ModelNotFoundError as error:
            log.warning("%s Using Automatic.", error)
            choice = VAE_AUTOMATIC
    services.manager.vae_choice = choice
