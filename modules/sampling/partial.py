"""The tail of a schedule that img2img and the hires pass walk, as A1111's `sample_img2img` takes it.

A1111 (`setup_img2img_steps`) builds the schedule for `total` steps and runs the last part of it:

- k-diffusion samplers noise the picture to ``sigmas[total - t_enc - 1]`` and walk from there:
  t_enc + 1 steps (`KDiffusionSampler.sample_img2img`);
- the timestep samplers (DDIM, DDIM CFG++, PLMS) noise the picture to the grid's timestep
  ``timesteps[t_enc]`` but walk ``timesteps[:t_enc]`` from its top, one grid step lower: t_enc - 1
  steps (`CompVisSampler.sample_img2img`; 20 steps at strength 0.75 run 14, 8 at 0.9 run 6);
- UniPC, also a timestep sampler there, runs t_enc steps of continuous time from that timestep
  (``t_start = timesteps[t_enc - 1] / 1000 + 1 / 1000``, model index ``timesteps[t_enc - 1]``) down to 0.

The timestep samplers work on the variance-preserving latent ``x_vp``; Easel's samplers take the
k-space latent at their first sigma, ``x_vp * sqrt(1 + sigma^2)``. A1111's start latent, noised to
one timestep and read at the next, is therefore scaled by ``sqrt((1 + s_first^2) / (1 + s_noise^2))``
(`PartialSchedule.scale`), so the first model call sees what A1111's does.

Where A1111 would take no step at all (a timestep sampler at a very low strength: it returns the
noised picture), one step from the noise level to zero is taken instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from modules.sampling import timestep_samplers as ts
from modules.sampling.sampler_table import SamplerSpec, sigmas_for
from modules.sampling.types import DiscreteSchedule


@dataclass(frozen=True)
class PartialSchedule:
    """An img2img or hires pass: the sigma the picture is noised to, and the sigmas the sampler walks."""

    noise_sigma: float
    sigmas: Tensor  # the walk, ending at 0
    full: Tensor  # the whole schedule (its range bounds the noise-level guard of the engine)
    scale: float = 1.0  # the noised latent's factor (1 for k-diffusion samplers; see the module docstring)

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def start(self, init: Tensor, noise: Tensor) -> Tensor:
        """The latent the sampler starts from: `init` noised to `noise_sigma`."""
        x = init + noise * self.noise_sigma
        return x * self.scale if self.scale != 1.0 else x


def partial_schedule(sampler: SamplerSpec, schedule: str | None, total: int, t_enc: int, model: DiscreteSchedule,
                     *, sdxl: bool = False) -> PartialSchedule:
    """The tail of `sampler`'s `total`-step schedule that a pass of `t_enc` (A1111's
    `setup_img2img_steps`) walks on `model`."""
    full = sigmas_for(sampler, schedule, max(total, 1), model, sdxl=sdxl)
    if sampler.own_grid is None:
        sigmas = full[max(len(full) - t_enc - 2, 0):]
        return PartialSchedule(float(sigmas[0]), sigmas, full)
    grid = ts.a1111_ddim_timesteps(max(total, 1), len(model.sigmas))
    train_sigmas = model.sigmas.detach().to(device="cpu", dtype=torch.float64)
    if len(grid) < 2:  # one step in all: from the top of the grid to 0
        top = float(train_sigmas[-1])
        return PartialSchedule(top, torch.tensor([top, 0.0], device=model.sigmas.device), full)
    t_enc = min(max(t_enc, 1), len(grid) - 1)
    noise_sigma = float(train_sigmas[grid[t_enc]])
    if sampler.own_grid is ts.unipc_sigmas:
        walk = ts.unipc_sigmas(model, t_enc, start_index=grid[t_enc - 1]).double().cpu()
    else:  # DDIM, DDIM CFG++, PLMS: grid[:t_enc] from the top, the last (t=1) taken to 0
        walk = torch.cat([train_sigmas[torch.tensor(grid[:t_enc][::-1])][:-1], torch.zeros(1, dtype=torch.float64)])
    if len(walk) < 2:  # A1111 would return the noised picture: one step to 0 instead
        walk = torch.tensor([noise_sigma, 0.0], dtype=torch.float64)
    walk = walk.to(device=model.sigmas.device, dtype=torch.float32)
    first = float(walk[0])
    scale = math.sqrt((1 + first**2) / (1 + noise_sigma**2))
    return PartialSchedule(noise_sigma, walk, full, scale)
