"""Attention mode: each region's prompt applied inside the UNet's cross-attention layers.

At every cross-attention layer (diffusers `attn2`) and for every batch row that carries regional
conditioning, the layer's own processor is run once per prompt part the layout uses (the part's
token range of the row's hidden states as the context), and the outputs are mixed position by
position with the layout's weight maps at the layer's token grid (the extension's `matsepcalc` /
`masksepcalc`, scripts/attention.py l.170-366, combine its per-region `main_forward` outputs the
same way: after the output projection, cells side by side, the base mixed in by its weight).

Rows whose spans are None (the negative prompt when it has no regions) run the layer as it is. The
processors it wraps are the pass's own (plain SDPA, sliced, fused QKV), so whatever they do, every
region gets it. Parts whose context lengths match run as one batched call.

`regional_attention(unet, plan)` installs the processors (diffusers `set_attn_processor`) and
puts the previous ones back, the same objects, on the way out; `plan.bound(latent_hw, rows)` tells
them, for one UNet call, the latent's size and each row's spans (modules/generation/guidance.py's
UNetEps does that for every call).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from modules.regions.layout import RegionLayout

Spans = tuple[tuple[int, int], ...]


def layer_grid(latent_hw: tuple[int, int], tokens: int) -> tuple[int, int]:
    """The (h, w) of a layer with `tokens` positions: the latent halved (rounding up, as the UNet's
    stride-2 convolutions do; then down, for other models) until the count matches."""
    for round_up in (True, False):
        height, width = latent_hw
        for _ in range(8):
            if height * width == tokens:
                return height, width
            height, width = ((height + 1) // 2, (width + 1) // 2) if round_up else (height // 2, width // 2)
    raise RuntimeError(f"regional attention: a layer of {tokens} positions does not match the latent size {latent_hw[0]}x{latent_hw[1]}")


@dataclass
class RegionCall:
    latent_hw: tuple[int, int]
    rows: list[Spans | None]
    images: list[int] | None = None  # each row's picture in the batch (None: row r is picture r)
    conditional: list[bool] | None = None  # each row: the prompt's (True) or the negative's


def _positions(items: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(list(items), device=device)


class RegionPlan:
    """One pass's regions: the layout, and what the current UNet call is (set by `bound`)."""

    def __init__(self, layout: RegionLayout):
        self.layout = layout
        self.current: RegionCall | None = None
        self._maps: dict[tuple, tuple[torch.Tensor, list[int]]] = {}

    @contextmanager
    def bound(self, latent_hw: Sequence[int], rows: Sequence[Spans | None] | None, images: Sequence[int] | None = None,
              conditional: Sequence[bool] | None = None) -> Iterator[None]:
        """For the UNet call inside: the latent's (h, w), each batch row's part spans (None: plain),
        and optionally each row's picture and role (Prompt mode's masks are per picture)."""
        previous = self.current
        height, width = latent_hw
        self.current = RegionCall((int(height), int(width)), list(rows), list(images) if images is not None else None,
                                  list(conditional) if conditional is not None else None) if rows is not None else None
        try:
            yield
        finally:
            self.current = previous

    def layer_weights(self, grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
        """((J, h·w) weight maps, the maps that are not zero everywhere) at a layer's grid."""
        key = (grid, device, dtype)
        if key not in self._maps:
            maps = self.layout.weights(*grid).reshape(len(self.layout.context_parts), -1)
            used = [j for j in range(maps.shape[0]) if bool(maps[j].any())]
            self._maps[key] = (maps.to(device, dtype), used)
        return self._maps[key]

    def row_weights(self, grid: tuple[int, int], call: RegionCall, rows: Sequence[int], device: torch.device,
                    dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
        """((1 or rows, J, h·w) weight maps for these rows, the maps used)."""
        maps, used = self.layer_weights(grid, device, dtype)
        return maps[None], used


class RegionalAttnProcessor:
    """A cross-attention processor that runs `inner` once per region and mixes the outputs."""

    def __init__(self, inner: Any, plan: RegionPlan):
        self.inner = inner
        self.plan = plan

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        call = self.plan.current
        if call is None or encoder_hidden_states is None or hidden_states.ndim != 3 or all(r is None for r in call.rows):
            return self._inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, kwargs)
        if len(call.rows) != hidden_states.shape[0]:
            raise RuntimeError(f"regional attention: {len(call.rows)} rows described for a batch of {hidden_states.shape[0]}")
        groups: dict[Spans | None, list[int]] = {}
        for row, spans in enumerate(call.rows):
            groups.setdefault(spans, []).append(row)
        if len(groups) == 1:
            spans, rows = next(iter(groups.items()))
            return self._group(attn, hidden_states, encoder_hidden_states, attention_mask, temb, call, spans, rows, kwargs)
        out: torch.Tensor | None = None
        for spans, rows in groups.items():
            index = torch.tensor(rows, device=hidden_states.device)
            mask = attention_mask[index] if attention_mask is not None and attention_mask.shape[0] == hidden_states.shape[0] else attention_mask
            part = self._group(attn, hidden_states[index], encoder_hidden_states[index], mask, temb, call, spans, rows, kwargs)
            if out is None:
                out = part.new_empty((hidden_states.shape[0], *part.shape[1:]))
            out[index] = part
        assert out is not None
        return out

    def _inner(self, attn: Any, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None,
               temb: torch.Tensor | None, kwargs: dict) -> torch.Tensor:
        """The wrapped processor, called as diffusers' `Attention.forward` calls it (temb only when given)."""
        extra = dict(kwargs, temb=temb) if temb is not None else kwargs
        return self.inner(attn, hidden, encoder_hidden_states=context, attention_mask=mask, **extra)

    def _group(self, attn: Any, hidden: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None, temb: torch.Tensor | None,
               call: RegionCall, spans: Spans | None, rows: list[int], kwargs: dict) -> torch.Tensor:
        """Rows sharing one set of spans (None: plain attention over the whole context)."""
        if spans is None:
            return self._inner(attn, hidden, context, mask, temb, kwargs)
        grid = layer_grid(call.latent_hw, hidden.shape[1])
        phase = getattr(self.plan, "phase", "ready")
        if getattr(self.plan, "collecting", False):  # Prompt mode: the base prompt's (part 0) attention read on the prompt's rows
            images = [call.images[r] if call.images else r for r in rows]
            wanted = [i for i, r in enumerate(rows) if call.conditional is None or call.conditional[r]]
            if wanted:
                index = _positions(wanted, hidden.device)
                self.plan.collect(attn, hidden[index], context[index][:, slice(*spans[0])], grid,  # type: ignore[attr-defined]
                                  [images[i] for i in wanted])
        if phase != "ready":  # Prompt mode's first calls: the base prompt alone
            return self._inner(attn, hidden, context[:, slice(*spans[0])], None if mask is None else mask[..., slice(*spans[0])], temb, kwargs)
        maps, used = self.plan.row_weights(grid, call, rows, hidden.device, hidden.dtype)
        parts = self.plan.layout.context_parts
        if any(parts[j] >= len(spans) for j in used):
            raise RuntimeError(f"regional attention: the layout uses prompt part {max(parts[j] for j in used) + 1} of {len(spans)}")
        by_length: dict[int, list[int]] = {}
        for j in used:
            start, end = spans[parts[j]]
            by_length.setdefault(end - start, []).append(j)
        result: torch.Tensor | None = None
        for maps_here in by_length.values():
            contexts = [context[:, slice(*spans[parts[j]])] for j in maps_here]
            masks = None if mask is None else [mask[..., slice(*spans[parts[j]])] for j in maps_here]
            count = len(maps_here)
            if count == 1:
                outputs = [self._inner(attn, hidden, contexts[0], masks[0] if masks else None, temb, kwargs)]
            else:
                batched = self._inner(attn, hidden.repeat(count, 1, 1), torch.cat(contexts), torch.cat(masks) if masks else None, temb, kwargs)
                outputs = list(batched.chunk(count))
            for j, output in zip(maps_here, outputs):
                weighted = output * maps[:, j, :, None]
                result = weighted if result is None else result + weighted
        assert result is not None  # the weights add up to 1: some map is used
        return result


def cross_attention_names(unet: torch.nn.Module) -> set[str]:
    """The `attn_processors` keys of the cross-attention layers (diffusers `Attention` with a context dimension)."""
    return {f"{name}.processor" for name, module in unet.named_modules()
            if getattr(module, "is_cross_attention", False) and hasattr(module, "set_processor")}


@contextmanager
def regional_attention(unet: Any, plan: RegionPlan) -> Iterator[RegionPlan]:
    """The UNet's cross-attention layers run regionally inside; the previous processors (the same
    objects) are put back after, also on an exception."""
    saved = dict(unet.attn_processors)
    cross = cross_attention_names(unet)
    unet.set_attn_processor({name: RegionalAttnProcessor(p, plan) if name in cross else p for name, p in saved.items()})
    try:
        yield plan
    finally:
        unet.set_attn_processor(saved)
