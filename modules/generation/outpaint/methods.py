"""The outpainting methods, one row each in OUTPAINT_METHODS.

A method paints one output image: it gets the source picture, the resolved settings, the image's
seeds and a PassRunner (img2img inpaint passes), and returns the enlarged picture.

- "Outpainting mk2" (A1111's scripts/outpainting_mk_2.py): one side at a time (left, right, up,
  down). The side grows by its pixels; the new strip, and `mask blur` pixels into the picture, get
  noise matched to the picture's spectrum and histogram; an edge window (full length of the side,
  at most the request's width/height across it) is inpainted with masked content "original", mask
  blur x4, and pasted back. Every side uses the image's seed, as A1111 does (it never changes
  p.seed between sides). A1111 also hands the sampler a tighter latent mask (inset 2 x blur,
  unblurred); img2img has no separate latent mask, so here the blurred mask serves both.
- "Poor man's outpainting" (scripts/poor_mans_outpainting.py): the whole enlarged canvas (new
  area black) with a mask reaching 2 x blur into the picture, blurred by 2 x blur; cut into tiles of
  the request's size overlapping by the pixels to expand; only tiles that touch the new area are
  inpainted (masked content "fill" by default), tile i with seed + i; tiles fade into each other.
  (A1111's latent mask inset blur/2 has the same caveat as mk2's.)
- "Easel fill" (ours, made for seams): the new area starts as the picture's outermost rows and
  columns stretched outward, blurred more the farther they reach, with a little noise of the
  picture's own detail strength far out; one inpaint pass over the whole canvas repaints exactly
  the new area (masked content "original", so the model starts from those colours); then the new
  area is blended from the stretched edge at the border to the generated picture over 2 x mask
  blur pixels. The picture itself is never touched, and the first new pixels continue it, so there
  is no step at the old border; the model's content fades in past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image, ImageFilter

from modules.generation.outpaint import canvas as cv
from modules.generation.outpaint.passes import PassRunner
from modules.generation.outpaint.spectral import matched_noise
from modules.generation.request import MaskedContent
from modules.i18n import N_

if TYPE_CHECKING:
    from modules.generation.outpaint.request import OutpaintRequest

SEED_LIMIT = 2**32


@dataclass(frozen=True)
class Resolved:
    """A request's settings with the method's defaults filled in and the growth of each side fixed."""

    method: "OutpaintMethod"
    mask_blur: int
    inpainting_fill: int
    expansion: cv.Expansion


@dataclass
class OutpaintImage:
    """Everything a method needs to paint one output image."""

    source: Image.Image  # RGB
    request: "OutpaintRequest"
    settings: Resolved
    seed: int
    subseed: int
    passes: PassRunner

    @property
    def window(self) -> tuple[int, int]:
        """The processing window / tile size: the base request's width x height."""
        return self.request.base.width, self.request.base.height


@dataclass(frozen=True)
class OutpaintMethod:
    """One row of the table: how a method paints, counts its passes, and what it may change."""

    label: str
    paint: Callable[[OutpaintImage], Image.Image]
    count_passes: Callable[[Resolved, tuple[int, int], tuple[int, int], int], int]  # (settings, source size, window, pixels)
    seam_band: Callable[[int], int]  # mask blur -> pixels into the picture that may change
    mask_blur: int  # default
    inpainting_fill: int  # default masked content of its passes
    fill_is_choice: bool  # whether the request's inpainting_fill may change it
    size_multiple: int  # the enlarged size is rounded up to a multiple of this on the sides that grow
    hint: str  # recommended settings, for the UI


def blur_radius(sigma: int) -> int:
    """How far A1111's mask blur of `sigma` reaches (its kernel's half width)."""
    return int(2.5 * sigma + 0.5) if sigma > 0 else 0


# -- Outpainting mk2 ---------------------------------------------------------------------------


def paint_mk2(job: OutpaintImage) -> Image.Image:
    """One side after another: grow, fill with matched noise, inpaint the edge window, paste back.
    Interrupted: the picture as far as it got (sides not reached are not added)."""
    blur = job.settings.mask_blur
    picture = job.source
    for index, (side, pixels) in enumerate(job.settings.expansion.sides()):
        grown, old = cv.grow_side(picture, side, pixels)
        mask = cv.keep_mask(grown.size, old, {side: blur})
        noised = mk2_noise(grown, mask, job.request, np.random.default_rng([job.seed, index]))
        window = cv.edge_window(grown.size, side, job.window)
        painted = job.passes.inpaint(noised.crop(window), mask.crop(window), seed=job.seed, subseed=job.subseed,
                                     mask_blur=4 * blur, inpainting_fill=MaskedContent.ORIGINAL)
        noised.paste(painted, window[:2])
        picture = noised
        if job.passes.interrupted:
            break
    return picture


def mk2_noise(image: Image.Image, mask: Image.Image, request: "OutpaintRequest", rng: np.random.Generator) -> Image.Image:
    """`image` with its masked part replaced by spectrum- and histogram-matched noise."""
    values = np.asarray(image, dtype=np.float64) / 255
    weights = np.asarray(mask, dtype=np.float64) / 255
    noised = matched_noise(values, weights, request.noise_q, request.color_variation, rng)
    return Image.fromarray(np.clip(noised * 255, 0, 255).astype(np.uint8), "RGB")


def mk2_passes(settings: Resolved, source: tuple[int, int], window: tuple[int, int], pixels: int) -> int:
    return len(settings.expansion.sides())


# -- Poor man's outpainting ----------------------------------------------------------------------


def paint_poor_mans(job: OutpaintImage) -> Image.Image:
    """Border tiles of the black-extended canvas inpainted one by one (seed + 1 each), then joined.
    Interrupted: the tiles not reached stay as they were (black where new)."""
    blur = job.settings.mask_blur
    expansion = job.settings.expansion
    canvas = cv.place_on_canvas(job.source, expansion)
    picture = expansion.box(job.source.size)
    mask = cv.keep_mask(canvas.size, picture, {side: 2 * blur for side, _ in expansion.sides()})
    grid = cv.tile_grid(canvas.size, job.window, job.request.pixels)
    tiles, painted = [], 0
    for box in grid.boxes():
        if cv.inside(box, picture) or job.passes.interrupted:
            tiles.append(canvas.crop(box))
            continue
        seed = (job.seed + painted) % SEED_LIMIT
        tiles.append(job.passes.inpaint(canvas.crop(box), mask.crop(box), seed=seed, subseed=job.subseed,
                                        mask_blur=2 * blur, inpainting_fill=job.settings.inpainting_fill))
        painted += 1
    return cv.combine_tiles(grid, tiles)


def poor_mans_passes(settings: Resolved, source: tuple[int, int], window: tuple[int, int], pixels: int) -> int:
    expansion = settings.expansion
    grid = cv.tile_grid(expansion.size(source), window, pixels)
    return sum(not cv.inside(box, expansion.box(source)) for box in grid.boxes())


# -- Easel fill ----------------------------------------------------------------------------------


def paint_easel(job: OutpaintImage) -> Image.Image:
    """Prefill, one pass over the whole canvas repainting the new area, blend in from the border."""
    expansion = job.settings.expansion
    canvas = cv.place_on_canvas(job.source, expansion)
    picture = expansion.box(job.source.size)
    distance = cv.distance_outside(canvas.size, picture)
    ramp = 2 * job.settings.mask_blur
    prefill = easel_prefill(job.source, canvas, picture, distance, ramp, np.random.default_rng([job.seed, 0]))
    new_area = Image.fromarray(np.where(distance > 0, 255, 0).astype(np.uint8), "L")
    painted = job.passes.inpaint(to_image(prefill), new_area, seed=job.seed, subseed=job.subseed, mask_blur=0,
                                 inpainting_fill=MaskedContent.ORIGINAL)
    alpha = cv.smoothstep(distance, ramp)[..., None]
    out = to_image(prefill * (1 - alpha) + np.asarray(painted, dtype=np.float32) * alpha)
    out.paste(job.source, picture[:2])  # exactly the picture, whatever rounding did around it
    return out


def easel_prefill(source: Image.Image, canvas: Image.Image, picture: cv.Box, distance: np.ndarray, ramp: float,
                  rng: np.random.Generator) -> np.ndarray:
    """The new area before the pass (H x W x 3 floats, 0-255): edge colours stretched outward and
    blurred by half their distance, plus noise as strong as the picture's own fine detail, fading in
    over `ramp` pixels so the border itself stays a clean continuation."""
    stretched = cv.graded_blur(cv.stretch_edges(canvas, picture), distance, per_pixel=0.5)
    detail = picture_detail(source)
    noise = rng.standard_normal(stretched.shape).astype(np.float32)
    noise = 0.5 * noise + 0.5 * noise.mean(axis=2, keepdims=True)  # mostly grey, like mk2's noise
    grain = noise * detail * cv.smoothstep(distance, max(ramp, 1.0))[..., None]
    return np.clip(stretched + grain, 0, 255)


def picture_detail(source: Image.Image) -> np.ndarray:
    """Per-channel standard deviation of the picture's fine detail (itself minus a 2-pixel blur)."""
    values = np.asarray(source, dtype=np.float32)
    smooth = np.asarray(source.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    return (values - smooth).reshape(-1, 3).std(axis=0)


def to_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "RGB")


def easel_passes(settings: Resolved, source: tuple[int, int], window: tuple[int, int], pixels: int) -> int:
    return 1


# -- the table -----------------------------------------------------------------------------------


OUTPAINT_METHODS: dict[str, OutpaintMethod] = {
    row.label: row
    for row in (
        OutpaintMethod("Easel fill", paint_easel, easel_passes, seam_band=lambda blur: 0, mask_blur=8,
                       inpainting_fill=MaskedContent.ORIGINAL, fill_is_choice=False, size_multiple=8,
                       hint=N_("Starts the new area from the picture's edge colours: a denoising strength of 0.75-1 repaints them.")),
        OutpaintMethod("Outpainting mk2", paint_mk2, mk2_passes, seam_band=lambda blur: blur + blur_radius(4 * blur),
                       mask_blur=8, inpainting_fill=MaskedContent.ORIGINAL, fill_is_choice=False, size_multiple=64,
                       hint=N_("Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8")),
        OutpaintMethod("Poor man's outpainting", paint_poor_mans, poor_mans_passes,
                       seam_band=lambda blur: 2 * blur + blur_radius(2 * blur), mask_blur=4, inpainting_fill=MaskedContent.FILL,
                       fill_is_choice=True, size_multiple=64,
                       hint=N_("Tiles of the img2img size, overlapping by the pixels to expand; only the border tiles are painted.")),
    )
}


def resolve(request: "OutpaintRequest", source: tuple[int, int]) -> Resolved:
    """The method's defaults for what the request leaves open, and how far each side of a `source`
    sized picture grows."""
    method = OUTPAINT_METHODS[request.method]
    mask_blur = method.mask_blur if request.mask_blur is None else request.mask_blur
    chosen_fill = request.inpainting_fill if method.fill_is_choice else None
    fill = method.inpainting_fill if chosen_fill is None else chosen_fill
    expansion = cv.plan_expansion(source, request.chosen_directions, request.pixels, method.size_multiple)
    return Resolved(method, mask_blur, fill, expansion)
