"""Regional Latent and Prompt modes through the real job path (Services, queue, runner, LoRA patcher).

Latent: one region over everything is the plain prompt's picture; the same LoRA'd prompt in every
region is the plain LoRA picture; a LoRA written in one region is put in effect for that region's
model calls only (and the negative's at its ratio), the weights bitwise the checkpoint's after the
job; the hires pass runs with the regions too. Prompt: a batch of two, each picture with its own
regions shown beside it, the same pictures again for the same seed, the hires pass, and a target
word missing from the base prompt named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from modules.regions.args import RegionalRequest
from tests.integration.test_extensions import make_services
from tools.make_test_loras import write_test_lora


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("regional-latent")
    write_test_lora(root / "models" / "Lora" / "crisp.safetensors", "sd1", "tiny", seed=21, rank=4)
    write_test_lora(root / "models" / "Lora" / "warm.safetensors", "sd1", "tiny", seed=22, rank=2)
    built = make_services(root, extensions=root / "no-extensions")
    yield built
    built.queue.close()


def run(services, prompt: str, regional: RegionalRequest | None = None, **changes):
    request = GenerationRequest(prompt=prompt, negative_prompt="blurry", steps=3, width=64, height=64, seed=8, sampler_name="Euler",
                                preview_every=0, regional=regional, **changes)
    return services.generation.submit_txt2img(request).result(timeout=120)


def latent(**settings) -> RegionalRequest:
    return RegionalRequest(active=True, calc_mode="Latent", **settings)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def weights(services) -> dict[str, torch.Tensor]:
    model = services.manager.loaded
    return {f"{c}.{n}": p.detach().clone() for c in ("unet", "text_encoder") for n, p in model.modules[c].named_parameters()}


def test_one_region_over_everything_is_the_plain_prompt(services):
    plain = run(services, "a red cat")
    single = run(services, "a red cat BREAK", latent(ratios="1"))
    assert np.array_equal(pixels(single), pixels(plain))
    assert parse_infotext(single.infotexts[0])["RP Calc Mode"] == "Latent"


def test_the_same_lora_prompt_in_every_region_is_the_plain_lora_picture(services):
    plain = run(services, "<lora:crisp:1> a red cat")
    both = run(services, "<lora:crisp:1> a red cat BREAK <lora:crisp:1> a red cat", latent(lora_neg_te="1", lora_neg_u="1"))
    assert np.abs(pixels(both) - pixels(plain)).max() <= 1  # one model call per entry instead of one batch: rounding only


def test_a_lora_in_one_region_is_in_effect_for_that_regions_calls_only(services):
    patcher = services.generation.runner.lora_patcher
    seen: list[list[tuple[str, float]]] = []
    original = patcher.apply

    def spy(model, uses):
        seen.append([(u.lora.name, u.unet_multiplier) for u in uses])
        return original(model, uses)

    before = weights(services)
    patcher.apply = spy
    try:
        one = run(services, "<lora:crisp:1> a red cat BREAK a red cat", latent(lora_neg_u="0.5"))
    finally:
        del patcher.apply
    assert all(torch.equal(before[k], v) for k, v in weights(services).items())  # bitwise the checkpoint's again
    crisp, half, none = [("crisp", 1.0)], [("crisp", 0.5)], []
    encoding = [half, crisp, none, crisp]  # the negative's text, each part's, then the job's set again
    assert seen == [crisp, *encoding, *[crisp, none, half] * 3, crisp]  # the job's; 3 steps of part 1, part 2, negative; the job's
    everywhere = run(services, "<lora:crisp:1> a red cat BREAK <lora:crisp:1> a red cat", latent(lora_neg_u="0.5"))
    nowhere = run(services, "a red cat BREAK a red cat", latent())
    assert np.abs(pixels(one) - pixels(everywhere)).mean() > 0.5 and np.abs(pixels(one) - pixels(nowhere)).mean() > 0.5
    left, right = (np.abs(pixels(one) - pixels(nowhere))[:, cols].mean() for cols in (slice(0, 32), slice(32, 64)))
    assert left > right  # the region with the LoRA moved further from the picture without it


def test_the_stop_step_and_the_hires_pass(services):
    stopped = run(services, "<lora:crisp:1> a red cat BREAK a blue dog", latent(lora_stop="1"))
    running = run(services, "<lora:crisp:1> a red cat BREAK a blue dog", latent())
    assert not np.array_equal(pixels(stopped), pixels(running))
    hires = run(services, "<lora:crisp:1> a red cat BREAK a blue dog", latent(), enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
                denoising_strength=0.5, hr_second_pass_steps=2)
    assert hires.images[0].size == (96, 96)
    params = parse_infotext(hires.infotexts[0])
    assert params["RP Calc Mode"] == "Latent" and params["Hires upscale"] == "1.5"
    off = run(services, "a red cat BREAK a blue dog", latent(options=("Disabled in Hires Fix",)), enable_hr=True, hr_scale=1.5,
              hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=2)
    assert off.images[0].size == (96, 96)


def test_prompt_mode_finds_regions_per_picture_and_again_the_same(services):
    prompt = "a red cat sitting on a mat BREAK (blue:1.5), cat"
    mode = RegionalRequest(active=True, mode="Prompt", threshold="0.6")
    first = run(services, prompt, mode, batch_size=2)
    again = run(services, prompt, mode, batch_size=2)
    plain = run(services, prompt.replace(" BREAK ", ", "), None, batch_size=2)
    assert len(first.images) == 2 and all(np.array_equal(pixels_of(a), pixels_of(b)) for a, b in zip(first.images, again.images))
    assert not np.array_equal(pixels_of(first.images[0]), pixels_of(plain.images[0]))
    assert len(first.detection_previews) == 2 and first.detection_previews[0].size == first.images[0].size  # the regions found
    params = parse_infotext(first.infotexts[0])
    assert params["RP Divide mode"] == "Prompt" and params["RP threshold"] == "0.6"
    hires = run(services, prompt, mode, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=2)
    assert hires.images[0].size == (96, 96) and len(hires.detection_previews) == 1
    with pytest.raises(UserError, match="target word 'hat'"):
        run(services, "a red cat BREAK blue, hat", mode)


def pixels_of(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)
