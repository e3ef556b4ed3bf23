"""Inpaint passes for outpainting: each one is an ordinary img2img inpaint job on a crop of the canvas.

Every method is a sequence of such passes (mk2: one per side; poor man's: one per border tile;
Easel fill: one). `PassRunner` runs them through `img2img()` so the denoising loop, the masks,
masked content, the final composite and the 9-channel inpainting conditioning are the inpainting
engine's own, and makes them look like one job to the user: step events count on across passes
(pass 2 of 3 with 16 steps each reports steps 17-32 of 48), and skip/interrupt raised by the step
callback end the whole image, not just one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from PIL import Image

from modules.checkpoints.manager import LoadedModel
from modules.generation.engine import EngineHooks, Skipped, StepEvent, tail_steps
from modules.generation.img2img import img2img
from modules.generation.outpaint.canvas import pad_to_multiple
from modules.generation.previews import PreviewMethod
from modules.generation.request import Img2ImgRequest

LATENT_CELL = 8  # pixels per latent cell: a pass's size must be a multiple of it
SMALLEST_PASS = 64  # img2img's smallest width and height


def steps_per_pass(request: Img2ImgRequest, fix_steps: bool) -> int:
    """How many denoising steps one img2img pass of `request` runs (A1111's rule; 0 at strength 0)."""
    if request.strength == 0:
        return 0
    return tail_steps(request.steps, request.strength, fix_steps)[1] + 1


@dataclass
class PassRunner:
    """Runs the passes of one output image; `interrupted` turns True when the user stopped the job."""

    model: LoadedModel
    base: Img2ImgRequest  # prompt, sampler, steps, CFG, strength...; its picture and mask are replaced per pass
    image_index: int  # of the output image, for step events
    image_count: int
    passes: int  # how many passes this image takes, for the step total
    on_step: Callable[[StepEvent], None] | None = None
    preview: PreviewMethod | None = None
    fix_steps: bool = False
    hooks: EngineHooks | None = None  # only before_denoise reaches the passes (before_batch is the image's)
    steps_done: int = 0
    interrupted: bool = False

    @property
    def steps_total(self) -> int:
        return self.passes * steps_per_pass(self.base, self.fix_steps)

    def inpaint(self, image: Image.Image, mask: Image.Image, *, seed: int, subseed: int, mask_blur: int,
                inpainting_fill: int) -> Image.Image:
        """`image` inpainted where `mask` is white ("Whole picture" area), same size as `image`.

        The crop is padded to whole latent cells (and to img2img's 64 pixels at least) by repeating
        its last row and column (mask too), and the padding cut off again. Raises Skipped when the
        user skipped this image."""
        padded = pad_to_multiple(image.convert("RGB"), LATENT_CELL, SMALLEST_PASS)
        padded_mask = pad_to_multiple(mask.convert("L"), LATENT_CELL, SMALLEST_PASS)
        request = replace(
            self.base, init_images=[padded], mask=padded_mask, width=padded.width, height=padded.height,
            resize_mode=0, mask_blur=mask_blur, mask_blur_x=None, mask_blur_y=None, inpainting_fill=inpainting_fill,
            inpaint_full_res=False, inpainting_mask_invert=0, seed=seed, subseed=subseed, batch_size=1, n_iter=1,
            enable_hr=False, styles=[],
        )
        hooks = EngineHooks(before_denoise=self.hooks.before_denoise) if self.hooks is not None else None
        result = img2img(self.model, request, on_step=self._forward, preview=self.preview, fix_steps=self.fix_steps, hooks=hooks)
        if not result.images:  # img2img drops a skipped batch; for us the whole image is skipped
            raise Skipped()
        self.steps_done += steps_per_pass(self.base, self.fix_steps)
        self.interrupted = result.interrupted
        return result.images[0].crop((0, 0, image.width, image.height))

    def _forward(self, event: StepEvent) -> None:
        """A pass's step event, renumbered as a step of the whole image."""
        if self.on_step is not None:
            self.on_step(StepEvent(self.image_index, self.image_count, self.steps_done + event.step, self.steps_total, event.preview))
