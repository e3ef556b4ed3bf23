"""The state objects of a running Easel, built from the command line in one place.

`build_services(args)` makes every part, each fully built by its constructor, and packs them into
`Services`, a container the UI and the API receive. They act through three small facades:

- `models` (ModelControl): checkpoints, VAEs, the start-up model, extra networks, restoring pictures;
- `generation` (Submitter): txt2img, img2img, outpainting and script jobs;
- `config` (SettingsControl): reading and changing the settings;

and read the plain parts (registry, manager, queue, history, styles, extensions, paths) directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from modules.app.extras_jobs import ExtrasJobs
from modules.app.merge_jobs import MergeJobs
from modules.app.models import ModelControl
from modules.app.results import ResultRecorder
from modules.app.settings_control import EXTENSIONS_ENABLED_KEY, SettingsControl
from modules.app.submit import Submitter
from modules.backends import RunnerParts, open_backend
from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.cmd_args import Args
from modules.config import Settings, SettingsStore
from modules.controlnet.service import ControlNets
from modules.detailer.catalog import DetectorCatalog
from modules.device.hardware import choose_device, choose_dtype, choose_threads, explain_dtype
from modules.device.memory_plan import cuda_free_bytes
from modules.device.optimizations import choose_optimizations
from modules.errors import UserError
from modules.extensions.api import ModelLoaded
from modules.extensions.loader import load_extensions
from modules.extensions.registry import ExtensionRegistry
from modules.generation.previews import PreviewChooser
from modules.generation.request import LATENT_UPSCALE_MODES
from modules.history import HistorySchemaError, HistoryStore
from modules.hypernetworks.files import HypernetworkLibrary
from modules.i18n import Translations
from modules.jobs import JobQueue
from modules.lora.files import LoraLibrary
from modules.outputs import OutputWriter
from modules.paths import AppPaths
from modules.prompts.dynamic import WildcardLibrary, wildcard_folders
from modules.prompts.embeddings import EmbeddingLibrary
from modules.prompts.styles import StyleStore
from modules.upscalers.catalog import UpscalerCatalog
from modules.upscalers.service import Upscalers, tile_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the UI and the API work with. Built once by `build_services`; no globals."""

    args: Args
    paths: AppPaths
    models: ModelControl
    generation: Submitter
    config: SettingsControl
    registry: ModelRegistry
    manager: ModelManager
    queue: JobQueue
    history: HistoryStore
    styles: StyleStore
    extensions: ExtensionRegistry
    outputs: OutputWriter
    loras: LoraLibrary
    embeddings: EmbeddingLibrary
    translations: Translations  # the page's words in other languages (modules/i18n.py)
    upscalers: Upscalers  # the built-in and installed upscalers (modules/upscalers)
    extras: ExtrasJobs  # upscaling finished pictures, as queued jobs
    controlnets: ControlNets  # models/ControlNet and the loaded ControlNets
    detectors: DetectorCatalog  # models/adetailer: the detailer's detectors
    wildcards: WildcardLibrary  # Dynamic Prompts' wildcard files (<data-dir>/wildcards, extensions/*/wildcards)
    merges: MergeJobs  # the checkpoint merger's jobs (modules/merger)
    hypernetworks: HypernetworkLibrary  # models/hypernetworks

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def preload(self) -> None:
        """Start-up work for a background thread once the server answers: the start-up checkpoint
        (unless one is loaded), history rows whose files were deleted, the temporary files of saves
        a kill interrupted. Logs instead of raising."""
        if self.manager.loaded is None:
            self.models.load_startup_checkpoint()
        removed = self.history.prune_missing()
        if removed:
            log.info("History: forgot %d image(s) whose files were deleted.", removed)
        leftovers = self.outputs.remove_leftovers()
        if leftovers:
            log.info("Outputs: removed %d temporary file(s) left by an interrupted save.", len(leftovers))

    def close(self) -> None:
        self.queue.close()
        self.history.close()


def build_services(args: Args, load_now: bool = True) -> Services:
    """Builds every part from the command line; with `load_now` (and no --skip-load) loads the
    start-up checkpoint before returning. Raises UserError for an unusable --device/--dtype."""
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
    log.info("Device %s, %s, %d CPU threads; %s", device, explain_dtype(device, dtype_choice, dtype), torch.get_num_threads(),
             optimizations.describe())
    extensions = load_extensions_for(args, store)
    embeddings = EmbeddingLibrary(paths.embeddings_dir)
    embeddings.refresh()
    loras = LoraLibrary(paths.loras_dir)
    loras.refresh()
    hypernetworks = HypernetworkLibrary(paths.models_dir / "hypernetworks")
    hypernetworks.refresh()
    manager = ModelManager(
        registry, device, dtype, paths.tokenizer_cache,
        ManagerOptions(settings.sd_checkpoint_cache, settings.sd_vae_checkpoint_cache, settings.sd2_prediction, optimizations),
        embeddings=embeddings,
        on_loaded=[lambda model: extensions.fire("on_model_loaded", ModelLoaded(model.checkpoint.model_name, model.spec.family.name, model))],
    )
    styles = StyleStore(paths.styles_file)
    try:
        styles.load()
    except UserError as error:
        log.error("%s", error)
    backend = open_backend(args)  # in-process, or Ray Serve replicas (--backend ray)
    queue = JobQueue(max_pending=settings.max_queued_jobs, devices=backend.slots)
    history = open_history(paths)
    outputs = OutputWriter(paths.outputs_dir)
    upscalers = Upscalers(UpscalerCatalog(args.upscaler_folders()), device, lambda: tile_settings(store.settings), half=dtype == torch.float16)
    wildcards = WildcardLibrary(wildcard_folders(paths.data_dir, args.extensions_dir))
    detectors = DetectorCatalog([paths.models_dir / "adetailer", *args.ad_extra_models_dirs])
    controlnets = ControlNets([paths.models_dir / "ControlNet", *args.controlnet_dirs])
    models = ModelControl(registry, manager, store, loras, embeddings, paths.checkpoints_dir, args.ckpt,
                          hires_upscalers=lambda: [*LATENT_UPSCALE_MODES, *upscalers.names()], controlnets=controlnets.catalog, detectors=detectors,
                          hypernetworks=hypernetworks)
    models.restore_vae_choice()
    runner = backend.runner(RunnerParts(
        manager, ResultRecorder(registry, settings, outputs, history), settings,
        PreviewChooser(paths.vae_approx_dir, paths.preview_factors_file), extensions, loras,
        ensure_model=models.ensure_model, default_checkpoint=models.startup_name, upscalers=upscalers, controlnets=controlnets, detectors=detectors, wildcards=wildcards,
        hypernetworks=hypernetworks,
    ))
    services = Services(
        args=args, paths=paths, models=models, generation=Submitter(queue, runner, settings, styles, loras, upscalers, controlnets, detectors, wildcards,
                                                                      registry),
        upscalers=upscalers, controlnets=controlnets, detectors=detectors, wildcards=wildcards,
        extras=ExtrasJobs(queue, upscalers, lambda: store.settings, outputs), merges=MergeJobs(queue, registry, paths.checkpoints_dir),
        hypernetworks=hypernetworks,
        config=SettingsControl(store, models, manager, queue, extensions), registry=registry, manager=manager, queue=queue,
        history=history, styles=styles, extensions=extensions, outputs=outputs, loras=loras, embeddings=embeddings,
        # an extension's own localizations/ (its descriptions and labels), then the user's files
        translations=Translations.load([*(e.folder / "localizations" for e in extensions.extensions), args.localizations_dir],
                                       forced=args.language or settings.language),
    )
    log.info("%d checkpoint(s), %d VAE(s) found.", len(registry.checkpoints), len(registry.vaes))
    queue.start()
    if load_now and not args.skip_load:
        models.load_startup_checkpoint()
    return services


def open_history(paths: AppPaths) -> HistoryStore:
    """The history database; one written by a newer Easel is left untouched and this session's
    history is kept in memory."""
    try:
        return HistoryStore(paths.database, outputs_root=paths.outputs_dir)
    except HistorySchemaError as error:
        log.error("%s The history of this session is kept in memory only.", error)
        return HistoryStore(":memory:", outputs_root=paths.outputs_dir)


def load_extensions_for(args: Args, store: SettingsStore) -> ExtensionRegistry:
    """The extensions of --extensions-dir (none with --disable-extensions), enabled as the Settings
    list says; their settings are read from config.json ("<extension>.<key>")."""
    if args.disable_extensions:
        return ExtensionRegistry()
    enabled = store.extra.get(EXTENSIONS_ENABLED_KEY)
    return load_extensions(args.extensions_dir, enabled if isinstance(enabled, dict) else {}, store.extra.get)
