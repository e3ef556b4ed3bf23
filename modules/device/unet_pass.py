"""The UNet as one sampling pass runs it: fused QKV projections, channels_last, attention slicing and
the compiled UNet of fast mode, each applied to Easel's own module for the pass and undone after it
(channels_last, fused QKV and slicing change float rounding only)."""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, cast

import torch

from modules.device.optimizations import Optimizations

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

log = logging.getLogger(__name__)


def _attention_modules(unet: UNet2DConditionModel) -> list[tuple[str, Attention]]:
    from diffusers.models.attention_processor import Attention

    return [(name, m) for name, m in unet.named_modules() if isinstance(m, Attention)]


@contextmanager
def _fused_qkv(unet: UNet2DConditionModel, store: dict) -> Iterator[None]:
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
def _channels_last(unet: UNet2DConditionModel) -> Iterator[None]:
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
def _sliced_attention(unet: UNet2DConditionModel) -> Iterator[None]:
    saved = unet.attn_processors
    try:
        unet.set_attention_slice("auto")
        yield
    finally:
        unet.set_attn_processor(saved)


class CompiledUNet:
    """The model's UNet compiled once (torch.compile keeps one graph per input shape); `shapes` are
    those compiled so far, so the first pass at a new size can be announced as a warm-up."""

    def __init__(self, unet: UNet2DConditionModel, backend: str = "inductor", mode: str | None = None):
        self.unet = unet
        # torch.compile of a Module returns an OptimizedModule (a Module); its stub says only Callable.
        self.compiled = cast(torch.nn.Module, torch.compile(unet, backend=backend, mode=mode, dynamic=False, fullgraph=False))
        self.shapes: set[tuple] = set()


def compiled_unet(unet: UNet2DConditionModel, cache: dict, backend: str = "inductor", mode: str | None = None) -> CompiledUNet:
    key = f"performance.compiled.{backend}.{mode}"
    entry = cache.get(key)
    if entry is None or entry.unet is not unet:
        entry = CompiledUNet(unet, backend, mode)
        cache[key] = entry
    return entry


@contextmanager
def unet_for_pass(
    unet: UNet2DConditionModel,
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
