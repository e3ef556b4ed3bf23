"""The tail of a schedule img2img and the hires pass walk (modules/sampling/partial.py): step counts
and noise levels as A1111's sample_img2img takes them, for k-diffusion and timestep samplers."""

from __future__ import annotations

import math

import pytest
import torch

from modules.generation.engine import tail_steps
from modules.sampling import timestep_samplers as ts
from modules.sampling.partial import partial_schedule
from modules.sampling.sampler_table import find_sampler, sigmas_for
from modules.sampling.denoiser import DiscreteDenoiser


@pytest.fixture(scope="module")
def grid() -> DiscreteDenoiser:
    """SD's training schedule (scaled-linear betas, 1000 steps) behind a denoiser (the model is not called)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return DiscreteDenoiser(lambda x, t: x, torch.cumprod(1 - betas, 0).float())


@pytest.mark.parametrize("steps, strength, a1111_steps", [(20, 0.75, 14), (8, 0.9, 6), (50, 0.5, 24), (20, 0.999, 18)])
@pytest.mark.parametrize("name", ["DDIM", "DDIM CFG++", "PLMS"])
def test_timestep_samplers_walk_what_a1111_walks(grid, name, steps, strength, a1111_steps):
    """A1111 noises to timesteps[t_enc] and walks timesteps[:t_enc] from its top: t_enc - 1 steps."""
    total, t_enc = tail_steps(steps, strength, fix_steps=False)
    tail = partial_schedule(find_sampler(name), "Automatic", total, t_enc, grid)
    timesteps = ts.a1111_ddim_timesteps(steps)
    assert tail.steps == a1111_steps == t_enc - 1
    assert tail.noise_sigma == pytest.approx(float(grid.sigmas[timesteps[t_enc]]))
    assert float(tail.sigmas[0]) == pytest.approx(float(grid.sigmas[timesteps[t_enc - 1]]))
    assert float(tail.sigmas[-1]) == 0.0 and torch.all(tail.sigmas[:-1] > tail.sigmas[1:])
    # The start latent is A1111's VP latent as the first model call reads it.
    init, noise = torch.full((1, 4, 2, 2), 0.3), torch.full((1, 4, 2, 2), -1.2)
    vp = (init + noise * tail.noise_sigma) / math.sqrt(1 + tail.noise_sigma**2)
    assert torch.allclose(tail.start(init, noise), vp * math.sqrt(1 + float(tail.sigmas[0]) ** 2), atol=1e-5)


def test_unipc_runs_t_enc_steps_of_continuous_time_from_there_to_zero(grid):
    total, t_enc = tail_steps(20, 0.75, fix_steps=False)
    tail = partial_schedule(find_sampler("UniPC"), "Automatic", total, t_enc, grid)
    timesteps = ts.a1111_ddim_timesteps(20)
    assert tail.steps == t_enc == 15
    assert float(tail.sigmas[0]) == pytest.approx(float(grid.sigmas[timesteps[t_enc - 1]]), rel=1e-5)
    assert tail.noise_sigma == pytest.approx(float(grid.sigmas[timesteps[t_enc]]))


@pytest.mark.parametrize("name, schedule", [("Euler a", "Automatic"), ("DPM++ 2M", "Karras"), ("DPM2", "Automatic")])
def test_k_diffusion_samplers_walk_the_last_t_enc_plus_one_steps(grid, name, schedule):
    total, t_enc = tail_steps(20, 0.75, fix_steps=False)
    sampler = find_sampler(name)
    tail = partial_schedule(sampler, schedule, total, t_enc, grid)
    full = sigmas_for(sampler, schedule, total, grid)
    assert tail.steps == t_enc + 1 == 16
    assert torch.equal(tail.sigmas, full[len(full) - t_enc - 2:]) and tail.noise_sigma == float(full[len(full) - t_enc - 2])
    assert tail.scale == 1.0


def test_where_a1111_would_take_no_step_one_step_to_zero_is_taken(grid):
    total, t_enc = tail_steps(20, 0.05, fix_steps=False)  # t_enc 1: A1111's DDIM loop would not run
    tail = partial_schedule(find_sampler("DDIM"), "Automatic", total, t_enc, grid)
    assert tail.steps == 1 and float(tail.sigmas[-1]) == 0.0 and float(tail.sigmas[0]) == pytest.approx(tail.noise_sigma)
    one = partial_schedule(find_sampler("DDIM"), "Automatic", 1, 0, grid)
    assert one.steps == 1 and float(one.sigmas[-1]) == 0.0
