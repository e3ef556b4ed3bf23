"""The collapsible sections under a generation tab's parameters, and the order they come in.

The parameters every job has (sampler, steps, size, batch, CFG, seed) come first and stay open.
Below them come the sections, each a closed accordion (the hires fix, a checkbox that opens its
settings), always in this order, so a section a later feature adds lands in its place in every
tab that has it:

1. hires      Hires. fix (txt2img)
2. refiner    Refiner (SDXL: the checkpoint that takes the last steps)
3. upscale    Upscaling after generation (model upscalers; the Extras tab has its own page)
4. controlnet ControlNet units
5. detailer   Detailer (ADetailer's tabs)
6. regional   Regional prompts
7. dynamic    Dynamic prompts and wildcards
8. extensions Always-on scripts of extensions (one accordion each)
9. script     The Script menu (X/Y/Z plot, Prompt matrix, outpainting scripts...)
10. networks  Extra networks (embeddings and LoRAs: a click adds the tag to the prompt)

A section's title and every text in it go through `L(...)` from the day it is written
(modules/ui/text.py), with its Chinese in modules/locales/zh-CN.json: the page test walks every
component in zh-CN and fails on English it finds.
"""

from __future__ import annotations

SECTION_ORDER: tuple[str, ...] = (
    "hires", "refiner", "upscale", "controlnet", "detailer", "regional", "dynamic", "extensions", "script", "networks",
)
