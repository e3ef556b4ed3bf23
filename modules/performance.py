"""Speed and memory choices for a device, held in one `Optimizations` object the app builds at start.

The manager hands the object to every model it loads (`LoadedModel.optimizations`); the engine
reads it there. Nothing here is global and nothing replaces a library function: each choice is
applied to Easel's own module objects for the length of one sampling pass and undone after it, so
the RAM cache, LoRA patching and checkpoint switches always see the plain modules.

- CPU: bf16 where the CPU has AMX tiles (`cpu_bf16_support`), threads = physical cores.
- Attention: diffusers' default `AttnProcessor2_0` (PyTorch SDPA) is kept; nothing replaces it.
  Attention slicing (low memory) and fused QKV projections swap the processors for one pass.
- channels_last: the UNet's 4-D weights in NHWC for one pass (faster convolutions on GPUs).
- Fast mode: `torch.compile` of the UNet, kept per model; each new latent shape compiles once
  (the job's progress text says so while it does).
- VAE: fp16 decodes that come out NaN/inf are redone in fp32 (the VAE then stays fp32 for that
  model, as A1111's "revert VAE to 32-bit floats" does) and the job says so; decodes and encodes
  above `vae_tile_above_pixels` run tiled (diffusers' tiling on the same module).
- Memory plan: "full", "low" (attention slicing + tiled VAE from a smaller size) or "offload" (low,
  plus model CPU offload: the weights stay in RAM and one component at a time, text encoder, UNet
  or VAE, is moved to the GPU while it runs; `ComponentPlacer`), chosen from free memory at start
  unless `--memory` says otherwise.

Tolerances (what tests/unit/test_performance.py and tests/integration/test_optimizations.py check on
tiny models): channels_last, fused QKV and attention slicing change float rounding only (fp32:
latents within 1e-3, 8-bit pixels within 2 levels). Tiled VAE is NOT a rounding change: each tile
has its own GroupNorm statistics and mid-block attention, so the picture differs (a lot on a
random-weight VAE, subtly on a trained one with 512 px tiles); that is why it engages only above
the memory plan's size, where the whole decode would not fit. The fp32 VAE retry gives the fp32
decode itself.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch

log = logging.getLogger(__name__)

GiB = 1024**3
MEMORY_PLANS = ("auto", "full", "low", "offload")


# CPU ---------------------------------------------------------------------------------------------


CPU_FLAGS_ENV = "EASEL_CPU_FLAGS"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (or of the text given), empty where unknown.

    `EASEL_CPU_FLAGS` (space-separated flags; empty for none), when set, replaces the host's flags:
    it makes Easel choose as on another CPU, e.g. `EASEL_CPU_FLAGS=avx2` runs the float32 path on an
    AMX machine (the test suite is run that way too). `--dtype` overrides only the dtype."""
    if cpuinfo is None:
        override = os.environ.get(CPU_FLAGS_ENV)
        if override is not None:
            return set(override.split())
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_support(flags: set[str] | None = None, capability: str | None = None) -> str:
    """How this CPU runs bf16 matrix products: "amx" (AMX tiles: the fast case, ~2.5x fp32 on a
    UNet), "avx512_bf16" (dot-product instructions only: about fp32 speed), or "none" (bf16 is
    emulated: slower than fp32). `capability` is torch.backends.cpu.get_cpu_capability()."""
    flags = cpu_flags() if flags is None else flags
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    if "amx_bf16" in flags and "amx_tile" in flags and "AVX512" in capability.upper():
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


def auto_cpu_dtype(flags: set[str] | None = None, capability: str | None = None) -> torch.dtype:
    """bf16 on AMX CPUs, float32 on every other CPU (where bf16 measured slower: bench/bf16_cpu.py)."""
    return torch.bfloat16 if cpu_bf16_support(flags, capability) == "amx" else torch.float32


def physical_cores(cpuinfo: str | None = None, allowed: int | None = None) -> int:
    """Physical cores this process may use: distinct (physical id, core id) pairs of /proc/cpuinfo,
    at most the CPUs in the affinity mask (`allowed`)."""
    if allowed is None:
        allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cores: set[tuple[str, str]] = set()
    package = core = None
    for line in cpuinfo.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core is not None:
                cores.add((package or "0", core))
            package = core = None
    found = len(cores) or allowed
    return max(1, min(found, allowed))


def choose_threads(override: int | None = None, cpuinfo: str | None = None, allowed: int | None = None) -> int:
    """Intra-op threads: `override` (--threads) when given, else one per physical core (hyper-threads
    slow the UNet's matrix products down)."""
    if override is not None and override > 0:
        return override
    return physical_cores(cpuinfo, allowed)


# memory ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    name: str  # "full", "low" or "offload"
    attention_slicing: bool
    vae_tile_above_pixels: int | None  # tile VAE decodes/encodes of images larger than this; None: never
    reason: str  # why this plan ("asked", or what auto saw)

    @property
    def offload(self) -> bool:
        """Model CPU offload (ComponentPlacer)."""
        return self.name == "offload"


def vae_decode_bytes(pixels: int, itemsize: int) -> int:
    """A rough peak of an SD VAE decode: the full-resolution 128-channel activations, ~6 alive at once."""
    return pixels * 128 * itemsize * 6


OFFLOAD_RESIDENT_SHARE = 0.7  # the UNet's share of an SD checkpoint: what "offload" keeps on the GPU at once


def choose_memory_plan(free_bytes: int | None, model_bytes: int, itemsize: int, choice: str = "auto") -> MemoryPlan:
    """The memory plan for a device with `free_bytes` free (None: a CPU, whose RAM is not the limit)
    holding a model of `model_bytes`. `choice` "full"/"low"/"offload" overrides "auto".

    auto: "full" when the model plus 2.5 GiB fits (a 1024x1024 SD1.5 job in fp16 needs about that);
    "low" when the model plus 1 GiB fits; else "offload", where only the largest component (about
    70% of an SD model: the UNet) is on the GPU at a time. The VAE is tiled above the size whose
    decode would take more than half the memory left after the model ("low" and "offload": a
    quarter), and never on a CPU unless asked.
    """
    if choice not in MEMORY_PLANS:
        raise ValueError(f"memory plan must be one of {', '.join(MEMORY_PLANS)}, not {choice!r}")
    if free_bytes is None:
        name = "full" if choice == "auto" else choice
        tile = None if name == "full" else 1024 * 1024
        why = "asked" if choice != "auto" else "CPU: RAM is not the limit"
        return MemoryPlan(name, name != "full", tile, why)
    if choice == "auto":
        left = free_bytes - model_bytes
        name = "full" if left >= 2.5 * GiB else "low" if left >= 1 * GiB else "offload"
        reason = f"auto: {free_bytes / GiB:.1f} GiB free, model {model_bytes / GiB:.1f} GiB"
    else:
        name, reason = choice, "asked"
    on_device = model_bytes * (OFFLOAD_RESIDENT_SHARE if name == "offload" else 1)
    budget = max(0, free_bytes - on_device) / (2 if name == "full" else 4)
    per_pixel = vae_decode_bytes(1, itemsize)
    tile = max(256 * 256, int(budget // per_pixel))
    return MemoryPlan(name, name != "full", tile, reason)


class ComponentPlacer:
    """Model CPU offload. The modules live on `home` (RAM); `bring(module)` puts the module a job is
    about to run on `compute` and sends the ones there before it home, so one component at a time
    takes GPU memory (diffusers' model CPU offload does the same with hooks; Easel calls it where
    each component is used).

    Going home copies nothing back: each parameter is pointed at the RAM tensor it had before
    (the RAM cache's own tensor), so RAM holds one copy of the weights. Whoever changes weights in
    place (LoRA patching, a weight swap) calls `evict()` first and changes the RAM tensors. A
    module whose dtype changed while it was on the device (the VAE's fp32 retry) is copied home.

    `moves` counts the transfers to the device (each one copies that module's weights over PCIe)."""

    def __init__(self, compute: torch.device, home: torch.device = torch.device("cpu")):
        self.compute = compute
        self.home = home
        self.resident: tuple[torch.nn.Module, ...] = ()  # what is on the compute device now
        self.moves = 0
        self._home_tensors: list[tuple[torch.Tensor, torch.Tensor]] = []  # (tensor object on a module, its RAM data)

    def bring(self, *modules: torch.nn.Module) -> None:
        """Puts `modules` (one component, or SDXL's two text encoders together) on the compute device."""
        if len(modules) == len(self.resident) and all(a is b for a, b in zip(modules, self.resident)):
            return
        self.evict()
        with torch.no_grad():
            for module in modules:
                for tensor in _module_tensors(module):
                    self._home_tensors.append((tensor, _swap(tensor, tensor.data.to(self.compute, non_blocking=tensor.is_pinned()))))
        self.resident = tuple(modules)
        self.moves += 1

    def evict(self) -> None:
        """Points the modules on the compute device back at their RAM tensors."""
        with torch.no_grad():
            for tensor, home in self._home_tensors:
                changed = tensor.dtype != home.dtype or tensor.shape != home.shape
                _swap(tensor, tensor.data.to(self.home) if changed else home)
        self._home_tensors = []
        self.resident = ()


def _swap(tensor: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Gives `tensor` (a module's parameter or buffer, which keeps its identity: hooks, LoRA backups
    and the module hold it) the contents of `data`; returns a tensor holding its previous contents.
    torch.utils.swap_tensors also crosses tensor types (a CPU tensor to a CUDA or meta one), which
    `.data =` refuses for some."""
    wrap = isinstance(tensor, torch.nn.Parameter) and not isinstance(data, torch.nn.Parameter)
    other = torch.nn.Parameter(data, requires_grad=tensor.requires_grad) if wrap else data
    torch.utils.swap_tensors(tensor, other)
    return other


def _module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *(b for b in module.buffers() if b is not None)]


# the object ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optimizations:
    """Every speed/memory choice for the loaded models. The default is the plain path."""

    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False  # "fast mode"
    compile_backend: str = "inductor"
    compile_mode: str | None = None  # torch.compile's mode (None: its default; "max-autotune" compiles longer)
    attention_slicing: bool = False
    vae_tile_above_pixels: int | None = None  # None: never tile
    vae_nan_retry: bool = True
    memory_plan: str = "full"
    offload: bool = False  # model CPU offload: weights in RAM, one component on the device at a time
    notes: tuple[str, ...] = field(default=())  # why each choice was made, for the log

    def describe(self) -> str:
        on = [name for name in ("channels_last", "fuse_qkv", "compile", "attention_slicing", "offload") if getattr(self, name)]
        tile = f", VAE tiled above {self.vae_tile_above_pixels} px" if self.vae_tile_above_pixels else ""
        why = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"memory plan {self.memory_plan}{why}; {', '.join(on) or 'no graph changes'}{tile}"


def choose_optimizations(
    device: torch.device,
    dtype: torch.dtype,
    free_bytes: int | None = None,
    model_bytes: int = int(2.2 * GiB),
    memory: str = "auto",
    fast_mode: bool = False,
) -> Optimizations:
    """The choices for a device: on CUDA channels_last and fused QKV (both only change rounding),
    on CPU the plain path (neither measured faster there); fast mode only when asked."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    gpu = device.type == "cuda"
    plan = choose_memory_plan(free_bytes if gpu else None, model_bytes, itemsize, memory)
    return Optimizations(
        channels_last=gpu and plan.name == "full",  # an NHWC copy of the conv weights costs memory
        fuse_qkv=gpu,
        compile=fast_mode,
        attention_slicing=plan.attention_slicing,
        vae_tile_above_pixels=plan.vae_tile_above_pixels,
        memory_plan=plan.name,
        offload=plan.offload and gpu,
        notes=(plan.reason,) + (("offload: nothing to offload to on a CPU; the weights are in RAM already",) if plan.offload and not gpu else ()),
    )


def cuda_free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


# one pass of the UNet -----------------------------------------------------------------------------


def _attention_modules(unet: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from diffusers.models.attention_processor import Attention

    return [(name, m) for name, m in unet.named_modules() if isinstance(m, Attention)]


@contextmanager
def _fused_qkv(unet: torch.nn.Module, store: dict) -> Iterator[None]:
    """Fused q/k/v (self-attention) and k/v (cross-attention) projections for one pass.

    The fused Linear modules are kept in `store` (the model's cache) and refilled from the current
    weights each pass, so a LoRA applied for the job is in them and torch.compile sees the same
    module objects every time; after the pass they are detached again, so the model's parameters
    (what checkpoint switches and LoRA restore work on) are exactly the plain ones."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    saved = unet.attn_processors
    if any("Added" in type(p).__name__ for p in saved.values()):
        yield
        return
    attached = []
    try:
        with torch.no_grad():
            for name, attn in _attention_modules(unet):
                parts = [attn.to_k, attn.to_v] if attn.is_cross_attention else [attn.to_q, attn.to_k, attn.to_v]
                weight = torch.cat([p.weight for p in parts])
                bias = torch.cat([p.bias for p in parts]) if attn.use_bias else None
                fused = store.get(name)
                if fused is None or fused.weight.shape != weight.shape or fused.weight.dtype != weight.dtype or fused.weight.device != weight.device:
                    fused = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
                    fused.requires_grad_(False)
                    store[name] = fused
                fused.weight.copy_(weight)
                if bias is not None:
                    fused.bias.copy_(bias)
                attr = "to_kv" if attn.is_cross_attention else "to_qkv"
                setattr(attn, attr, fused)
                attn.fused_projections = True
                attached.append((attn, attr))
        unet.set_attn_processor(FusedAttnProcessor2_0())
        yield
    finally:
        for attn, attr in attached:
            delattr(attn, attr)
            attn.fused_projections = False
        unet.set_attn_processor(saved)


@contextmanager
def _channels_last(unet: torch.nn.Module) -> Iterator[None]:
    """The UNet's 4-D weights in channels_last for one pass; the original tensors are put back after."""
    saved = []
    try:
        for param in unet.parameters():
            if param.dim() == 4 and not param.data.is_contiguous(memory_format=torch.channels_last):
                saved.append((param, param.data))
                param.data = param.data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for param, data in saved:
            param.data = data


@contextmanager
def _sliced_attention(unet: torch.nn.Module) -> Iterator[None]:
    saved = unet.attn_processors
    try:
        unet.set_attention_slice("auto")
        yield
    finally:
        unet.set_attn_processor(saved)


class CompiledUNet:
    """The model's UNet compiled once (torch.compile keeps one graph per input shape); `shapes` are
    those compiled so far, so the first pass at a new size can be announced as a warm-up."""

    def __init__(self, unet: torch.nn.Module, backend: str = "inductor", mode: str | None = None):
        self.unet = unet
        self.compiled = torch.compile(unet, backend=backend, mode=mode, dynamic=False, fullgraph=False)
        self.shapes: set[tuple] = set()


def compiled_unet(unet: torch.nn.Module, cache: dict, backend: str = "inductor", mode: str | None = None) -> CompiledUNet:
    key = f"performance.compiled.{backend}.{mode}"
    entry = cache.get(key)
    if entry is None or entry.unet is not unet:
        entry = CompiledUNet(unet, backend, mode)
        cache[key] = entry
    return entry


@contextmanager
def unet_for_pass(
    unet: torch.nn.Module,
    options: Optimizations | None,
    cache: dict,
    latent_shape: tuple[int, ...],
    say: Callable[[str], None] | None = None,
    compile_backend: str | None = None,
) -> Iterator[torch.nn.Module]:
    """The UNet to call for one sampling pass, with the chosen optimisations applied for its length.
    `cache` is the model's per-model cache (fused projections, compiled graphs live there); `say`
    shows a message to the user (the fast-mode warm-up); `compile_backend` overrides the options' one."""
    if options is None:
        yield unet
        return
    with ExitStack() as stack:
        if options.attention_slicing:
            stack.enter_context(_sliced_attention(unet))
        elif options.fuse_qkv:
            stack.enter_context(_fused_qkv(unet, cache.setdefault("performance.fused_qkv", {})))
        if options.channels_last:
            stack.enter_context(_channels_last(unet))
        if not options.compile:
            yield unet
            return
        entry = compiled_unet(unet, cache, compile_backend or options.compile_backend, options.compile_mode)
        shape = tuple(latent_shape)
        if shape not in entry.shapes and say is not None:
            say(f"Fast mode: compiling the UNet for {shape[-1] * 8}x{shape[-2] * 8} (first job at this size; later ones reuse it)")
        entry.shapes.add(shape)
        yield entry.compiled


# the VAE ------------------------------------------------------------------------------------------


@contextmanager
def vae_tiling(vae: torch.nn.Module, on: bool) -> Iterator[None]:
    """diffusers' tiled decode/encode on this VAE for a block, its previous state restored after."""
    if not on or not hasattr(vae, "enable_tiling"):
        yield
        return
    before = getattr(vae, "use_tiling", False)
    vae.enable_tiling()
    try:
        yield
    finally:
        if not before:
            vae.disable_tiling()


def tiles(options: Optimizations | None, width: int, height: int) -> bool:
    limit = options.vae_tile_above_pixels if options is not None else None
    return limit is not None and width * height > limit


def decode_checked(vae: torch.nn.Module, latent: torch.Tensor, options: Optimizations | None, notes: list[str] | None = None) -> torch.Tensor:
    """Scaled latents -> pixels in [-1, 1] (float32). A half-precision decode that gives NaN or inf
    is redone in float32; the VAE stays float32 afterwards and `notes` gets a sentence for the user."""
    scale = vae.config.scaling_factor
    param = next(vae.parameters())
    tiled = tiles(options, latent.shape[-1] * 8, latent.shape[-2] * 8)
    with torch.no_grad(), vae_tiling(vae, tiled):
        out = vae.decode(latent.to(param.device, param.dtype) / scale).sample
        retry = options is None or options.vae_nan_retry
        if retry and param.dtype in (torch.float16, torch.bfloat16) and not bool(torch.isfinite(out).all()):
            vae.to(torch.float32)
            if notes is not None:
                notes.append(f"The VAE decode in {str(param.dtype).removeprefix('torch.')} gave NaN; decoded again in float32 "
                             "(the VAE stays in float32 from now on).")
            log.warning("VAE decode gave NaN in %s; switched the VAE to float32", param.dtype)
            out = vae.decode(latent.to(param.device, torch.float32) / scale).sample
    return out.float()


def describe_cpu() -> dict[str, object]:
    """What a log line or a bench needs to know about the CPU's bf16 and threads."""
    return {"bf16": cpu_bf16_support(), "capability": torch.backends.cpu.get_cpu_capability(), "physical_cores": physical_cores(),
            "torch_threads": torch.get_num_threads()}


def with_overrides(options: Optimizations, **changes: object) -> Optimizations:
    return replace(options, **changes)
