"""Regional Latent mode (modules/regions/latent.py): the parts' weight maps, the guidance sum with
picture weights against the hand computation, the parts' LoRA sets (tags per part, common prompt,
the negative's ratios, the stop step) and the switch the guidance calls before each entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.generation.guidance import GuidedDenoiser, StepConditions
from modules.lora.files import LoraFile
from modules.lora.patch import LoraUse
from modules.prompts.conditioning import Conditioning
from modules.regions.args import RegionalRequest, parse_regional_args
from modules.regions.errors import RegionalPromptError
from modules.regions.latent import PartConditioning, PartWeight
from modules.regions.setup import prepare_regions


def regions(prompt: str, negative: str = "", **settings):
    prepared = prepare_regions(RegionalRequest(active=True, calc_mode="Latent", **settings), prompt, negative)
    assert prepared is not None
    return prepared


def test_part_weights_are_the_region_maps_and_add_up_to_one():
    prepared = regions("b BREAK l BREAK r", use_base=True, base_ratios="0.3")
    weights = {part: PartWeight(prepared.layout, part) for part in (0, 1, 2)}
    maps = {part: w.at(4, 6, torch.device("cpu"), torch.float32)[0, 0] for part, w in weights.items()}
    assert torch.allclose(maps[0], torch.full((4, 6), 0.3))  # the base everywhere at its ratio
    assert torch.allclose(maps[1][:, :3], torch.full((4, 3), 0.7)) and not maps[1][:, 3:].any()
    assert torch.allclose(maps[2][:, 3:], torch.full((4, 3), 0.7)) and not maps[2][:, :3].any()
    torch.testing.assert_close(sum(maps.values()), torch.ones(4, 6))
    assert weights[1].at(4, 6, torch.device("cpu"), torch.float32) is weights[1].at(4, 6, torch.device("cpu"), torch.float32)  # cached


class Recorder:
    """A denoiser that returns a different constant per prompt (its first hidden value) and records calls."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x, sigma, hidden, pooled=None, **roles):
        self.calls.append(x.shape[0])
        return hidden[:, :1, :1].reshape(-1, 1, 1, 1).expand_as(x).clone()


def constant(value: float, part: int | None) -> PartConditioning:
    return PartConditioning(torch.full((1, 77, 4), value), None, part=part)


def test_the_guidance_sum_with_region_maps_is_the_hand_computation():
    prepared = regions("l BREAK r")
    left, right = PartWeight(prepared.layout, 0), PartWeight(prepared.layout, 1)
    conds = StepConditions([(10, [(constant(1.0, 0), left), (constant(3.0, 1), right)])])
    unconds = StepConditions([(10, [(constant(0.5, None), 1.0)])])
    model = Recorder()
    guided = GuidedDenoiser(model, conds, unconds, cfg_scale=7.0, sigma_min=0.1, sigma_max=10.0)
    x0 = guided(torch.zeros(2, 4, 4, 6), torch.tensor(1.0))
    assert model.calls == [6]  # both parts and the negative in one batched call
    torch.testing.assert_close(x0[:, :, :, :3], torch.full((2, 4, 4, 3), 0.5 + 7 * (1.0 - 0.5)))
    torch.testing.assert_close(x0[:, :, :, 3:], torch.full((2, 4, 4, 3), 0.5 + 7 * (3.0 - 0.5)))


def test_an_entry_switch_runs_the_entries_one_by_one_and_hears_each():
    prepared = regions("l BREAK r")
    heard: list[tuple[int | None, int]] = []

    class Switch:
        def __call__(self, entry: Conditioning, call: int) -> None:
            heard.append((getattr(entry, "part", None), call))

        def close(self) -> None:
            heard.append(("closed", -1))  # type: ignore[arg-type]

    conds = StepConditions([(10, [(constant(1.0, 0), PartWeight(prepared.layout, 0)), (constant(3.0, 1), PartWeight(prepared.layout, 1))])])
    unconds = StepConditions([(10, [(constant(0.5, None), 1.0)])])
    model = Recorder()
    guided = GuidedDenoiser(model, conds, unconds, 7.0, 0.1, 10.0, entry_switch=Switch())
    first = guided(torch.zeros(1, 4, 4, 6), torch.tensor(1.0))
    guided(torch.zeros(1, 4, 4, 6), torch.tensor(0.5))
    assert model.calls == [1] * 6
    assert heard == [(0, 0), (1, 0), (None, 0), (0, 1), (1, 1), (None, 1)]
    batched = GuidedDenoiser(Recorder(), conds, unconds, 7.0, 0.1, 10.0)(torch.zeros(1, 4, 4, 6), torch.tensor(1.0))
    torch.testing.assert_close(first, batched, rtol=0, atol=0)


def lora(name: str) -> LoraFile:
    return LoraFile(name, Path(f"/loras/{name}.safetensors"), name)


def test_each_part_gets_the_loras_written_in_it_and_the_negative_its_ratios():
    files = {"red": lora("red"), "blue": lora("blue"), "style": lora("style")}
    job = [LoraUse(files["style"], 0.8), LoraUse(files["red"], 1.0, 0.5), LoraUse(files["blue"], 0.6)]
    prepared = regions("<lora:style:0.8> a room ADDCOMM a <lora:red:1:0.5> red cat BREAK a <lora:blue:0.6> blue dog",
                       lora_neg_te="0.5,1", lora_neg_u="0,0.25", lora_stop="5")
    assert prepared.prompt.parts[0].startswith("<lora:style:0.8> a room")  # the common prompt's tag is in every part
    sets = prepared.loras(files, job)
    assert sets is not None
    named = [[(u.lora.name, u.te_multiplier, u.unet_multiplier) for u in uses] for uses in sets.parts]
    assert named == [[("style", 0.8, 0.8), ("red", 1.0, 0.5)], [("style", 0.8, 0.8), ("blue", 0.6, 0.6)]]
    negative = [(u.lora.name, u.te_multiplier, u.unet_multiplier) for u in sets.negative]
    assert negative == [("style", 0.4, 0.0), ("red", 1.0, 0.125), ("blue", 0.6, 0.15)]  # ratios in order of appearance, last repeated
    assert sets.at(0, 3) == sets.parts[0] and sets.at(None, 3) == sets.negative
    assert sets.at(0, 4) == [] and sets.at(None, 9) == []  # from call stop - 1 on: no LoRA
    assert prepared.loras(files, job, hires=True).stop == 0  # the hires pass's own stop step (0: never)
    assert regions("a BREAK b").loras(files, job) is None  # no LoRA in any part
    assert prepare_regions(RegionalRequest(active=True), "<lora:red:1> a BREAK b", "").loras(files, job) is None  # Attention mode


def test_a_tag_with_a_keyword_in_its_name_stays_whole():
    prepared = regions("<lora:ANDY:1> a BREAK <lora:BREAKER:1> b")
    assert prepared.prompt.parts == ["<lora:ANDY:1> a ", " <lora:BREAKER:1> b"]
    assert len(prepared.layout.parts) == 2


def test_bad_negative_ratios_are_named():
    files = {"red": lora("red")}
    with pytest.raises(RegionalPromptError, match=r"arg 15 \(LoRA negative U-Net ratios\)"):
        regions("<lora:red:1> a BREAK b", lora_neg_u="half").loras(files, [LoraUse(files["red"])])


def test_latent_mode_from_the_api_args_and_plain_passes_without_regions():
    request = parse_regional_args({"args": [True, False, "Matrix", "Columns", "Mask", "Prompt", "1,1", "0.2", False, False, False, "Latent",
                                            "Disabled in Hires Fix"]})
    assert request.calc_mode == "Latent"
    prepared = prepare_regions(request, "a BREAK b", "")
    assert prepared is not None and prepared.plan() is None and prepared.active_in(False) and not prepared.active_in(True)
