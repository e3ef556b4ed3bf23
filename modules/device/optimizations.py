"""Every speed and memory choice for the loaded models, in one object the app builds at start and
the manager hands to each model it loads (`LoadedModel.optimizations`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from modules.device.memory_plan import GiB, choose_memory_plan


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
