"""How far an upscale is, and the line the progress bar shows for it (translated by the page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from modules.i18n import N_


@dataclass(frozen=True)
class TileProgress:
    """Where an upscale is: model pass `step` of `passes`, tile `tile` of `tiles`, and the seconds
    the rest of this pass should take."""

    upscaler: str
    step: int
    passes: int
    tile: int
    tiles: int
    eta: float


OnProgress = Callable[[TileProgress], None]  # may raise (Interrupted) to stop the upscale

ONE_PASS = N_("Upscaling with {upscaler}: tile {tile} of {tiles}")
SEVERAL_PASSES = N_("Upscaling with {upscaler} (pass {step} of {passes}): tile {tile} of {tiles}")


def describe_tiles(progress: TileProgress) -> str:
    template = ONE_PASS if progress.passes <= 1 else SEVERAL_PASSES
    return template.format(upscaler=progress.upscaler, step=progress.step, passes=progress.passes, tile=progress.tile, tiles=progress.tiles)
