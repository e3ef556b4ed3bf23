"""Our k-diffusion samplers and denoiser against k-diffusion itself (the test-only reference).

A tiny seeded UNet, wrapped as eps(x, t, c), runs under classifier-free guidance through our
`DiscreteDenoiser` + sampler and through k-diffusion's `DiscreteEpsDDPMDenoiser` + sampler, from the
same start noise over the same sigmas with the same noise (a seeded generator sequence for ancestral
steps, Brownian trees with the same seeds for SDE steps). The final latents must agree to 1e-4
relative (in practice they agree to float rounding: bench/sampler_parity.py prints the measured
differences). Then every row of the sampler table, on an exact toy denoiser: it runs, is
deterministic, per-image and interruptible; a broken row fails here, it is never skipped.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from modules.sampling import k_samplers, k_samplers_extra, schedules
from modules.sampling.brownian import BrownianNoise
from modules.sampling.denoiser import DiscreteDenoiser
from modules.sampling.sampler_table import SAMPLERS, SamplerSpec, find_sampler, sampler_labels, sigmas_for
from modules.sampling.types import SamplerContext, StepInfo
from tests.kdiffusion_reference import load

STEPS = 10
CFG = 7.0
SEEDS = [1234, 98765]
TOLERANCE = 1e-4

# torchsde warns when a query point lies a rounding error outside the tree's interval; k-diffusion
# (and A1111) query the same points, so the warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Should have t:UserWarning")


def sd_alphas_cumprod() -> torch.Tensor:
    """SD's scaled-linear training schedule (beta 0.00085 -> 0.012 over 1000 steps)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


@pytest.fixture(scope="module")
def kd():
    return load()


def tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    model = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=2,
    )
    return model.eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def parity_setup(kd, unet):
    """(ours, theirs, start noise, conditioning): both denoisers wrap the same eps function."""
    _, external = kd
    generator = torch.Generator().manual_seed(7)
    cond = torch.randn(2, 3, 16, generator=generator)
    uncond = torch.randn(2, 3, 16, generator=generator)
    noise = torch.randn(2, 4, 8, 8, generator=generator)

    def eps(x, t, c):
        return unet(x, t, encoder_hidden_states=c).sample

    ours = DiscreteDenoiser(eps, sd_alphas_cumprod())
    theirs = external.DiscreteEpsDDPMDenoiser(eps, sd_alphas_cumprod(), quantize=False)
    return ours, theirs, noise, (cond, uncond)


@pytest.fixture(scope="module")
def setup(kd, unet):
    return parity_setup(kd, unet)


def guided(denoiser, conds):
    """Classifier-free guidance as A1111 batches it: [cond, uncond] in one call."""
    cond, uncond = conds

    def model(x, sigma):
        out_cond, out_uncond = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), c=torch.cat([cond, uncond])).chunk(2)
        return out_uncond + (out_cond - out_uncond) * CFG

    model.sigma_min, model.sigma_max = float(denoiser.sigmas[0]), float(denoiser.sigmas[-1])
    return model


def seeded_noise(seed: int):
    """The same normal sequence for both: ours (x, sigma, sigma_next), theirs (sigma, sigma_next)."""
    ours_gen, theirs_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    ours = lambda x, sigma, sigma_next: torch.randn(x.shape, generator=ours_gen)  # noqa: E731
    theirs_shape = {}
    theirs = lambda sigma, sigma_next: torch.randn(theirs_shape["shape"], generator=theirs_gen)  # noqa: E731
    return ours, theirs, theirs_shape


# (our function, k-diffusion function name, noise kind, schedule, discard next-to-last, extra k kwargs)
CASES = {
    "Euler": (k_samplers.sample_euler, "sample_euler", None, "uniform", False, {}),
    "Euler a": (k_samplers.sample_euler_ancestral, "sample_euler_ancestral", "ancestral", "uniform", False, {}),
    "Heun": (k_samplers.sample_heun, "sample_heun", None, "uniform", False, {}),
    "LMS": (k_samplers.sample_lms, "sample_lms", None, "uniform", False, {}),
    "DPM2": (k_samplers.sample_dpm_2, "sample_dpm_2", None, "karras", True, {}),
    "DPM2 a": (k_samplers.sample_dpm_2_ancestral, "sample_dpm_2_ancestral", "ancestral", "karras", True, {}),
    "DPM++ 2S a": (k_samplers.sample_dpmpp_2s_ancestral, "sample_dpmpp_2s_ancestral", "ancestral", "karras", False, {}),
    "DPM++ 2M": (k_samplers.sample_dpmpp_2m, "sample_dpmpp_2m", None, "karras", False, {}),
    "DPM++ 2M (uniform)": (k_samplers.sample_dpmpp_2m, "sample_dpmpp_2m", None, "uniform", False, {}),
    "DPM++ SDE": (k_samplers.sample_dpmpp_sde, "sample_dpmpp_sde", "brownian", "karras", False, {}),
    "DPM++ 2M SDE": (k_samplers.sample_dpmpp_2m_sde, "sample_dpmpp_2m_sde", "brownian", "karras", False, {}),
    "DPM++ 2M SDE (exponential)": (k_samplers.sample_dpmpp_2m_sde, "sample_dpmpp_2m_sde", "brownian", "exponential", False, {}),
    "DPM++ 2M SDE Heun": (
        k_samplers.sample_dpmpp_2m_sde_heun, "sample_dpmpp_2m_sde", "brownian", "exponential", False, {"solver_type": "heun"}
    ),
    "DPM++ 3M SDE": (k_samplers.sample_dpmpp_3m_sde, "sample_dpmpp_3m_sde", "brownian", "exponential", True, {}),
    "DPM fast": (k_samplers_extra.sample_dpm_fast, "sample_dpm_fast", "ancestral", "uniform", False, {}),
}

def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def run_both(kd, setup, our_fn, k_name, noise_kind, schedule, discard, k_kwargs, steps=STEPS, eta=1.0):
    sampling, _ = kd
    ours_den, theirs_den, noise, conds = setup
    sigmas = schedules.build_sigmas_for_steps(schedule, steps, discard_penultimate=discard, model=ours_den)
    x = noise * sigmas[0]
    steps_seen: list[int] = []
    ctx = SamplerContext(callback=lambda info: steps_seen.append(info.index), eta=eta)
    k_args: dict = dict(k_kwargs)
    if noise_kind == "ancestral":
        ctx.noise, k_args["noise_sampler"], shape = seeded_noise(42)
        shape["shape"] = x.shape
    elif noise_kind == "brownian":
        ctx.seeds = list(SEEDS)
        k_args["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=list(SEEDS))
    k_fn = getattr(sampling, k_name)
    if k_name in ("sample_dpm_fast", "sample_dpm_adaptive"):
        k_args.update(sigma_min=float(sigmas[-2]), sigma_max=float(sigmas[0]), eta=eta)
        if k_name == "sample_dpm_fast":
            k_args["n"] = len(sigmas) - 1
        theirs = k_fn(guided(theirs_den, conds), x, disable=True, **k_args)
    else:
        if "eta" in inspect.signature(k_fn).parameters:
            k_args["eta"] = eta
        theirs = k_fn(guided(theirs_den, conds), x, sigmas, disable=True, **k_args)
    with torch.no_grad():
        ours = our_fn(guided(ours_den, conds), x, sigmas, ctx)
    return ours, theirs, steps_seen


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_matches_kdiffusion(kd, setup, name):
    our_fn, k_name, noise_kind, schedule, discard, k_kwargs = CASES[name]
    ours, theirs, steps_seen = run_both(kd, setup, our_fn, k_name, noise_kind, schedule, discard, k_kwargs)
    difference = relative_difference(ours, theirs)
    assert torch.isfinite(ours).all()
    assert difference < TOLERANCE, f"{name} differs from k-diffusion by {difference:.2e}"
    assert steps_seen == list(range(len(steps_seen))) and len(steps_seen) > 0


def test_dpm_adaptive_matches_kdiffusion(kd, setup):
    ours, theirs, steps_seen = run_both(
        kd, setup, k_samplers_extra.sample_dpm_adaptive, "sample_dpm_adaptive", "ancestral", "uniform", False, {}
    )
    assert relative_difference(ours, theirs) < TOLERANCE
    assert len(steps_seen) > 0


def test_eta_zero_ancestral_matches_kdiffusion(kd, setup):
    """eta 0 turns Euler a into Euler-like steps without noise; both must agree there too."""
    our_fn, k_name, noise_kind, schedule, discard, k_kwargs = CASES["Euler a"]
    ours, theirs, _ = run_both(kd, setup, our_fn, k_name, noise_kind, schedule, discard, k_kwargs, eta=0.0)
    assert relative_difference(ours, theirs) < TOLERANCE


@pytest.mark.parametrize("name", ["Euler", "Heun", "DPM2"])
def test_churn_matches_kdiffusion(kd, setup, name):
    """Karras churn (A1111's sigma churn / tmin / tmax / noise): k-diffusion draws the churn noise
    with torch.randn_like every step; our draws come from the context, here the same global stream."""
    sampling, _ = kd
    our_fn, k_name, _, schedule, discard, _ = CASES[name]
    ours_den, theirs_den, noise, conds = setup
    sigmas = schedules.build_sigmas_for_steps(schedule, STEPS, discard_penultimate=discard, model=ours_den)
    x = noise * sigmas[0]
    settings = dict(s_churn=2.0, s_tmin=0.1, s_tmax=5.0, s_noise=1.003)
    with torch.random.fork_rng():
        torch.manual_seed(99)
        theirs = getattr(sampling, k_name)(guided(theirs_den, conds), x, sigmas, disable=True, **settings)
        torch.manual_seed(99)
        ctx = SamplerContext(noise=lambda x, sigma, sigma_next: torch.randn_like(x), **settings)
        with torch.no_grad():
            ours = our_fn(guided(ours_den, conds), x, sigmas, ctx)
    plain, _, _ = run_both(kd, setup, our_fn, k_name, None, schedule, discard, {})
    assert relative_difference(ours, theirs) < TOLERANCE
    assert relative_difference(ours, plain) > 1e-3  # churn did change the result


def test_img2img_tail_uses_the_full_schedules_brownian_tree(kd, setup):
    """A1111 builds the Brownian tree over the whole schedule even when img2img samples its tail."""
    sampling, _ = kd
    ours_den, theirs_den, noise, conds = setup
    sigmas = schedules.build_sigmas("exponential", 12, model=ours_den)
    tail = sigmas[5:]
    x = noise * tail[0]
    full_range = (float(sigmas[sigmas > 0].min()), float(sigmas.max()))
    tree = sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=list(SEEDS))
    theirs = sampling.sample_dpmpp_2m_sde(guided(theirs_den, conds), x, tail, disable=True, noise_sampler=tree)
    ctx = SamplerContext(seeds=list(SEEDS), noise_range=full_range)
    with torch.no_grad():
        ours = k_samplers.sample_dpmpp_2m_sde(guided(ours_den, conds), x, tail, ctx)
        narrow = k_samplers.sample_dpmpp_2m_sde(guided(ours_den, conds), x, tail, SamplerContext(seeds=list(SEEDS)))
    assert relative_difference(ours, theirs) < TOLERANCE
    assert relative_difference(narrow, theirs) > 1e-3


def test_lms_coefficients_match_scipy_quadrature(kd):
    sampling, _ = kd
    sigmas = schedules.build_sigmas("karras", 12, sigma_min=0.0292, sigma_max=14.6146).numpy()
    for i in range(len(sigmas) - 1):
        order = min(i + 1, 4)
        for j in range(order):
            ours = k_samplers.lms_coefficient(order, sigmas, i, j)
            theirs = sampling.linear_multistep_coeff(order, sigmas, i, j)
            assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)


def test_brownian_noise_matches_kdiffusion(kd):
    sampling, _ = kd
    x = torch.zeros(2, 4, 8, 8)
    sigmas = schedules.build_sigmas("exponential", 6, sigma_min=0.0292, sigma_max=14.6146)
    ours = BrownianNoise(x, sigmas[sigmas > 0].min(), sigmas.max(), SEEDS)
    theirs = sampling.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=SEEDS)
    for i in range(len(sigmas) - 2):
        a, b = ours(x, sigmas[i], sigmas[i + 1]), theirs(sigmas[i], sigmas[i + 1])
        assert torch.equal(a, b)
        assert 0.5 < float(a.std()) < 1.5  # unit variance increments


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_denoiser_matches_kdiffusion(kd, prediction_type):
    _, external = kd
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 4, generator=generator)

    def model(x, t, scale):
        return torch.einsum("bchw,cd->bdhw", x, weight) * scale + t[:, None, None, None] / 1000

    reference_class = external.DiscreteEpsDDPMDenoiser if prediction_type == "epsilon" else external.DiscreteVDDPMDenoiser
    ours = DiscreteDenoiser(model, sd_alphas_cumprod(), prediction_type)
    theirs = reference_class(model, sd_alphas_cumprod(), quantize=False)
    sigma = torch.tensor([0.01, 0.0292, 0.5, 1.0, 3.3, 14.6146, 20.0])
    assert torch.equal(ours.sigma_to_t(sigma), theirs.sigma_to_t(sigma))
    assert torch.equal(ours.sigma_to_t(sigma, quantize=True), theirs.sigma_to_t(sigma, quantize=True))
    t = torch.tensor([0.0, 0.5, 17.25, 500.0, 998.9, 999.0])
    assert torch.equal(ours.t_to_sigma(t), theirs.t_to_sigma(t))
    assert torch.equal(ours.get_sigmas(7), theirs.get_sigmas(7))
    assert ours.sigma_min == pytest.approx(float(theirs.sigma_min)) and ours.sigma_max == pytest.approx(float(theirs.sigma_max))
    x = torch.randn(len(sigma), 4, 2, 2, generator=generator)
    assert torch.equal(ours(x, sigma, scale=0.3), theirs(x, sigma, scale=0.3))


# -- every row of the sampler table: deterministic, per-image, interruptible, sane ----------------

MU, SPREAD = 0.5, 0.5


class GaussianData:
    """The exact denoiser for data ~ N(MU, SPREAD²) per element: cheap, smooth and batch-independent,
    and the probability-flow ODE maps start noise to samples with that mean and spread.

    It is also an UncondDenoiser with no guidance: its unconditional x0 is its x0 (as A1111 fills in
    the uncond when it skips it), so DDIM CFG++ steps as DDIM here; test_timestep_samplers.py checks
    CFG++ itself against A1111's loop."""

    def __init__(self, grid: DiscreteDenoiser):
        self.sigma_min, self.sigma_max = grid.sigma_min, grid.sigma_max
        self.calls = 0
        self.last_uncond_x0: torch.Tensor | None = None

    def __call__(self, x, sigma):
        self.calls += 1
        s2 = sigma[:, None, None, None] ** 2
        self.last_uncond_x0 = (SPREAD**2 * x + s2 * MU) / (SPREAD**2 + s2)
        return self.last_uncond_x0


def per_image_noise(seeds):
    """Ancestral noise from one generator per image (offset so it is not the start noise)."""
    generators = [torch.Generator().manual_seed(seed + 1000) for seed in seeds]
    return lambda x, sigma, sigma_next: torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators])


def run_row(row: SamplerSpec, seeds: list[int], steps: int = 12, callback=None):
    grid = DiscreteDenoiser(lambda x, t: x, sd_alphas_cumprod())
    sigmas = sigmas_for(row, "Automatic", steps, grid)
    x = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    eta = 1.0 if row.eta_default is None else row.eta_default
    ctx = SamplerContext(callback=callback, noise=per_image_noise(seeds), eta=eta, s_noise=1.0, seeds=list(seeds))
    model = GaussianData(grid)
    return row.run(model, x * sigmas[0], sigmas, ctx), sigmas, model


ROWS = [pytest.param(row, id=row.label) for row in SAMPLERS]


@pytest.mark.parametrize("row", ROWS)
def test_every_sampler_is_deterministic_and_reports_each_step(row):
    infos: list[StepInfo] = []
    first, sigmas, model = run_row(row, [5, 6], callback=infos.append)
    again, _, _ = run_row(row, [5, 6])
    assert torch.equal(first, again)
    assert torch.isfinite(first).all()
    # the x0 preview each step: one report per step, in order, after at least one model call each
    assert [info.index for info in infos] == list(range(len(infos)))
    assert 0 < len(infos) <= model.calls
    if row.label != "DPM adaptive":  # adaptive chooses its own step count
        assert len(infos) == infos[0].total
    assert all(info.denoised.shape == first.shape for info in infos)
    # the sampler actually denoised: samples of N(MU, SPREAD²)
    assert abs(float(first.mean()) - MU) < 0.1
    assert 0.25 < float(first.std()) < 0.7


@pytest.mark.parametrize("row", ROWS)
def test_every_sampler_gives_an_image_independent_of_its_batch(row):
    if row.label == "DPM adaptive":
        pytest.skip("its step size control measures the error over the whole batch (as in k-diffusion)")
    batch, _, _ = run_row(row, [5, 6])
    alone, _, _ = run_row(row, [5])
    assert torch.allclose(batch[:1], alone, atol=1e-6)


class Stop(Exception):
    pass


@pytest.mark.parametrize("row", ROWS)
def test_an_exception_from_the_callback_stops_the_sampler(row):
    seen: list[int] = []

    def callback(info: StepInfo) -> None:
        seen.append(info.index)
        if info.index == 2:
            raise Stop

    with pytest.raises(Stop):
        run_row(row, [5], callback=callback)
    assert seen == [0, 1, 2]


def test_settings_a1111_does_not_pass_are_neutral():
    """A1111 hands "sigma noise" only to some samplers: Euler a ignores it, DPM++ 2S a uses it."""
    euler_a = next(r for r in SAMPLERS if r.label == "Euler a")
    two_s = next(r for r in SAMPLERS if r.label == "DPM++ 2S a")
    ctx = SamplerContext(s_noise=0.5, s_churn=1.0)
    assert euler_a.context_for(ctx).s_noise == 1.0 and euler_a.context_for(ctx).s_churn == 0.0
    assert two_s.context_for(ctx).s_noise == 0.5
    euler = next(r for r in SAMPLERS if r.label == "Euler")
    assert euler.context_for(ctx).s_churn == 1.0


def test_every_row_has_its_function_and_is_listed():
    """No row can hide: each names a callable sampler, is listed for the UI and /samplers, and runs
    (the row tests above run every row; none is skipped)."""
    assert sampler_labels() == [row.label for row in SAMPLERS]
    for row in SAMPLERS:
        assert callable(row.function), row.label
        assert row.function.__module__ in ("modules.sampling.k_samplers", "modules.sampling.k_samplers_extra", "modules.sampling.timestep_samplers"), row.label
        assert row.own_grid is None or callable(row.own_grid)
        assert row.automatic_grid is None or callable(row.automatic_grid)
        assert find_sampler(row.label) is row and all(find_sampler(alias) is row for alias in row.aliases)
