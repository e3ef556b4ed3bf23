"""The collapsible sections under a generation tab's parameters, and the order they come in.

The parameters every job has (sampler, steps, size, batch, CFG, seed) come first and stay open.
Below them come the sections, each a closed accordion (the hires fix: a checkbox that opens its
settings), always in the order of SECTION_ORDER, so a section a later feature adds lands in its
place in every tab that has it. Each row names the section and the elem id suffix of its first
component (`txt2img-hr-enable`, `img2img-script`...); tests/unit/test_i18n.py checks the built
page keeps this order.

A section's title and every text in it go through `L(...)` from the day it is written
(modules/ui/text.py), with its Chinese in modules/locales/zh-CN.json: the page test walks every
component in zh-CN and fails on English it finds, and every parameter gets a tooltip
(modules/ui/tooltips.py) or an `info` line.
"""

from __future__ import annotations

SECTION_ORDER: tuple[tuple[str, str], ...] = (
    ("hires", "-hr-enable"),            # Hires. fix (txt2img)
    ("refiner", "-refiner"),            # Refiner (SDXL: the checkpoint that takes the last steps)
    ("upscale", "-upscale"),            # upscaling after generation (model upscalers; Extras has its own tab)
    ("controlnet", "-controlnet"),      # ControlNet units
    ("detailer", "-detailer"),          # Detailer (ADetailer's tabs)
    ("regional", "-regional"),          # Regional prompts
    ("dynamic", "-dynamic-prompts"),    # Dynamic prompts and wildcards
    ("extensions", "-always-on"),       # always-on scripts of extensions (one accordion each)
    ("script", "-script"),              # the Script menu (X/Y/Z plot, Prompt matrix, outpainting scripts...)
    ("networks", "-extra-networks"),    # Extra networks (embeddings and LoRAs: a click adds the tag)
)
