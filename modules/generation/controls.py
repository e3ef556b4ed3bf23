"""The ControlNet models a task was given, or the sentence that says there are none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.errors import UserError

if TYPE_CHECKING:
    from modules.controlnet.service import ControlNets


def needs_controlnets(controlnets: "ControlNets | None") -> "ControlNets":
    if controlnets is None:
        raise UserError("This request has ControlNet units, and ControlNet is not available here.")
    return controlnets
