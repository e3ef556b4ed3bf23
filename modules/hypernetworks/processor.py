"""Hypernetworks applied inside Easel's denoising loop through diffusers attention processors.

For every attention layer whose context width a hypernetwork has (self-attention: the layer's own
hidden states, 320/640/1280 wide in SD1; cross-attention: the text, 768 in SD1, 1024 in SD2), the
key is computed from the context passed through the networks' key MLPs and the value from it
through their value MLPs, one network after another (A1111's `apply_hypernetworks`); the rest of
the layer is diffusers' scaled-dot-product attention as `AttnProcessor2_0` computes it. Layers no
network has a width for run their own processor untouched.

`hypernetworks_applied(unet, networks)` installs the processors over whatever the pass has (plain,
sliced or fused attention) and puts the same processor objects back afterwards, also on an
exception, so the UNet is exactly as before: its weights are never touched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from modules.hypernetworks.network import Hypernetwork


class HypernetworkAttnProcessor:
    def __init__(self, inner: Any, networks: Sequence[Hypernetwork]):
        self.inner = inner
        self.networks = list(networks)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        pairs = [network.layers[context.shape[-1]] for network in self.networks if context.shape[-1] in network.layers]
        plain = (hidden_states.ndim != 3 or getattr(attn, "spatial_norm", None) is not None or getattr(attn, "group_norm", None) is not None
                 or getattr(attn, "residual_connection", False))
        if not pairs or plain:
            extra = dict(kwargs, temb=temb) if temb is not None else kwargs
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **extra)
        if encoder_hidden_states is not None and getattr(attn, "norm_cross", None):
            context = attn.norm_encoder_hidden_states(context)
        context_k = context_v = context
        for key_mlp, value_mlp in pairs:
            context_k, context_v = key_mlp(context_k), value_mlp(context_v)
        batch = hidden_states.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        query, key, value = attn.to_q(hidden_states), attn.to_k(context_k), attn.to_v(context_v)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor if attn.rescale_output_factor != 1 else out


def attention_names(unet: torch.nn.Module) -> set[str]:
    """The `attn_processors` keys of every attention layer (self- and cross-attention)."""
    return {f"{name}.processor" for name, module in unet.named_modules() if hasattr(module, "set_processor") and hasattr(module, "to_k")}


@contextmanager
def hypernetworks_applied(unet: Any, networks: Sequence[Hypernetwork]) -> Iterator[None]:
    """The networks in effect on `unet` inside (nothing to do for none); the previous processors,
    the same objects, put back after."""
    if not networks:
        yield
        return
    parameter = next(unet.parameters())
    for network in networks:
        network.to(parameter.device)
    saved = dict(unet.attn_processors)
    names = attention_names(unet)
    unet.set_attn_processor({name: HypernetworkAttnProcessor(p, networks) if name in names else p for name, p in saved.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(saved)
