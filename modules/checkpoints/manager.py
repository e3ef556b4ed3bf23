"""ModelManager: the active checkpoint and VAE, hot-swapped in place, with an LRU RAM cache.

- Switching between checkpoints of the same architecture re-points the existing modules' parameters
  at the cached weights (no rebuild, no copy on CPU); another architecture builds new modules.
- Everything that can fail (finding, reading, checking, building) happens before the active model is
  touched, so a failed switch leaves the previous model active and working.
- One re-entrant lock serialises switches and jobs: a job holds it through `use()`, so a switch waits
  for the running job instead of changing weights under it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, cast

import torch

from modules.checkpoints.loader import read_checkpoint
from modules.checkpoints.lru import LruCache
from modules.checkpoints.registry import ModelFile, ModelRegistry
from modules.checkpoints.tensor_files import open_tensor_file
from modules.checkpoints.tokenizer import load_clip_tokenizer
from modules.checkpoints.v_prediction import detect_v_prediction
from modules.checkpoints.weights import Tensors, WeightSet, build_module, read_vae_file, swap_weights, unet_in
from modules.device.memory import release_freed_memory
from modules.device.memory_plan import ComponentPlacer
from modules.device.optimizations import Optimizations
from modules.errors import ModelBusyError, ModelLoadError, UserError

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from modules.prompts.embeddings import EmbeddingLibrary

    # The class architecture.py names for "text_encoder" (CLIP-L, OpenCLIP) and "text_encoder_2" (SDXL).
    TextEncoder = CLIPTextModel | CLIPTextModelWithProjection

log = logging.getLogger(__name__)

VAE_AUTOMATIC = "Automatic"
VAE_NONE = "None"
OPENCLIP_PAD = "!"
CLIP_PAD = "<|endoftext|>"

@dataclass
class ManagerOptions:
    """Settings the manager reads (see modules/config.py for their descriptions)."""

    checkpoint_cache_size: int = 2
    vae_cache_size: int = 2
    sd2_prediction: str = "auto"  # "auto" | "epsilon" | "v_prediction"
    optimizations: Optimizations | None = None  # handed to every loaded model; None: the plain path


TOKENIZER_WAIT_S = 30.0  # how long the token counter waits for a model load that holds the lock


@dataclass
class LoadedModel:
    """The modules of the active checkpoint, as the generation engine uses them."""

    checkpoint: ModelFile
    weights: WeightSet
    modules: dict[str, torch.nn.Module]
    tokenizers: dict[str, CLIPTokenizer]
    vae: ModelFile | None  # None: the checkpoint's own (baked-in) VAE
    device: torch.device
    dtype: torch.dtype
    timings: dict[str, float] = field(default_factory=dict)
    # Per-model caches of the generation engine (e.g. encoded prompts); they go with the model.
    caches: dict[str, object] = field(default_factory=dict)
    embeddings: "EmbeddingLibrary | None" = None  # the manager's textual-inversion embeddings, if any
    optimizations: Optimizations | None = None  # what the engine applies per pass
    placer: ComponentPlacer | None = None  # model CPU offload: modules live in RAM, the engine brings each to `device`
    # The running job's hypernetworks (the job runner sets them and clears them after the job); the
    # engine applies them to every pass's attention (modules/hypernetworks/processor.py).
    hypernetworks: list = field(default_factory=list)

    @property
    def spec(self):
        return self.weights.spec

    @property
    def unet(self) -> UNet2DConditionModel:
        return unet_in(self.modules)

    @property
    def vae_module(self) -> AutoencoderKL:
        return cast("AutoencoderKL", self.modules["vae"])  # see weights.unet_in

    def text_encoder(self, name: str) -> TextEncoder:
        """"text_encoder" or (SDXL) "text_encoder_2"."""
        return cast("TextEncoder", self.modules[name])  # see weights.unet_in


def _file_key(entry: ModelFile) -> str:
    files = entry.weight_files()
    stats = [f.stat() for f in files]
    return f"{entry.path}|{sum(s.st_size for s in stats)}|{max(s.st_mtime_ns for s in stats)}"


class ModelManager:
    """Owns the active model; switches checkpoints and VAEs; caches recently used weights in RAM."""

    def __init__(
        self,
        registry: ModelRegistry,
        device: torch.device,
        dtype: torch.dtype,
        tokenizer_cache: Path,
        options: ManagerOptions | None = None,
        embeddings: "EmbeddingLibrary | None" = None,
        on_loaded: list[Callable[["LoadedModel"], None]] | None = None,
    ):
        self.registry = registry
        self.device = device
        self.dtype = dtype
        self.tokenizer_cache = Path(tokenizer_cache)
        self.options = options or ManagerOptions()
        self.lock = threading.RLock()
        self.loaded: LoadedModel | None = None
        self.vae_choice = VAE_AUTOMATIC
        self.warnings: list[str] = []
        self._checkpoints: LruCache[str, WeightSet] = LruCache(self.options.checkpoint_cache_size)
        self._vaes: LruCache[str, Tensors] = LruCache(self.options.vae_cache_size)
        self._tokenizers: dict[str, CLIPTokenizer] = {}
        self._active_key: str | None = None  # cache key (path, size, mtime) of the active weights
        # Called with the new LoadedModel after every checkpoint or VAE activation (the extensions'
        # on_model_loaded); a listener must not raise.
        self.on_loaded: list[Callable[[LoadedModel], None]] = list(on_loaded or [])
        self.embeddings = embeddings  # the textual-inversion embeddings the prompt encoders use
        # Model CPU offload (the "offload" memory plan): modules are built in RAM and the engine
        # brings one at a time to `device`; otherwise they are built on `device`.
        offload = self.options.optimizations is not None and self.options.optimizations.offload
        self.placer = ComponentPlacer(device) if offload else None
        self.weights_device = torch.device("cpu") if offload else device

    # public ------------------------------------------------------------------------------------

    @contextmanager
    def use(self) -> Iterator[LoadedModel]:
        """Holds the model for a job: no switch happens until the block ends."""
        with self.lock:
            if self.loaded is None:
                raise UserError("No checkpoint is loaded. Put a .safetensors file in models/Stable-diffusion and select it.")
            yield self.loaded

    def cached_checkpoints(self) -> list[str]:
        """Paths of the checkpoints whose weights are in the RAM cache, least recent first."""
        return [key.split("|", 1)[0] for key in self._checkpoints.keys()]

    def set_cache_size(self, size: int) -> None:
        """Changes how many checkpoints stay in RAM (the active one counts), evicting the oldest."""
        with self.lock:
            self.options.checkpoint_cache_size = max(1, int(size))
            self._checkpoints.capacity = self.options.checkpoint_cache_size
            if self.loaded is not None and self._active_key is not None:
                self._remember(self._active_key, self.loaded.weights)

    def switch_checkpoint(self, query: str | ModelFile) -> LoadedModel:
        """Makes a checkpoint active (by title, name, stem, hash or entry). On failure nothing changes."""
        with self.lock:
            entry = query if isinstance(query, ModelFile) else self.registry.find_checkpoint(query)
            if self.loaded is not None and self._is_current(entry):
                return self.loaded
            timings: dict[str, float] = {}
            start = time.perf_counter()
            key = self._cache_key(entry)
            weights = self._checkpoints.get(key)
            if weights is None:
                self._make_room()
                weights = self._read_and_hash(entry, timings)
            vae_entry, vae_tensors = self._resolve_vae(entry, weights, self.vae_choice, strict=False)
            loaded = self._activate(entry, weights, vae_entry, vae_tensors)
            loaded.timings = {**timings, "total": time.perf_counter() - start}
            self._remember(key, loaded.weights)
            self._active_key = key
            log.info("Loaded %s (%s) in %.2fs", entry.name, weights.spec.family.label, loaded.timings["total"])
            return loaded

    def take_back(self, loaded: LoadedModel) -> LoadedModel:
        """Makes `loaded` (activated earlier in this job) active again, as the refiner hands the base back:
        nothing is rebuilt, or, when the model since swapped its weights into the same modules, they are swapped back."""
        with self.lock:
            if self.loaded is loaded:
                return loaded
            if self.loaded is not None and self.loaded.modules is loaded.modules:
                self.switch_checkpoint(loaded.checkpoint)  # in place, from the RAM cache
            self._evict()
            self.loaded = loaded
            self._active_key = self._cache_key(loaded.checkpoint)
            self._remember(self._active_key, loaded.weights)
            return loaded

    def switch_vae(self, choice: str) -> LoadedModel:
        """Sets the VAE: "Automatic", "None" (the checkpoint's own) or a VAE name. On failure nothing changes."""
        with self.lock:
            loaded = self._require_loaded()
            vae_entry, vae_tensors = self._resolve_vae(loaded.checkpoint, loaded.weights, choice, strict=True)
            self._evict()
            swap_weights(loaded.modules["vae"], vae_tensors, self.weights_device)
            loaded.vae = vae_entry
            self.vae_choice = choice
            return loaded

    def reload(self) -> LoadedModel:
        """Reads the active checkpoint from disk again (after it changed on disk)."""
        with self.lock:
            loaded = self._require_loaded()
            self._checkpoints.clear()
            entry, key = loaded.checkpoint, self._active_key
            self.loaded, self._active_key = None, None
            try:
                return self.switch_checkpoint(entry)
            except UserError:
                self.loaded, self._active_key = loaded, key
                if key is not None:  # None when a load listener failed after the model was activated
                    self._checkpoints.put(key, loaded.weights)
                raise

    def unload(self) -> None:
        """Drops the active model and the caches, freeing their memory."""
        with self.lock:
            self._evict()
            self.loaded = None
            self._active_key = None
            self._checkpoints.clear()
            self._vaes.clear()
            gc.collect()
            release_freed_memory()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # internals ---------------------------------------------------------------------------------

    def _read_and_hash(self, entry: ModelFile, timings: dict[str, float]) -> WeightSet:
        """Reads the weights while a second thread computes the sha256 that `Model hash` needs.

        Once per file (the hash is cached on disk). hashlib releases the GIL, so with spare cores
        the hash is hidden behind the read; on 2 cores both compete and it adds about its own time.
        """
        start = time.perf_counter()
        hasher = None
        if self.registry.known_sha256(entry) is None:
            hasher = threading.Thread(target=self._hash_quietly, args=(entry, timings), name="easel-hash", daemon=True)
            hasher.start()
        weights = read_checkpoint(entry, self.dtype, self.options.sd2_prediction)
        timings["read"] = time.perf_counter() - start
        if hasher is not None:
            hasher.join()
            timings["hash_wait"] = time.perf_counter() - start - timings["read"]
        return weights

    def _hash_quietly(self, entry: ModelFile, timings: dict[str, float]) -> None:
        start = time.perf_counter()
        try:
            self.registry.sha256(entry)
        except OSError as error:  # the read reports unreadable files; the title just lacks a hash
            log.warning("Could not hash %s: %s", entry.name, error)
        timings["hash"] = time.perf_counter() - start

    def _make_room(self) -> None:
        """Before reading a new checkpoint, drops cached ones so that, with the new one, at most
        `checkpoint_cache_size` are held (the active one always stays: a failed read falls back on it)."""
        active = self._active_key
        keys = self._checkpoints.keys()
        excess = len(keys) + 1 - self._checkpoints.capacity
        for key in keys:
            if excess <= 0:
                break
            if key != active:
                self._checkpoints.pop(key)
                excess -= 1
        release_freed_memory()

    def _require_loaded(self) -> LoadedModel:
        if self.loaded is None:
            raise UserError("No checkpoint is loaded.")
        return self.loaded

    def _cache_key(self, entry: ModelFile) -> str:
        try:
            return _file_key(entry)
        except OSError as error:
            raise ModelLoadError(f"{entry.name} cannot be read: {error.strerror}. Press refresh.") from error

    def _is_current(self, entry: ModelFile) -> bool:
        """True if `entry` is the active checkpoint and its file is unchanged since it was read."""
        try:
            return self._cache_key(entry) == self._active_key
        except ModelLoadError:
            return False

    def _remember(self, key: str, weights: WeightSet) -> None:
        # Evicted weights and replaced modules are freed by reference counting (they hold no
        # cycles), so no gc.collect() here: on a large heap it costs a quarter of a second.
        if self._checkpoints.put(key, weights):
            release_freed_memory()

    def clip_tokenizer(self) -> CLIPTokenizer:
        """The CLIP tokenizer (its vocabulary is shared by every family: enough to count tokens).

        The first call loads it under the model lock: transformers' lazy imports are not safe to
        run in two threads at once, and a model load imports transformers too. Any tokenizer already
        loaded will do (they differ only in their padding token, which counting ignores), so the
        wait happens at most once, right after start-up; `ModelBusyError` after `TOKENIZER_WAIT_S`."""
        tokenizer = self._tokenizers.get(CLIP_PAD) or next(iter(self._tokenizers.values()), None)
        if tokenizer is not None:
            return tokenizer
        if not self.lock.acquire(timeout=TOKENIZER_WAIT_S):
            raise ModelBusyError("The tokenizer is loading with the model; the count follows at the next keystroke.")
        try:
            return self._tokenizer(CLIP_PAD)
        finally:
            self.lock.release()

    def _tokenizer(self, pad: str) -> CLIPTokenizer:
        if pad not in self._tokenizers:
            self._tokenizers[pad] = load_clip_tokenizer(self.tokenizer_cache, pad)
        return self._tokenizers[pad]

    def _tokenizers_for(self, weights: WeightSet) -> dict[str, CLIPTokenizer]:
        out = {}
        for name, (layout, _) in weights.spec.text_sources.items():
            tokenizer_name = "tokenizer" if name == "text_encoder" else "tokenizer_2"
            out[tokenizer_name] = self._tokenizer(OPENCLIP_PAD if layout == "open_clip" else CLIP_PAD)
        return out

    def _read_vae(self, vae: ModelFile, weights: WeightSet) -> Tensors:
        key = self._cache_key(vae) + "|" + weights.spec.signature()
        cached = self._vaes.get(key)
        if cached is not None:
            return cached
        file = open_tensor_file(vae.path)
        try:
            tensors = read_vae_file(file, weights.spec.components["vae"], self.dtype)
        finally:
            file.close()
        self._vaes.put(key, tensors)
        return tensors

    def _resolve_vae(self, checkpoint: ModelFile, weights: WeightSet, choice: str, strict: bool) -> tuple[ModelFile | None, Tensors]:
        """The VAE to use with `checkpoint` under A1111's rules, and its tensors."""
        if choice == VAE_NONE:
            return None, weights.tensors["vae"]
        try:
            entry = self.registry.automatic_vae(checkpoint) if choice == VAE_AUTOMATIC else self.registry.find_vae(choice)
        except UserError as error:
            if strict:
                raise
            self._warn(f"VAE {choice} is gone; using the checkpoint's own VAE. ({error})")
            return None, weights.tensors["vae"]
        if entry is None:
            return None, weights.tensors["vae"]
        try:
            return entry, self._read_vae(entry, weights)
        except UserError as error:
            if strict:
                raise
            self._warn(f"VAE {entry.name} could not be used with {checkpoint.name}; using its own VAE. ({error})")
            return None, weights.tensors["vae"]

    def _evict(self) -> None:
        """Before weights change in place: the module on the GPU goes back to its RAM tensors."""
        if self.placer is not None:
            self.placer.evict()

    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def _activate(self, entry: ModelFile, weights: WeightSet, vae_entry: ModelFile | None, vae_tensors: Tensors) -> LoadedModel:
        tokenizers = self._tokenizers_for(weights)
        current = self.loaded
        self._evict()
        if current is not None and current.spec.signature() == weights.spec.signature():
            modules = current.modules
            for name, module in modules.items():
                swap_weights(module, vae_tensors if name == "vae" else weights.tensors[name], self.weights_device)
        else:
            modules = {}
            for name, component in weights.spec.components.items():
                tensors = vae_tensors if name == "vae" else weights.tensors[name]
                modules[name] = build_module(component, tensors, self.weights_device)
        if weights.spec.prediction_type == "auto":
            is_v = detect_v_prediction(unet_in(modules))
            weights.spec = replace(weights.spec, prediction_type="v_prediction" if is_v else "epsilon")
        self.loaded = LoadedModel(entry, weights, modules, tokenizers, vae_entry, self.device, self.dtype, embeddings=self.embeddings,
                                  optimizations=self.options.optimizations, placer=self.placer)
        for listener in self.on_loaded:
            listener(self.loaded)
        return self.loaded
