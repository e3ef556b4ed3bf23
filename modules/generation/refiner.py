"""The refiner: the last part of a pass handed to another checkpoint inside the same sampler run
(A1111 1.9+, `sd_samplers_common.apply_refiner`).

At every model call the pass asks whether the refiner's turn has come: by model timestep (A1111's
default since 1.9: t is the index of the model's 1000-step sigma table nearest the call's noise
level, completed = (999 − t) / 1000) or by sampling steps (the setting "Refiner switch by sampling
steps", and pictures from before A1111 1.8.0, whose infotexts carry `Refiner` without saying:
completed = the model call's number / the pass's steps). Once completed ≥ switch at, the refiner is
made the active model (from the RAM cache after its first use), the prompts are encoded again with
its text encoders (an SDXL refiner's size conditioning carries the aesthetic scores 6.0 for the
prompt and 2.5 for the negative, A1111's defaults) and the sampler goes on with the refiner's
predictions: its state (the latent, the noise, a multistep sampler's history) is kept. Switch at
1.0 never switches: the largest completed value is 0.999.

The job's runner gives the pass `RefinerModels` (how to make the refiner the active model); the
pass builds the refiner's conditioning only when its turn comes, so a refiner that never takes over
is never loaded. The refiner runs without the job's LoRAs, hypernetworks, ControlNet units and
regions (they belong to the base model's layers); a note says so when the job has any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from modules.checkpoints.manager import LoadedModel
    from modules.generation.guidance import StepConditions

HIRES_PASSES = ("first pass", "second pass", "both passes")  # A1111's "hires_fix_refiner_pass" setting
HIGH_AESTHETIC, LOW_AESTHETIC = 6.0, 2.5  # A1111's sdxl_refiner_high/low_aesthetic_score


@dataclass(frozen=True)
class RefinerModels:
    """What the job gives a task whose request names a refiner."""

    activate: Callable[[], "LoadedModel"]  # makes the refiner the active model (the job's LoRAs taken off first)
    hand_back: Callable[[], None]  # makes the job's model the active one again (its LoRAs back on)
    title: Callable[[], str]  # `name [hash10]`, as the infotext's `Refiner` key writes it (known once it is loaded)
    by_steps: bool  # switch by sampling steps instead of model timesteps
    hires_pass: str = "second pass"  # with hires fix: which pass the refiner takes part in

    def in_pass(self, hires_fix: bool, hires_pass: bool) -> bool:
        """Whether the refiner takes part in this pass."""
        if not hires_fix:
            return True
        wanted = {"first pass": (False,), "second pass": (True,), "both passes": (False, True)}.get(self.hires_pass, (True,))
        return hires_pass in wanted


@dataclass
class RefinerTurn:
    """The refiner's side of a pass: its model and the prompts encoded with it."""

    model: "LoadedModel"
    conds: "StepConditions"
    unconds: "StepConditions"
    time_ids: torch.Tensor | None  # the prompt's size conditioning (an SDXL refiner: the high aesthetic score)
    uncond_time_ids: torch.Tensor | None  # the negative's (the low aesthetic score), None: as the prompt's


def completed_by_timestep(sigma: torch.Tensor, table: torch.Tensor) -> float:
    """(999 − t) / 1000 for t the index of `table` (the model's sigmas, ascending) nearest max(sigma)."""
    index = int(torch.argmin((table.detach().to("cpu", torch.float32) - float(sigma.max())).abs()))
    return (999 - index) / 1000


@dataclass
class RefinerSwitch:
    """When a pass hands over to the refiner, and how it gets the refiner's side."""

    switch_at: float
    by_steps: bool
    steps: int  # the pass's steps (the by-steps rule divides the model call's number by it)
    load: Callable[[], RefinerTurn]
    switched_at: int | None = None  # the model call at which the refiner took over (None: it did not)
    notes: list[str] = field(default_factory=list)

    def due(self, call: int, sigma: torch.Tensor, table: torch.Tensor) -> bool:
        completed = call / max(self.steps, 1) if self.by_steps else completed_by_timestep(sigma, table)
        return completed >= self.switch_at


class RefinerDenoiser:
    """The pass's guided denoiser until the refiner's turn, then the one `make(turn, call)` builds."""

    def __init__(self, guided: Any, switch: RefinerSwitch, table: torch.Tensor, make: Callable[[RefinerTurn, int], Any]):
        self.current, self.guided, self.switch, self.make = guided, guided, switch, make
        self.table = table.detach().to("cpu", torch.float32)  # once, not at every model call (a GPU table would sync each step)
        self.sigma_min, self.sigma_max = guided.sigma_min, guided.sigma_max

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.switch.switched_at is None and self.switch.due(self.guided.step, sigma, self.table):
            self.switch.switched_at = self.guided.step
            self.current = self.make(self.switch.load(), self.guided.step)
        return self.current(x, sigma)

    @property
    def last_uncond_x0(self) -> torch.Tensor | None:
        return getattr(self.current, "last_uncond_x0", None)


def refiner_switch(refiner: RefinerModels, request: Any, steps: int, width: int, height: int, hires_steps: int | None = None) -> RefinerSwitch:
    """The switch of one pass (`hires_steps`: the hires pass's, whose prompts are the hires prompts)."""
    from modules.generation.guidance import sdxl_time_ids
    from modules.generation.text import build_prompt_encoder, step_conditions

    hires = hires_steps is not None
    prompt = (request.hr_prompt or request.prompt) if hires else request.prompt
    negative = (request.hr_negative_prompt or request.negative_prompt) if hires else request.negative_prompt

    def load() -> RefinerTurn:
        model = refiner.activate()
        encoder = build_prompt_encoder(model, request.clip_skip)
        conds: StepConditions = step_conditions(encoder, prompt, request.steps, allow_and=True, hires_steps=hires_steps)
        unconds: StepConditions = step_conditions(encoder, negative, request.steps, allow_and=False, hires_steps=hires_steps)
        family = model.spec.family
        time_ids = uncond_ids = None
        if family.size_conditioning:
            time_ids = sdxl_time_ids(width, height, refiner=family.refiner, aesthetic_score=HIGH_AESTHETIC)
            if family.refiner:
                uncond_ids = sdxl_time_ids(width, height, refiner=True, aesthetic_score=LOW_AESTHETIC)
        return RefinerTurn(model, conds, unconds, time_ids, uncond_ids)

    by_steps = request.refiner_by_steps if request.refiner_by_steps is not None else refiner.by_steps
    return RefinerSwitch(float(request.refiner_switch_at), bool(by_steps), steps, load)


def refiner_infotext(refiner: RefinerModels, request: Any) -> dict[str, Any]:
    """The keys A1111 writes once the refiner took part: `Refiner`, `Refiner switch at`, and the
    switch rule and hires pass when they are not the defaults."""
    written: dict[str, Any] = {"Refiner": refiner.title(), "Refiner switch at": request.refiner_switch_at}
    by_steps = request.refiner_by_steps if request.refiner_by_steps is not None else refiner.by_steps
    if by_steps:
        written["Refiner switch by sampling steps"] = True
    if request.enable_hr and refiner.hires_pass != "second pass":
        written["Hires refiner"] = refiner.hires_pass
    return written


def handed_back(refiner: RefinerModels | None, switch: RefinerSwitch | None, request: Any, result: Any) -> None:
    """After a pass: when the refiner took over, the job's model is made active again, the
    infotext gets the refiner's keys and the notes say at which step it took over."""
    if refiner is None or switch is None or switch.switched_at is None:
        return
    refiner.hand_back()
    result.extra_parameters.update(refiner_infotext(refiner, request))
    title, step, steps = refiner.title(), switch.switched_at + 1, switch.steps
    if not any(note.startswith(f"The refiner {title} took over at step {step} ") for note in result.notes):
        result.notes.append(f"The refiner {title} took over at step {step} of {steps}.")
