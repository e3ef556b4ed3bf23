"""DDIM, DDIM CFG++, PLMS, UniPC and LCM in k-space do what A1111's timestep samplers do, on a tiny
seeded UNet.

References written here: Euler (DDIM with eta 0 must equal it), A1111's own VP-space DDIM, DDIM CFG++
and PLMS loops (`sd_samplers_timesteps_impl.py` with the CFG of `sd_samplers_cfg_denoiser.py`,
transcribed), and diffusers' UniPCMultistepScheduler.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNet2DConditionModel, UniPCMultistepScheduler

from modules.generation.guidance import GuidedDenoiser, StepConditions
from modules.prompts.conditioning import Conditioning
from modules.sampling import schedules
from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import find_sampler
from modules.sampling.timestep_samplers import (
    a1111_ddim_timesteps,
    ddim_timestep_sigmas,
    lcm_sigmas,
    sample_ddim,
    sample_ddim_cfgpp,
    sample_lcm,
    sample_plms,
    sample_unipc,
    unipc_sigmas,
)
from modules.sampling.types import SamplerContext

LATENT = (2, 4, 8, 8)


class TinyEpsDenoiser:
    """k-diffusion's DiscreteEpsDDPMDenoiser over a diffusers UNet: SD's scaled_linear betas, no CFG."""

    def __init__(self, unet: UNet2DConditionModel, cond: torch.Tensor):
        self.unet, self.cond = unet, cond
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0).float()
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self.log_sigmas = self.sigmas.log()
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]
        self.calls = 0

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log() - self.log_sigmas[:, None]
        low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=len(self.log_sigmas) - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((lo - sigma.log()) / (lo - hi)).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)

    def eps(self, x_vp: torch.Tensor, t) -> torch.Tensor:
        cond = self.cond.expand(x_vp.shape[0], -1, -1)
        return self.unet(x_vp, t, encoder_hidden_states=cond).sample

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        s = sigma.reshape(-1, 1, 1, 1)
        return x - s * self.eps(x / (s**2 + 1).sqrt(), self.sigma_to_t(sigma))


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()


def tiny_model() -> TinyEpsDenoiser:
    """The tiny UNet on one fixed prompt (also used by bench/sampler_parity.py)."""
    cond = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(1))
    return TinyEpsDenoiser(tiny_unet(), cond)


@pytest.fixture(scope="module")
def model() -> TinyEpsDenoiser:
    return tiny_model()


def start_noise(seed: int = 7) -> torch.Tensor:
    return torch.randn(LATENT, generator=torch.Generator().manual_seed(seed))


class SeededNoise:
    """ctx.noise: standard normal noise from one seeded generator; records the sigmas it was asked for."""

    def __init__(self, seed: int = 99):
        self.generator = torch.Generator().manual_seed(seed)
        self.asked: list[tuple[float, float]] = []

    def __call__(self, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        self.asked.append((float(sigma), float(sigma_next)))
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype)


def context(eta: float = 0.0, noise=None, callback=None) -> SamplerContext:
    return SamplerContext(callback=callback, noise=noise or SeededNoise(), eta=eta)


@torch.no_grad()
def euler(model, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * x.new_ones(x.shape[0]))
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def log_linear_sigmas(model, n: int) -> torch.Tensor:
    s = torch.linspace(math.log(model.sigma_max), math.log(model.sigma_min), n).exp()
    return torch.cat([s, s.new_zeros(1)])


SAMPLERS = {
    "ddim": sample_ddim,
    "ddim_eta": lambda m, x, s, c: sample_ddim(m, x, s, SamplerContext(callback=c.callback, noise=c.noise, eta=0.7)),
    "plms": sample_plms,
    "unipc": sample_unipc,
    "unipc_bh2": lambda m, x, s, c: sample_unipc(m, x, s, c, variant="bh2"),
    "lcm": sample_lcm,
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_ten_steps_finite_deterministic_one_callback_per_step(model, name):
    sigmas = log_linear_sigmas(model, 10)
    runs = []
    for _ in range(2):
        seen = []
        out = SAMPLERS[name](model, start_noise() * sigmas[0], sigmas, context(callback=seen.append))
        runs.append(out)
        assert [s.index for s in seen] == list(range(10))
        assert all(s.total == 10 and s.denoised.shape == LATENT and s.x.shape == LATENT for s in seen)
        assert [float(s.sigma) for s in seen] == pytest.approx(sigmas[:-1].tolist())
        assert [float(s.sigma_next) for s in seen] == pytest.approx(sigmas[1:].tolist())
    assert out.shape == LATENT and torch.isfinite(out).all()
    assert torch.equal(runs[0], runs[1])
    # A step that lands on sigma 0 lands on its x0 prediction (PLMS: of its combined eps).
    assert torch.allclose(out, seen[-1].denoised, atol=1e-6)


def test_ddim_with_eta_zero_is_euler(model):
    sigmas = ddim_timestep_sigmas(model, 10)
    noise = SeededNoise()
    x = start_noise() * sigmas[0]
    out = sample_ddim(model, x, sigmas, context(eta=0.0, noise=noise))
    assert (out - euler(model, x, sigmas)).abs().max().item() < 1e-5
    assert noise.asked == []


def test_ddim_with_eta_draws_noise_for_every_step_but_the_last_and_changes_the_image(model):
    sigmas = ddim_timestep_sigmas(model, 10)
    x = start_noise() * sigmas[0]
    noise = SeededNoise()
    noisy = sample_ddim(model, x, sigmas, context(eta=1.0, noise=noise))
    assert [pair for pair in noise.asked] == [pytest.approx(pair) for pair in zip(sigmas[:-2].tolist(), sigmas[1:-1].tolist())]
    assert rel(noisy, sample_ddim(model, x, sigmas, context(eta=0.0))) > 1e-3


# A1111's VP-space loops, transcribed from sd_samplers_timesteps_impl.py (eps model at integer t).


def _vp_tables(model, timesteps):
    ac = model.alphas_cumprod
    ts = torch.tensor(timesteps)
    alphas = ac[ts]
    alphas_prev = ac[torch.nn.functional.pad(ts[:-1], pad=(1, 0))].double()
    return ts, alphas, alphas_prev


@torch.no_grad()
def a1111_ddim(model, x, timesteps, eta, randn):
    ts, alphas, alphas_prev = _vp_tables(model, timesteps)
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    for i in range(len(ts) - 1):
        index = len(ts) - 1 - i
        e_t = model.eps(x, ts[index].item())
        a_t, a_prev, sigma_t = alphas[index].item(), alphas_prev[index].item(), sigmas[index].item()
        pred_x0 = (x - math.sqrt(1 - a_t) * e_t) / math.sqrt(a_t)
        x = math.sqrt(a_prev) * pred_x0 + math.sqrt(1.0 - a_prev - sigma_t**2) * e_t + sigma_t * randn(x)
    return x


@torch.no_grad()
def a1111_plms(model, x, timesteps):
    ts, alphas, alphas_prev = _vp_tables(model, timesteps)
    old_eps = []

    def step(x, e_t, index):
        a_t, a_prev = alphas[index].item(), alphas_prev[index].item()
        pred_x0 = (x - math.sqrt(1 - a_t) * e_t) / math.sqrt(a_t)
        return math.sqrt(a_prev) * pred_x0 + math.sqrt(1.0 - a_prev) * e_t

    for i in range(len(ts) - 1):
        index = len(ts) - 1 - i
        e_t = model.eps(x, ts[index].item())
        if len(old_eps) == 0:
            e_t_next = model.eps(step(x, e_t, index), ts[max(index - 1, 0)].item())
            e_t_prime = (e_t + e_t_next) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x = step(x, e_t_prime, index)
        old_eps = (old_eps + [e_t])[-3:]
    return x


def _k_run(sampler, model, steps, grid=None, **ctx_args):
    """Run in k-space on A1111's exact grid (of ``grid``, default ``model``) from VP noise; return the
    final latent in VP space."""
    sigmas = ddim_timestep_sigmas(grid or model, steps, end_at_zero=False)
    x = start_noise() * math.sqrt(1 + sigmas[0].item() ** 2)
    out = sampler(model, x, sigmas, context(**ctx_args))
    return out / math.sqrt(1 + sigmas[-1].item() ** 2)


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_matches_a1111s_vp_loop(model, eta):
    steps = 8  # 1000 // 8 = 125: grid 1, 126, ..., 876 - seven steps
    randn_gen = torch.Generator().manual_seed(99)
    ref = a1111_ddim(model, start_noise(), a1111_ddim_timesteps(steps), eta, lambda x: torch.randn(x.shape, generator=randn_gen))
    ours = _k_run(sample_ddim, model, steps, eta=eta, noise=SeededNoise(99))
    assert rel(ours, ref) < 1e-5


def test_plms_matches_a1111s_vp_loop_with_its_improved_euler_first_step(model):
    steps = 12  # 1000 // 12 = 83: 13 grid points, 12 steps, 13 model calls
    ref = a1111_plms(model, start_noise(), a1111_ddim_timesteps(steps))
    model.calls = 0
    ours = _k_run(sample_plms, model, steps)
    assert model.calls == 13
    assert rel(ours, ref) < 1e-5


# DDIM CFG++: A1111's `ddim_cfgpp` under its CFGDenoiser, transcribed. The denoiser combines the eps
# of [cond, uncond] at cond_scale = cfg_scale * (1 / 12.5) and keeps the unconditional eps
# (`last_noise_uncond`); the step takes x0 from the combined eps and goes on along the unconditional.

CFGPP_SCALE = 7.0


def uncond_prompt() -> torch.Tensor:
    return torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(2))


def eps_cond_uncond(model: TinyEpsDenoiser, uncond: torch.Tensor):
    """(x_vp, t) -> (eps_cond, eps_uncond), one batch [cond, uncond] as A1111 runs it."""

    def run(x, t):
        hidden = torch.cat([model.cond.expand(x.shape[0], -1, -1), uncond.expand(x.shape[0], -1, -1)])
        t_in = torch.full((2 * x.shape[0],), float(t))
        return model.unet(torch.cat([x, x]), t_in, encoder_hidden_states=hidden).sample.chunk(2)

    return run


@torch.no_grad()
def a1111_ddim_cfgpp(model, eps_pair, x, timesteps, eta, randn, cfg_scale, cfgpp=True):
    """`ddim_cfgpp` (cfgpp=False: plain `ddim`, its guidance still at ``cfg_scale`` / 12.5)."""
    ts, alphas, alphas_prev = _vp_tables(model, timesteps)
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    cond_scale = cfg_scale * (1 / 12.5)
    for i in range(len(ts) - 1):
        index = len(ts) - 1 - i
        e_cond, e_uncond = eps_pair(x, ts[index].item())
        e_t = e_uncond + (e_cond - e_uncond) * cond_scale
        a_t, a_prev, sigma_t = alphas[index].item(), alphas_prev[index].item(), sigmas[index].item()
        pred_x0 = (x - math.sqrt(1 - a_t) * e_t) / math.sqrt(a_t)
        direction = e_uncond if cfgpp else e_t
        x = math.sqrt(a_prev) * pred_x0 + math.sqrt(1.0 - a_prev - sigma_t**2) * direction + sigma_t * randn(x)
    return x


def engine_guidance(model: TinyEpsDenoiser, uncond: torch.Tensor, row, cfg_scale: float) -> GuidedDenoiser:
    """The engine's guidance for ``row`` over the same UNet: a DiscreteDenoiser under GuidedDenoiser at
    the user's CFG scale times the row's multiplier, keeping the unconditional x0 when the row needs it."""
    inner = DiscreteDenoiser(lambda x, t, hidden, pooled=None: model.unet(x, t, encoder_hidden_states=hidden).sample, model.alphas_cumprod)
    prompts = [StepConditions([(100, [(Conditioning(hidden), 1.0)])]) for hidden in (model.cond, uncond)]
    return GuidedDenoiser(inner, *prompts, cfg_scale * row.cfg_scale_multiplier, inner.sigma_min, inner.sigma_max, keep_uncond=row.needs_uncond)


def cfgpp_against_a1111(model, eta: float, steps: int = 8, **reference_changes) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours through the sampler row and the engine's guidance, A1111's loop) in VP space."""
    row, uncond = find_sampler("DDIM CFG++"), uncond_prompt()
    randn_gen = torch.Generator().manual_seed(99)
    reference = dict(eta=eta, randn=lambda x: torch.randn(x.shape, generator=randn_gen), cfg_scale=CFGPP_SCALE) | reference_changes
    ref = a1111_ddim_cfgpp(model, eps_cond_uncond(model, uncond), start_noise(), a1111_ddim_timesteps(steps), **reference)
    ours = _k_run(row.run, engine_guidance(model, uncond, row, CFGPP_SCALE), steps, grid=model, eta=eta, noise=SeededNoise(99))
    return ours, ref


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_cfgpp_matches_a1111s_vp_loop(model, eta):
    ours, ref = cfgpp_against_a1111(model, eta)
    assert rel(ours, ref) < 1e-5
    # the comparison can tell CFG++ from DDIM, and the divided scale from the undivided one
    _, plain_ddim = cfgpp_against_a1111(model, eta, cfgpp=False)
    _, undivided = cfgpp_against_a1111(model, eta, cfg_scale=CFGPP_SCALE * 12.5)
    assert rel(ours, plain_ddim) > 1e-3 and rel(ours, undivided) > 1e-3


def test_ddim_cfgpp_row_runs_at_a_twelfth_and_a_half_of_the_cfg_scale_along_the_uncond():
    row = find_sampler("ddim_cfgpp")
    assert (row.label, row.function, row.cfg_scale_multiplier, row.needs_uncond) == ("DDIM CFG++", sample_ddim_cfgpp, 1 / 12.5, True)
    assert row.own_grid is ddim_timestep_sigmas and row.eta_default == 0.0
    assert all(r.cfg_scale_multiplier == 1.0 and not r.needs_uncond for r in map(find_sampler, ("DDIM", "Euler a", "PLMS")))


def test_ddim_cfgpp_with_the_prompt_as_its_own_negative_is_ddim(model):
    row = find_sampler("DDIM CFG++")
    guided = engine_guidance(model, model.cond, row, CFGPP_SCALE)
    sigmas = ddim_timestep_sigmas(model, 6)
    x = start_noise() * sigmas[0]
    assert rel(sample_ddim_cfgpp(guided, x, sigmas, context()), sample_ddim(model, x, sigmas, context())) < 1e-5


def test_ddim_cfgpp_refuses_a_denoiser_that_keeps_no_unconditional_prediction(model):
    sigmas = ddim_timestep_sigmas(model, 4)
    with pytest.raises(TypeError, match="TinyEpsDenoiser kept none.*UncondDenoiser"):
        sample_ddim_cfgpp(model, start_noise() * sigmas[0], sigmas, context())


@pytest.mark.parametrize(("variant", "final"), [("bh1", "sigma_min"), ("bh2", "sigma_min"), ("bh2", "zero")])
def test_unipc_matches_diffusers_on_a1111s_grid(model, variant, final):
    """diffusers' grid for 9 steps is A1111's time_uniform grid exactly (linspace(0, 999, 10) is whole).

    A1111 ends at sigma(t=0) ("sigma_min"); the contract's default ends at 0 ("zero"). diffusers'
    bh1 cannot step onto sigma 0 (its B(h) = -h is infinite there: NaN), ours lands on x0.
    """
    steps = 9
    scheduler = UniPCMultistepScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, solver_order=3, solver_type=variant,
        predict_x0=True, lower_order_final=True, timestep_spacing="linspace", final_sigmas_type=final,
    )
    scheduler.set_timesteps(steps)
    sigmas = unipc_sigmas(model, steps, end_at_zero=final == "zero")
    assert torch.allclose(sigmas, scheduler.sigmas, rtol=1e-5)
    x = start_noise()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model.eps(x, t), t, x).prev_sample
    model.calls = 0
    ours = sample_unipc(model, start_noise() * math.sqrt(1 + sigmas[0].item() ** 2), sigmas, context(), variant=variant)
    assert model.calls == steps
    assert rel(ours / math.sqrt(1 + sigmas[-1].item() ** 2), x) < 1e-5
    other = sample_unipc(model, start_noise() * math.sqrt(1 + sigmas[0].item() ** 2), sigmas, context(), variant=variant, order=2)
    assert rel(other / math.sqrt(1 + sigmas[-1].item() ** 2), x) > 1e-3  # the comparison can tell orders apart


def test_plms_and_unipc_at_50_steps_land_near_euler_at_200(model):
    x = start_noise()
    fine = euler(model, x * model.sigma_max, log_linear_sigmas(model, 200))
    coarse = log_linear_sigmas(model, 50)
    euler_50 = rel(euler(model, x * model.sigma_max, coarse), fine)
    for sampler in (sample_plms, sample_unipc):
        distance = rel(sampler(model, x * model.sigma_max, coarse, context()), fine)
        assert distance < 0.02 and distance < euler_50, (sampler.__name__, distance, euler_50)


def test_lcm_denoises_then_renoises_to_the_next_sigma(model):
    sigmas = lcm_sigmas(model, 4)
    noise = SeededNoise()
    seen = []
    out = sample_lcm(model, start_noise() * sigmas[0], sigmas, context(noise=noise, callback=seen.append))
    assert [pair for pair in noise.asked] == [pytest.approx(pair) for pair in zip(sigmas[:-2].tolist(), sigmas[1:-1].tolist())]
    assert torch.equal(out, seen[-1].denoised)
    # The x handed to step i+1 is step i's x0 plus sigma_next times the noise drawn for it.
    replay = SeededNoise()
    expected = seen[0].denoised + sigmas[1] * replay(seen[0].x, sigmas[0], sigmas[1])
    assert torch.allclose(seen[1].x, expected, atol=1e-6)
    # Without a noise source the context falls back to torch.randn_like.
    assert torch.isfinite(sample_lcm(model, start_noise() * sigmas[0], sigmas, SamplerContext())).all()


def test_a1111_ddim_grid_and_its_sigmas(model):
    assert a1111_ddim_timesteps(20) == list(range(1, 1000, 50))
    assert len(a1111_ddim_timesteps(30)) == 31  # 1000 // 30 = 33 does not divide 1000
    assert a1111_ddim_timesteps(3) == [1, 334, 667, 999]  # 1000 is clipped to 999
    ac = model.alphas_cumprod.double()
    sigma = lambda t: ((1 - ac[t]) / ac[t]).sqrt().item()  # noqa: E731
    sigmas = ddim_timestep_sigmas(model, 20)
    assert len(sigmas) == 20  # 19 steps, as A1111 runs for "20 steps"
    assert sigmas[0].item() == pytest.approx(sigma(951)) and sigmas[-2].item() == pytest.approx(sigma(51))
    assert sigmas[-1].item() == 0.0
    assert ddim_timestep_sigmas(model, 20, end_at_zero=False)[-1].item() == pytest.approx(sigma(1))
    assert ddim_timestep_sigmas(model, 1).tolist() == pytest.approx([sigma(999), 0.0])


def test_schedules_and_samplers_run_on_the_engines_discrete_denoiser(model):
    engine = DiscreteDenoiser(lambda x, t: model.eps(x, t), model.alphas_cumprod)
    for schedule in (ddim_timestep_sigmas, unipc_sigmas, lcm_sigmas):
        assert torch.equal(schedule(engine, 10), schedule(model, 10))
    # The k-diffusion "DDIM" schedule type keeps t=1 as a step before 0; the DDIM sampler stops there.
    k_ddim = schedules.ddim(schedules.ScheduleArgs(n=20, sigma_min=engine.sigma_min, sigma_max=engine.sigma_max, model=engine))
    assert torch.equal(ddim_timestep_sigmas(engine, 20, end_at_zero=False), k_ddim[:-1])
    sigmas = ddim_timestep_sigmas(engine, 5)
    x = start_noise() * sigmas[0]
    assert rel(sample_ddim(engine, x, sigmas, context()), sample_ddim(model, x, sigmas, context())) < 1e-6


def test_unipc_and_lcm_grids(model):
    ac = model.alphas_cumprod.double()
    sigma = lambda t: ((1 - ac[t]) / ac[t]).sqrt().item()  # noqa: E731
    s = unipc_sigmas(model, 20)
    assert len(s) == 21 and s[0].item() == pytest.approx(sigma(999)) and s[-1].item() == 0.0
    assert unipc_sigmas(model, 20, end_at_zero=False)[-1].item() == pytest.approx(sigma(0))
    assert torch.all(s[:-1].diff() < 0)
    lcm = lcm_sigmas(model, 50)
    assert lcm[:-1].tolist() == pytest.approx([sigma(t) for t in range(999, 0, -20)], rel=1e-6)
    assert lcm_sigmas(model, 1).tolist() == pytest.approx([sigma(999), 0.0])
    four = lcm_sigmas(model, 4)
    assert len(four) == 5 and four[0].item() == pytest.approx(sigma(999)) and four[3].item() == pytest.approx(sigma(19))
