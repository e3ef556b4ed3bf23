"""Prompt mode: the regions are found while the picture forms, where the base prompt's cross-attention
looks at each region's target word (the extension's `promptsepcalc`, `main_forward`'s map collection
and `makepmask`, scripts/attention.py l.31-110, 368-436, 588-602; `tokendealer`, scripts/rp.py).

The prompt is `base BREAK (red:1.7), umbrella BREAK ...`: part 0 is the base, drawn everywhere; each
other part is a region whose target is its text after the last comma ("umbrella"), whose tokens are
looked for in the base prompt. At every cross-attention layer of every model call from the second
on, for each picture of the batch, the attention the base prompt pays to the target's tokens is
read: their probabilities raised to 1.2 (4 for SDXL) and summed over the tokens, averaged over the
heads, resized to the first layer's grid and added to what the earlier layers and calls gave. A
region's mask is where that sum, divided by its maximum (times 0.85 for SDXL), passes the region's
threshold ("RP threshold": one per region, the first repeated), lowered by 0.005 a call. The first
two model calls run the base prompt alone; from the third on the masks are made again before each
call from all the maps read so far, and Prompt submode gives region k the weight mₖ·(1 − bₖ) and
the base the rest (bₖ: the base ratios, 0 unless Use base); Prompt-Ex lets a later region cover an
earlier one (each position takes the last region whose mask holds it, mixed with the base by bₖ).

Differences, on purpose: when the masks are first ready the extension sends the sampler's first
input to the model again (it swaps `x` back to step 0's in its denoiser callback); Easel goes on from
where the sampler is. The hires pass keeps the first pass's last masks (the extension rescales
them and reads on). Latent calc mode with Prompt mode is refused.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from modules.regions.attention import RegionCall, RegionPlan
from modules.regions.errors import RegionalPromptError
from modules.regions.layout import RegionLayout

PAD = -1
CHUNK = 77  # positions per encoded chunk: start token, 75 tokens, end token


def prompt_layout(regions: int, base_ratios: str, use_base: bool) -> RegionLayout:
    """Part 0 is the base; region k uses part k + 1 and mixes in the base by its base ratio."""
    values = [float(v) for v in base_ratios.split(",") if v.strip()] if use_base else [0.0]
    values = values or [0.0]
    weights = [values[k] if k < len(values) else values[0] for k in range(regions)]
    return RegionLayout(parts=[k + 1 for k in range(regions)], base_weights=weights, base_part=0)


def thresholds(text: str, regions: int) -> list[float]:
    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError:
            raise RegionalPromptError(f"Regional Prompter arg 16 (threshold) must be numbers separated by commas, not {text!r}.") from None
    return [values[k] if k < len(values) else values[0] for k in range(regions)]


def target_word(part: str) -> str:
    return part.split(",")[-1].strip()


def target_positions(chunks: Callable[[str], Sequence[Any]], base: str, targets: Sequence[str]) -> list[list[int]]:
    """For each target word, the positions in the base part's hidden states of the base tokens that
    are also the word's tokens (`chunks`: the encoder's text -> TokenChunks)."""
    base_chunks = chunks(base)
    found = []
    for region, word in enumerate(targets):
        wanted = {t for chunk in chunks(word) for t in chunk.tokens if t >= 0}
        positions = [index * CHUNK + 1 + offset for index, chunk in enumerate(base_chunks)
                     for offset, token in enumerate(chunk.tokens) if token in wanted]
        if not positions:
            number = region + 1
            raise RegionalPromptError(f"Regional Prompter Prompt mode: region {number}'s target word {word!r} (its text after the last "
                                      "comma) is not in the base prompt (the part before the first BREAK); write it there too.")
        found.append(positions)
    return found


class PromptRegionPlan(RegionPlan):
    """A pass's plan whose region maps come from the base prompt's attention (one set per picture)."""

    def __init__(self, layout: RegionLayout, targets: list[list[int]], thresholds: list[float], exclusive: bool, sdxl: bool,
                 probes: bool = True, source: "PromptRegionPlan | None" = None):
        super().__init__(layout)
        self.targets, self.thresholds, self.exclusive, self.sdxl = targets, thresholds, exclusive, sdxl
        self.probes = probes  # this pass finds the masks itself (else it takes `source`'s, fixed)
        self.source = source
        self.phase = "ready"  # "base": the base prompt alone; "collect": and its maps read; "ready": the regions mixed
        self.calls = 0  # model calls with the prompt's rows since `start`
        self._sums: dict[tuple[int, int], torch.Tensor] = {}  # (picture, region) -> summed map at the first layer's grid
        self._grid: tuple[int, int] | None = None
        self._fresh = False  # maps were added since the masks were made
        self.masks: torch.Tensor | None = None  # (pictures, regions, h, w) in {0, 1}
        self.version = 0  # counts the masks made, so cached weights from older masks are never used

    @property
    def collecting(self) -> bool:
        return self.probes and self.phase != "base"

    def follower(self, probes: bool) -> "PromptRegionPlan":
        """The hires pass's plan: the same regions; it takes this plan's last masks unless it `probes`."""
        return PromptRegionPlan(self.layout, self.targets, self.thresholds, self.exclusive, self.sdxl, probes=probes, source=self)

    def current_masks(self) -> torch.Tensor:
        masks = self.masks if self.probes or self.source is None else self.source.masks
        if masks is None:
            raise RuntimeError("Prompt mode: the pass ran before its masks were found")
        return masks

    # finding the regions ---------------------------------------------------------------------------

    def start(self) -> None:
        """A new pass over a new batch: nothing collected yet."""
        self.phase = "base" if self.probes else "ready"
        self.calls, self._sums, self._grid, self.masks, self._fresh = 0, {}, None, None, False
        self._maps.clear()

    @contextmanager
    def bound(self, latent_hw: Sequence[int], rows: Sequence[Any] | None, images: Sequence[int] | None = None,
              conditional: Sequence[bool] | None = None) -> Iterator[None]:
        if self.probes and rows is not None and (conditional is None or any(conditional)):
            self._advance(1 + max(images) if images else len(rows))
        with super().bound(latent_hw, rows, images, conditional):
            yield

    def _advance(self, pictures: int) -> None:
        """Before a model call with the prompt's rows: the first runs the base alone, the second
        also reads its maps, and from the third on the regions are mixed by masks made from all
        the maps read so far (the threshold lowered by 0.005 a call, as the extension lowers it)."""
        self.calls += 1
        if self.calls == 1:
            self.phase = "base"
        elif self.calls == 2:
            self.phase = "collect"
        else:
            if self._fresh or self.masks is None:
                self.make_masks(pictures, lowered=0.005 * (self.calls - 1))
            self.phase = "ready"

    def collect(self, attn: Any, hidden: torch.Tensor, context: torch.Tensor, grid: tuple[int, int], images: Sequence[int]) -> None:
        """Adds one layer's attention on the targets (rows = pictures `images`)."""
        batch, tokens, _ = hidden.shape
        heads = attn.heads
        query = attn.to_q(hidden).reshape(batch, tokens, heads, -1).transpose(1, 2).float()
        key = attn.to_k(context).reshape(batch, context.shape[1], heads, -1).transpose(1, 2).float()
        probabilities = (query @ key.transpose(-1, -2) * attn.scale).softmax(dim=-1)  # (B, heads, tokens, context)
        power = 4.0 if self.sdxl else 1.2
        if self._grid is None:
            self._grid = grid
        for region, positions in enumerate(self.targets):
            found = probabilities[..., positions].pow(power).sum(dim=-1).mean(dim=1)  # (B, tokens)
            found = found.reshape(batch, 1, *grid)
            if grid != self._grid:
                found = F.interpolate(found, size=self._grid, mode="bilinear", align_corners=False)
            for row, image in enumerate(images):
                key_ = (image, region)
                self._sums[key_] = self._sums[key_] + found[row, 0] if key_ in self._sums else found[row, 0].clone()
        self._fresh = True

    def make_masks(self, pictures: int, lowered: float = 0.0) -> None:
        """The masks from the maps read so far."""
        grid = self._grid or (1, 1)
        scale = 0.85 if self.sdxl else 1.0
        masks = torch.zeros(pictures, len(self.targets), *grid)
        for (image, region), summed in self._sums.items():
            peak = float(summed.max())
            relative = summed / peak * scale if peak > 0 else summed
            masks[image, region] = (relative > self.thresholds[region] - lowered).float().cpu()
        self.masks, self._fresh = masks, False
        self.version += 1
        self._maps.clear()

    # the region maps ------------------------------------------------------------------------------

    def row_weights(self, grid: tuple[int, int], call: RegionCall, rows: Sequence[int], device: torch.device,
                    dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
        images = [call.images[r] if call.images else r for r in rows]
        return self.image_weights(grid, images, device, dtype)

    def image_weights(self, grid: tuple[int, int], images: Sequence[int], device: torch.device,
                      dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
        """((rows, regions + 1, h·w): the regions' weights, then the base's, for each row's picture; the maps used)."""
        owner_plan = self if self.probes or self.source is None else self.source
        key = (grid, tuple(images), device, dtype, owner_plan.version)
        if key not in self._maps:
            masks = F.interpolate(self.current_masks()[list(images)], size=grid, mode="nearest")  # (rows, R, h, w)
            base_share = torch.tensor(self.layout.base_weights, dtype=torch.float32)[None, :, None, None]
            if self.exclusive:  # a later region covers an earlier one
                owner = torch.full((len(images), *grid), -1, dtype=torch.int64)
                for region in range(masks.shape[1]):
                    owner[masks[:, region] > 0] = region
                masks = torch.stack([(owner == region).float() for region in range(masks.shape[1])], dim=1)
            regions = masks * (1 - base_share)
            base = 1 - regions.sum(dim=1, keepdim=True)
            maps = torch.cat([regions, base], dim=1).flatten(2)
            used = [j for j in range(maps.shape[1]) if bool(maps[:, j].any())]
            self._maps[key] = (maps.to(device, dtype), used)
        return self._maps[key]


def region_pictures(plan: PromptRegionPlan, images: Sequence[Any]) -> list[Any]:
    """Each picture with the regions Prompt mode found painted over it in their palette colours
    (region 1, 2, ... as the mask brush paints them), for the page to show beside the results."""
    from PIL import Image

    from modules.regions.masks import palette_colour

    masks = plan.current_masks()
    shown = []
    for index, image in enumerate(images):
        picture = image.convert("RGB")
        for region in range(masks.shape[1]):
            mask = masks[index % masks.shape[0], region]
            alpha = Image.fromarray((mask.numpy() * 128).astype("uint8")).resize(picture.size, Image.Resampling.NEAREST)
            picture = Image.composite(Image.new("RGB", picture.size, palette_colour(region)), picture, alpha)
        shown.append(picture)
    return shown
