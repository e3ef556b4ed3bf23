"""Sigma schedules (values, lengths, ends, A1111 quirks) and how sampler names and "Automatic"
resolve, against k-diffusion's schedule functions and A1111 1.10's published behaviour."""

from __future__ import annotations

import pytest
import torch

from modules.errors import UserError
from modules.sampling import schedules
from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import (
    SAMPLERS,
    find_sampler,
    parse_sampler_name,
    resolve_schedule,
    schedule_label,
    sigmas_for,
)
from tests.kdiffusion_reference import load

SIGMA_MIN, SIGMA_MAX = 0.0292, 14.6146


def sd_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


@pytest.fixture(scope="module")
def model() -> DiscreteDenoiser:
    return DiscreteDenoiser(lambda x, t: x, sd_alphas_cumprod())


CONCRETE = [s.id for s in schedules.SCHEDULES if s.id != "automatic"]


# -- values against k-diffusion ---------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 10, 31])
def test_karras_exponential_polyexponential_equal_kdiffusion(steps):
    sampling, _ = load()
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    assert torch.equal(schedules.build_sigmas("karras", steps, **kw), sampling.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX))
    assert torch.equal(
        schedules.build_sigmas("karras", steps, rho=3.5, **kw), sampling.get_sigmas_karras(steps, SIGMA_MIN, SIGMA_MAX, rho=3.5)
    )
    assert torch.equal(schedules.build_sigmas("exponential", steps, **kw), sampling.get_sigmas_exponential(steps, SIGMA_MIN, SIGMA_MAX))
    assert torch.equal(
        schedules.build_sigmas("polyexponential", steps, **kw), sampling.get_sigmas_polyexponential(steps, SIGMA_MIN, SIGMA_MAX)
    )
    assert torch.equal(
        schedules.build_sigmas("polyexponential", steps, rho=2.0, **kw),
        sampling.get_sigmas_polyexponential(steps, SIGMA_MIN, SIGMA_MAX, rho=2.0),
    )


def test_model_grid_schedules_equal_a1111_formulas(model):
    """Uniform is k-diffusion's get_sigmas; Normal / SGM Uniform interpolate between the timesteps of
    sigma_max and sigma_min (A1111's sd_schedulers) on k-diffusion's continuous timestep mapping."""
    _, external = load()
    reference = external.DiscreteEpsDDPMDenoiser(None, sd_alphas_cumprod(), quantize=False)
    assert torch.equal(schedules.build_sigmas("uniform", 20, model=model), reference.get_sigmas(20))
    start = reference.sigma_to_t(torch.tensor(model.sigma_max))
    end = reference.sigma_to_t(torch.tensor(model.sigma_min))
    normal = [float(reference.t_to_sigma(t)) for t in torch.linspace(start, end, 20)] + [0.0]
    sgm = [float(reference.t_to_sigma(t)) for t in torch.linspace(start, end, 21)[:-1]] + [0.0]
    assert torch.equal(schedules.build_sigmas("normal", 20, model=model), torch.tensor(normal))
    assert torch.equal(schedules.build_sigmas("sgm_uniform", 20, model=model), torch.tensor(sgm))


# -- shape of every schedule ----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", CONCRETE)
@pytest.mark.parametrize("steps", [1, 2, 9, 20])
def test_every_schedule_has_steps_plus_one_descending_values(model, schedule, steps):
    sigmas = schedules.build_sigmas(schedule, steps, model=model)
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    if schedule == "ddim":  # A1111's DDIM grid: timesteps 1, 1+k, ... with k = 1000 // steps
        assert len(sigmas) == len(range(1, 1000, 1000 // steps)) + 1
    else:
        assert len(sigmas) == steps + 1
    assert (sigmas[:-1] > sigmas[1:]).all(), sigmas
    if schedule == "kl_optimal":  # A1111 1.10 ends KL Optimal at sigma_min, not 0
        assert sigmas[-1] == pytest.approx(model.sigma_min, rel=1e-5)
    else:
        assert sigmas[-1] == 0


@pytest.mark.parametrize("schedule", ["karras", "exponential", "polyexponential", "uniform", "normal", "kl_optimal", "beta"])
def test_schedules_span_the_model_range(model, schedule):
    sigmas = schedules.build_sigmas(schedule, 12, model=model)
    assert float(sigmas[0]) == pytest.approx(model.sigma_max, rel=1e-5)
    assert float(sigmas[-2 if schedule != "kl_optimal" else -1]) == pytest.approx(model.sigma_min, rel=1e-5)


def test_ddim_simple_and_sgm_schedules_use_grid_values(model):
    ddim = schedules.build_sigmas("ddim", 30, model=model)
    assert len(ddim) == 32  # 31 timesteps for 30 steps, as A1111's DDIM
    assert torch.equal(ddim[:-1], model.sigmas[torch.arange(1, 1000, 33)].flip(0))
    simple = schedules.build_sigmas("simple", 8, model=model)
    assert torch.equal(simple[:-1], model.sigmas[[999 - int(i * 125) for i in range(8)]])
    sgm = schedules.build_sigmas("sgm_uniform", 4, model=model)
    assert float(sgm[0]) == pytest.approx(model.sigma_max, rel=1e-5) and float(sgm[-2]) > model.sigma_min * 10


def test_align_your_steps_tables(model):
    sd1 = schedules.build_sigmas("align_your_steps", 10, model=model)
    assert torch.equal(schedules.build_sigmas("align_your_steps", 11, model=model), torch.tensor([*schedules.AYS_SD1, 0.0]))
    assert float(sd1[0]) == pytest.approx(14.615) and float(sd1[-2]) == pytest.approx(0.029) and len(sd1) == 11
    sdxl = schedules.build_sigmas("align_your_steps", 11, model=model, sdxl=True)
    assert torch.equal(sdxl, torch.tensor([*schedules.AYS_SDXL, 0.0]))
    # log-linear interpolation: 21 steps put one new point between each pair of table values
    doubled = schedules.build_sigmas("align_your_steps", 21, model=model)
    assert torch.allclose(doubled[:-1:2], torch.tensor(schedules.AYS_SD1))
    assert float(doubled[1]) == pytest.approx((14.615 * 6.475) ** 0.5, rel=1e-5)


def test_beta_schedule_is_symmetric_for_equal_alpha_beta(model):
    sigmas = schedules.build_sigmas("beta", 9, model=model)[:-1]
    span = model.sigma_max - model.sigma_min
    assert torch.allclose((sigmas - model.sigma_min) + (sigmas.flip(0) - model.sigma_min), torch.tensor(span), rtol=1e-5)
    assert float(sigmas[4]) == pytest.approx(model.sigma_min + span / 2, rel=1e-5)


def test_discard_next_to_last_sigma(model):
    full = schedules.build_sigmas("karras", 11, model=model)
    dropped = schedules.build_sigmas_for_steps("karras", 10, discard_penultimate=True, model=model)
    assert len(dropped) == 11 and dropped[-1] == 0
    assert torch.equal(dropped, torch.cat([full[:-2], full[-1:]]))
    assert torch.equal(sigmas_for(find_sampler("DPM2"), "Automatic", 10, model), dropped)
    assert torch.equal(sigmas_for(find_sampler("DPM2 a"), None, 10, model), dropped)
    three_m = sigmas_for(find_sampler("DPM++ 3M SDE"), "automatic", 10, model)
    assert torch.equal(three_m, schedules.discard_next_to_last(schedules.build_sigmas("exponential", 11, model=model)))
    euler = sigmas_for(find_sampler("Euler"), "Automatic", 10, model, always_discard_next_to_last_sigma=True)
    assert len(euler) == 11 and torch.equal(euler, schedules.discard_next_to_last(model.get_sigmas(11)))


# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("karras", "karras"), ("KARRAS", "karras"), ("SGM Uniform", "sgm_uniform"), ("sgmuniform", "sgm_uniform"),
     ("kl optimal", "kl_optimal"), ("Align Your Steps", "align_your_steps"), (None, "automatic"), ("", "automatic")],
)
def test_schedule_lookup_accepts_id_label_alias_any_case(name, expected):
    assert schedules.find_schedule(name).id == expected


def test_unknown_schedule_is_a_user_error_listing_the_choices():
    with pytest.raises(UserError, match="Unknown schedule type 'Karras2'.*Karras.*Align Your Steps"):
        schedules.find_schedule("Karras2")


# A1111 1.10: what "Automatic" means per sampler (REFERENCE §3); None = the model's uniform grid.
AUTOMATIC = {
    "DPM++ 2M": "karras", "DPM++ SDE": "karras", "DPM++ 2M SDE": "exponential", "DPM++ 2M SDE Heun": "exponential",
    "DPM++ 2S a": "karras", "DPM++ 3M SDE": "exponential", "Euler a": None, "Euler": None, "LMS": None, "Heun": None,
    "DPM2": "karras", "DPM2 a": "karras", "DPM fast": None, "DPM adaptive": None, "Restart": "karras",
    "DDIM": None, "DDIM CFG++": None, "PLMS": None, "UniPC": None, "LCM": None,
}


def test_table_lists_a1111_samplers_in_order_with_their_automatic_schedule():
    assert [row.label for row in SAMPLERS] == list(AUTOMATIC)
    for row in SAMPLERS:
        assert row.default_schedule == AUTOMATIC[row.label], row.label
        assert resolve_schedule(row, "Automatic") == (AUTOMATIC[row.label] or "automatic")
    assert schedule_label(find_sampler("DPM++ 2M"), "automatic") == "Karras"
    assert schedule_label(find_sampler("Euler a"), None) == "Automatic"
    assert resolve_schedule(find_sampler("DPM++ 2M"), "Exponential") == "exponential"
    assert {r.label for r in SAMPLERS if r.discard_next_to_last_sigma} == {"DPM2", "DPM2 a", "DPM++ 3M SDE"}
    assert {r.label for r in SAMPLERS if r.brownian} == {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}
    assert {r.label for r in SAMPLERS if r.uses_ensd} == {"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast", "DPM adaptive"}


@pytest.mark.parametrize(
    "name, label, schedule",
    [("Euler a", "Euler a", None), ("k_euler_a", "Euler a", None), ("K_EULER_ANCESTRAL", "Euler a", None),
     ("dpm++ 2m", "DPM++ 2M", None), ("DPM++ 2M Karras", "DPM++ 2M", "karras"),
     ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "exponential"), ("DPM++ SDE Karras", "DPM++ SDE", "karras"),
     ("Euler SGMUniform", "Euler", "sgm_uniform"), ("k_dpmpp_2m_ka", "DPM++ 2M", "karras"),
     ("k_dpmpp_3m_sde_exp", "DPM++ 3M SDE", "exponential"), ("DPM2 a Karras", "DPM2 a", "karras"),
     ("UniPC", "UniPC", None), (None, "DPM++ 2M", None)],
)
def test_sampler_lookup_splits_names_with_a_schedule(name, label, schedule):
    row, parsed = parse_sampler_name(name)
    assert (row.label, parsed) == (label, schedule)
    assert find_sampler(name).label == label


def test_unknown_sampler_is_a_user_error_listing_the_choices():
    with pytest.raises(UserError, match=r"Unknown sampler 'Euler b'\. Choose one of: DPM\+\+ 2M, .*Euler a"):
        find_sampler("Euler b")
    with pytest.raises(UserError):
        find_sampler("DPM++ 2M Karras2")
