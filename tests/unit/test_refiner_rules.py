"""The refiner's rules (modules/generation/refiner.py): A1111's completed share by model timestep
(never 1.0, so switch at 1.0 never switches) and by steps, and which hires-fix pass it joins."""

from __future__ import annotations

import torch

from modules.generation.refiner import RefinerModels, RefinerSwitch, completed_by_timestep


def test_completed_share_by_timestep_and_by_steps():
    table = torch.linspace(0.03, 14.6, 1000)  # ascending, as the model's sigmas are
    assert completed_by_timestep(torch.tensor([14.6]), table) == 0.0  # the noisiest timestep (999)
    assert completed_by_timestep(torch.tensor([0.03]), table) == 0.999  # the last: never 1.0
    assert completed_by_timestep(torch.tensor([0.01, 7.3]), table) == completed_by_timestep(torch.tensor([7.3]), table)  # the batch's largest
    switch = RefinerSwitch(0.8, by_steps=True, steps=10, load=lambda: None)  # type: ignore[arg-type,return-value]
    assert [switch.due(call, torch.tensor([1.0]), table) for call in (7, 8)] == [False, True]
    never = RefinerSwitch(1.0, by_steps=False, steps=10, load=lambda: None)  # type: ignore[arg-type,return-value]
    assert not any(never.due(0, torch.tensor([sigma]), table) for sigma in table.tolist())


def test_the_pass_the_refiner_joins_with_hires_fix():
    def models(choice: str) -> RefinerModels:
        return RefinerModels(lambda: None, lambda: None, lambda: "r", False, choice)  # type: ignore[arg-type,return-value]

    assert models("second pass").in_pass(False, False)  # no hires fix: the only pass
    assert [models("second pass").in_pass(True, hires) for hires in (False, True)] == [False, True]
    assert [models("first pass").in_pass(True, hires) for hires in (False, True)] == [True, False]
    assert [models("both passes").in_pass(True, hires) for hires in (False, True)] == [True, True]
