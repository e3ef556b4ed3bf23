"""The refiner through the real job path, on tiny SDXL-shaped base and refiner checkpoints written as
single files: the model call at which it takes over for several switch values under both rules, the
base-only picture at switch 1.0, the infotext keys and their round trip (and A1111 < 1.8 pictures
read as "by sampling steps"), no disk read for the refiner on the second job, and an unknown
refiner refused by name before anything runs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import modules.checkpoints.manager as manager_module
from modules.errors import ModelNotFoundError
from modules.generation.engine import model_denoiser, resolve_sampler
from modules.generation.refiner import completed_by_timestep
from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import restore_request
from modules.sampling.sampler_table import sigmas_for
from tests.integration.test_extensions import make_services
from tools.make_test_models import write_test_checkpoint

STEPS = 10


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("refiner")
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    write_test_checkpoint(folder / "xlbase.safetensors", "sdxl-base", seed=1)
    write_test_checkpoint(folder / "xlrefiner.safetensors", "sdxl-refiner", seed=2)
    built = make_services(root, "--ckpt", str(folder / "xlbase.safetensors"), extensions=root / "no-extensions")
    yield built
    built.queue.close()


def request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", steps=STEPS, width=64, height=64, seed=5, sampler_name="Euler",
                scheduler="Karras", preview_every=0)
    return GenerationRequest(**{**base, **changes})


def run(services, **changes):
    return services.generation.submit_txt2img(request(**changes)).result(timeout=180)


def took_over(result) -> int | None:
    for note in result.notes:
        if "took over at step" in note:
            return int(note.split("took over at step ")[1].split(" ")[0])
    return None


def expected_step(services, switch_at: float, by_steps: bool) -> int:
    """The first model call whose completed share reaches `switch_at`, counted from 1."""
    model = services.manager.loaded
    denoiser = model_denoiser(model)
    sampler, schedule = resolve_sampler("Euler", "Karras")
    sigmas = sigmas_for(sampler, schedule, STEPS, denoiser, sdxl=True)
    for call in range(STEPS):
        completed = call / STEPS if by_steps else completed_by_timestep(sigmas[call:call + 1], denoiser.sigmas)
        if completed >= switch_at:
            return call + 1
    raise AssertionError("never")


def test_the_refiner_takes_over_where_each_rule_says(services):
    seen = {}
    for by_steps in (False, True):
        for switch_at in (0.3, 0.5, 0.8):
            result = run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=switch_at, refiner_by_steps=by_steps)
            seen[(by_steps, switch_at)] = took_over(result)
            assert seen[(by_steps, switch_at)] == expected_step(services, switch_at, by_steps), (by_steps, switch_at)
            assert services.manager.loaded.checkpoint.name == "xlbase.safetensors"  # the base is back after the job
    assert seen[(True, 0.3)] == math.ceil(0.3 * STEPS) + 1 and seen[(True, 0.8)] == 9
    assert any(seen[(False, s)] != seen[(True, s)] for s in (0.3, 0.5, 0.8))  # Karras spacing: the two rules part ways
    params = parse_infotext(run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=0.5, refiner_by_steps=True).infotexts[0])
    assert params["Refiner switch by sampling steps"] == "True"


def test_switch_at_one_is_the_base_alone_and_the_keys_round_trip(services):
    alone = run(services)
    never = run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=1.0)
    assert np.array_equal(np.asarray(never.images[0]), np.asarray(alone.images[0]))
    assert "Refiner" not in parse_infotext(never.infotexts[0]) and took_over(never) is None
    refined = run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=0.5)
    assert not np.array_equal(np.asarray(refined.images[0]), np.asarray(alone.images[0]))
    params = parse_infotext(refined.infotexts[0])
    title = services.registry.title(services.registry.find_checkpoint("xlrefiner"))
    assert params["Refiner"] == title and params["Refiner switch at"] == "0.5"
    restored = restore_request(params, {"prompt", "negative_prompt", "steps", "seed", "sampler_name", "scheduler", "width", "height",
                                        "cfg_scale", "refiner_checkpoint", "refiner_switch_at", "refiner_by_steps"})
    assert restored.fields["refiner_checkpoint"] == title and restored.fields["refiner_switch_at"] == 0.5
    again = services.generation.submit_txt2img(replace(request(), **restored.fields)).result(timeout=180)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(refined.images[0]))
    old = restore_request({**params, "Version": "v1.7.0"}, {"refiner_checkpoint", "refiner_switch_at", "refiner_by_steps"})
    assert old.fields["refiner_by_steps"] is True  # A1111 switched by sampling steps until 1.8.0
    new = restore_request({**params, "Version": "v1.10.1"}, {"refiner_checkpoint", "refiner_switch_at", "refiner_by_steps"})
    assert "refiner_by_steps" not in new.fields


def test_the_second_job_reads_no_file(services, monkeypatch):
    reads: list[str] = []
    original = manager_module.read_checkpoint

    def counted(entry, *args, **kwargs):
        reads.append(entry.name)
        return original(entry, *args, **kwargs)

    monkeypatch.setattr(manager_module, "read_checkpoint", counted)
    run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=0.5)
    reads.clear()
    started = torch.get_num_threads()
    second = run(services, refiner_checkpoint="xlrefiner", refiner_switch_at=0.5)
    assert took_over(second) is not None and reads == []  # both models from the RAM cache
    assert torch.get_num_threads() == started


def test_an_unknown_refiner_is_refused_before_it_runs(services):
    with pytest.raises(ModelNotFoundError, match="no-such-refiner"):
        services.generation.submit_txt2img(request(refiner_checkpoint="no-such-refiner"))
