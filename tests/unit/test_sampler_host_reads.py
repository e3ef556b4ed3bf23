"""A sampling step never waits for the accelerator to report a number back.

On a GPU, `if sigmas[i + 1] > 0` on a device tensor, `float(t)` or `.item()` each stall the host
until the queued kernels finish, so the next step's kernels are not queued ahead. The engine keeps
the schedule in RAM and puts the denoiser's sigma grid on the latent's device. CI has no GPU, so
these tests put the latent on the meta device, which holds no data: any read-back of a
latent-side value raises there, while host arithmetic on the RAM sigmas works.
"""

from __future__ import annotations

import pytest
import torch

from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import SAMPLERS
from modules.sampling.types import SamplerContext

# DPM adaptive picks its step sizes from the error of the last step: a read-back by design.
READS_BY_DESIGN = {"DPM adaptive"}
SIGMAS = torch.tensor([14.61, 8.0, 4.0, 2.0, 1.0, 0.5, 0.2, 0.0292, 0.0])


class MetaDenoiser:
    """x0 = x / 2, computed on the latent's device; checks the sigma it gets is there too. It keeps
    that x0 as its unconditional one too (DDIM CFG++ steps along it)."""

    sigma_min, sigma_max = 0.0292, 14.61

    def __init__(self):
        self.calls = 0
        self.last_uncond_x0: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.device == x.device, f"sigma on {sigma.device}, latent on {x.device}"
        self.calls += 1
        self.last_uncond_x0 = x * 0.5
        return self.last_uncond_x0


def _context() -> SamplerContext:
    return SamplerContext(callback=lambda info: None, noise=None, eta=1.0, s_noise=1.0, seeds=[], noise_range=None)


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s.label not in READS_BY_DESIGN], ids=lambda s: s.label)
def test_every_sampler_walks_a_device_latent_with_the_sigmas_in_ram(sampler):
    x = torch.zeros(2, 4, 8, 8, device="meta")
    denoiser = MetaDenoiser()
    out = sampler.run(denoiser, x, SIGMAS, _context())
    assert out.device.type == "meta" and out.shape == x.shape
    assert denoiser.calls >= 1


def test_the_same_schedule_on_the_device_would_read_back():
    # what the engine avoids: with the sigmas beside the latent, the branch on `sigma > 0` needs its value
    euler = next(s for s in SAMPLERS if s.label == "Euler")
    with pytest.raises((RuntimeError, NotImplementedError)):
        euler.run(MetaDenoiser(), torch.zeros(1, 4, 8, 8, device="meta"), SIGMAS.to("meta"), _context())


def test_sigma_to_timestep_runs_on_the_latents_device():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    grid = DiscreteDenoiser(lambda x, t, **kw: x, torch.cumprod(1.0 - betas, dim=0).float(), "epsilon")
    on_cpu = grid.sigma_to_t(torch.tensor([14.61, 1.0]))
    grid.to("meta")
    t = grid.sigma_to_t(torch.tensor([14.61, 1.0], device="meta"))
    assert t.device.type == "meta" and t.shape == on_cpu.shape
