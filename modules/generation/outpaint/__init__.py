"""Outpainting: extend a picture past its edges (issue 7).

Built on the inpainting engine: every method is a sequence of img2img inpaint passes over crops of
an enlarged canvas (see `passes.py`). The methods are rows of OUTPAINT_METHODS (`methods.py`):
A1111's "Outpainting mk2" and "Poor man's outpainting", and "Easel fill", ours, made for seams.
`task.outpaint()` runs a request; `canvas.py` and `spectral.py` hold the pure pixel helpers.
"""

from modules.generation.outpaint.methods import OUTPAINT_METHODS, OutpaintMethod, resolve
from modules.generation.outpaint.request import DIRECTIONS, OutpaintRequest, check_inputs
from modules.generation.outpaint.task import outpaint, outpaint_parameters

__all__ = ["DIRECTIONS", "OUTPAINT_METHODS", "OutpaintMethod", "OutpaintRequest", "check_inputs", "outpaint", "outpaint_parameters", "resolve"]
