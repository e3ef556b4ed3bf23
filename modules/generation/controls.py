"""The ControlNet models a task was given, or the sentence that says there are none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.errors import UserError

if TYPE_CHECKING:
    from modules.controlnet.service import ControlNets
    from modules.generation.request import GenerationRequest


def control_seed(request: "GenerationRequest") -> int:
    """The seed the preprocessors that draw random numbers (shuffle) use: the extension's rule."""
    from modules.controlnet.service import shuffle_seed

    return shuffle_seed(int(request.seed), int(request.subseed))


def needs_controlnets(controlnets: "ControlNets | None") -> "ControlNets":
    if controlnets is None:
        raise UserError("This request has ControlNet units, and ControlNet is not available here.")
    return controlnets
