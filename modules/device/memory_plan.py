"""How much a job may hold on the device: the memory plan ("full", "low", "offload") and model CPU
offload (`ComponentPlacer`: the weights stay in RAM and one component at a time is on the GPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

GiB = 1024**3
MEMORY_PLANS = ("auto", "full", "low", "offload")


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


def cuda_free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)
