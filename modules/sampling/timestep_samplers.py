"""A1111's timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC) and LCM, rewritten in k-diffusion's sigma space.

A1111 1.10.1 runs DDIM, PLMS and UniPC on the CompVis variance-preserving latent ``x_vp`` with an eps
model called at integer (DDIM, PLMS) or continuous (UniPC) timesteps (`sd_samplers_timesteps_impl.py`,
`models/diffusion/uni_pc/uni_pc.py`). Here every sampler has the shared signature
``sampler(model, x, sigmas, ctx)``: ``x`` is the k-space latent ``x_vp * sqrt(1 + sigma^2)`` and
``model(x, sigma)`` returns the CFG-combined x0 prediction, so ``eps = (x - denoised) / sigma``. The
VP updates translate exactly:

- DDIM, eta 0: ``x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps`` is, divided by ``sqrt(a_prev)``,
  ``x0 + sigma_next * eps`` - Euler's step. DDIM's eta noise is the ancestral split
  ``sigma_up = eta * sigma_next * sqrt(1 - sigma_next^2 / sigma^2)``.
- DDIM CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance"): the same
  step with the guided x0 but the *unconditional* eps, ``x0 + sigma_next * eps_uncond``. Its model is
  an :class:`~modules.sampling.types.UncondDenoiser` (``eps_uncond = (x - last_uncond_x0) / sigma``),
  and its guidance scale is A1111's CFG scale divided by 12.5 (0..12.5 maps to 0..1): the sampler
  row's ``cfg_scale_multiplier``, which the engine applies when it builds the guidance.
- PLMS: Adams-Bashforth on eps over those same Euler steps, with A1111's improved-Euler first step.
- UniPC: the data-prediction B(h) update in ``lambda = -log(sigma)``; the k-space forms of
  ``sigma_t / sigma_s * x`` and ``alpha_t * h_phi_1`` lose their alphas.

Schedules. A1111's DDIM/PLMS grid is ``range(0, 1000, 1000 // steps) + 1``; it runs one step fewer than
that grid has entries (20 steps -> 19 model calls, from t=951 down to t=1) and stops at t=1, not at
zero noise. UniPC ignores the grid except for its length and runs ``steps`` steps on continuous time
from t=999 to t=0 (``time_uniform``), stopping at sigma(t=0) ~ 0.029. The shared contract ends every
schedule at sigma 0, so :func:`ddim_timestep_sigmas` and :func:`unipc_sigmas` replace that last small
sigma with 0 by default (the final step then lands on the x0 prediction); ``end_at_zero=False`` gives
A1111's exact end point. (The "DDIM" *schedule type* for k-diffusion samplers in ``schedules.py`` is
another thing: it keeps t=1 as a step and appends 0, one step more.)

Parity with A1111 beyond the samplers: A1111 starts these samplers from unit VP noise, which in
k-space is ``noise * sqrt(1 + sigmas[0]^2)``, not the contract's ``noise * sigmas[0]`` (0.4% more at
t=951); at ``end_at_zero=False`` the result is still a k-space latent at the last sigma, which A1111
decodes as ``x / sqrt(1 + sigma^2)`` (0.1% less at t=1).

"""

from __future__ import annotations

import math

import torch

from modules.sampling.types import Denoiser, DiscreteSchedule, SamplerContext, StepInfo

UNIPC_VARIANTS = ("bh1", "bh2")


# ---------------------------------------------------------------------------------------------
# Schedules


def _grid(model: DiscreteSchedule) -> torch.Tensor:
    """The model's training sigmas, ascending (index = timestep), in float64 on the CPU."""
    return model.sigmas.detach().to(device="cpu", dtype=torch.float64)


def _as_sigmas(values: torch.Tensor, model: DiscreteSchedule) -> torch.Tensor:
    return values.to(device=model.sigmas.device, dtype=torch.float32)


def a1111_ddim_timesteps(steps: int, train_steps: int = 1000) -> list[int]:
    """A1111's `CompVisSampler.get_timesteps`: ``clip(range(0, 1000, 1000 // steps) + 1, 0, 999)``, ascending.

    The list may be longer than ``steps`` when ``steps`` does not divide 1000 (30 -> 31 entries).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    stride = max(train_steps // steps, 1)
    return [min(t + 1, train_steps - 1) for t in range(0, train_steps, stride)]


def ddim_timestep_sigmas(model: DiscreteSchedule, steps: int, *, end_at_zero: bool = True) -> torch.Tensor:
    """The sigmas DDIM and PLMS walk in A1111: its timestep grid, from the top down.

    ``len(result) - 1`` steps are taken: one fewer than the grid has entries, as in A1111 (20 -> 19).
    A1111 stops at t=1 (``end_at_zero=False``); by default that last sigma is 0. A single step, where
    A1111's grid has one entry and it would not sample at all, runs from t=999.
    """
    grid = _grid(model)
    timesteps = a1111_ddim_timesteps(steps, len(grid))
    if len(timesteps) < 2:
        timesteps = [timesteps[0], len(grid) - 1]
    sigmas = grid[torch.tensor(timesteps[::-1])]
    if end_at_zero:
        sigmas[-1] = 0.0
    return _as_sigmas(sigmas, model)


def unipc_sigmas(model: DiscreteSchedule, steps: int, *, end_at_zero: bool = True, start_index: int | None = None) -> torch.Tensor:
    """A1111's UniPC grid (``time_uniform``): ``steps`` intervals of model time from 999 (or
    `start_index`, where an img2img pass starts: modules/sampling/partial.py) to 0.

    UniPC's noise schedule interpolates ``log(alphas_cumprod)`` linearly between integer timesteps
    (not log-sigma, as k-diffusion does); the sigma at each point is ``sqrt(1 / alphas_cumprod - 1)``.
    A1111 ends at t=0 (sigma ~ 0.029, ``end_at_zero=False``); by default that last sigma is 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    log_ac = -torch.log1p(_grid(model) ** 2)
    n = len(log_ac)
    top = n - 1 if start_index is None else min(max(start_index, 0), n - 1)
    t = torch.linspace(top, 0, steps + 1, dtype=torch.float64)
    low = t.floor().long().clamp(max=n - 2)
    w = t - low
    log_a = (1 - w) * log_ac[low] + w * log_ac[low + 1]
    sigmas = torch.expm1(-log_a).sqrt()
    if end_at_zero:
        sigmas[-1] = 0.0
    return _as_sigmas(sigmas, model)


def lcm_sigmas(model: DiscreteSchedule, steps: int, original_steps: int = 50) -> torch.Tensor:
    """A1111's LCM schedule (`LCMCompVisDenoiser.get_sigmas`): ``steps`` sigmas spread over LCM's
    ``original_steps`` training timesteps (19, 39, ..., 999 for 50), log-linear between them, then 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    grid = _grid(model)
    n = len(grid)
    skip = n // original_steps
    log_sigmas = grid[torch.arange(n - 1 - (original_steps - 1) * skip, n, skip)].log()
    idx = torch.linspace(original_steps - 1, 0, steps, dtype=torch.float64)
    low, high = idx.floor().long(), idx.ceil().long()
    w = idx - low
    sigmas = ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()
    return _as_sigmas(torch.cat([sigmas, sigmas.new_zeros(1)]), model)


# ---------------------------------------------------------------------------------------------
# Samplers


def _denoise(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
    """The model's x0 for ``x`` at ``sigmas[i]``, one sigma per image as k-diffusion passes it."""
    return model(x, sigmas[i] * x.new_ones([x.shape[0]]))


def _report(ctx: SamplerContext, sigmas: torch.Tensor, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if ctx.callback is not None:
        ctx.callback(StepInfo(i, len(sigmas) - 1, x, sigmas[i], sigmas[i + 1], denoised))


def _noise(ctx: SamplerContext, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
    """Standard normal noise for the step from ``sigmas[i]`` to ``sigmas[i + 1]``."""
    if ctx.noise is None:
        return torch.randn_like(x)
    return ctx.noise(x, sigmas[i], sigmas[i + 1])


@torch.no_grad()
def sample_ddim(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """A1111's DDIM. With ``ctx.eta`` 0 (A1111's default) this is Euler; above 0 it adds ``ctx.noise``.

    DDIM's per-step noise ``eta * sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))`` is, in k-space,
    ``eta * sigma_next * sqrt(1 - sigma_next^2 / sigma^2)``; the deterministic part keeps the rest
    of ``sigma_next`` along the predicted eps.
    """
    return _ddim(model, x, sigmas, ctx, along_uncond=False)


@torch.no_grad()
def sample_ddim_cfgpp(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """A1111's DDIM CFG++: DDIM's step from the guided x0, continued along the unconditional eps.

    ``model`` must keep the unconditional x0 of each call (``last_uncond_x0``: an
    :class:`~modules.sampling.types.UncondDenoiser`; any other Denoiser gets a TypeError), and its guidance
    scale is the user's CFG scale divided by 12.5 (the sampler row says both; the engine does them).
    Eta works as in DDIM. With the same prompt as negative prompt this is DDIM.
    """
    return _ddim(model, x, sigmas, ctx, along_uncond=True)


def _uncond_x0(model: Denoiser, x: torch.Tensor) -> torch.Tensor:
    """The unconditional x0 the model kept from its latest call, or a TypeError saying what is missing."""
    x0 = getattr(model, "last_uncond_x0", None)
    if x0 is None or x0.shape != x.shape:
        raise TypeError(
            f"DDIM CFG++ steps along the unconditional prediction, but {type(model).__name__} kept none for this "
            "call: its model must be an UncondDenoiser (the engine's guidance built for a row with needs_uncond)."
        )
    return x0


def _ddim(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext, along_uncond: bool) -> torch.Tensor:
    """DDIM's loop; ``along_uncond``: CFG++, the step's direction is the unconditional eps."""
    sig = sigmas.tolist()
    n = len(sig) - 1
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(model, x, sigmas, i)
        _report(ctx, sigmas, i, x, denoised)
        eps = (x - (_uncond_x0(model, x) if along_uncond else denoised)) / sigma
        sigma_up = 0.0
        if ctx.eta > 0 and sigma_next > 0:
            sigma_up = min(sigma_next, ctx.eta * sigma_next * math.sqrt(max(1.0 - sigma_next**2 / sigma**2, 0.0)))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x = denoised + sigma_down * eps
        if sigma_up > 0:
            x = x + sigma_up * _noise(ctx, x, sigmas, i)
    return x


# Adams-Bashforth weights on eps, newest first, by how many earlier eps there are.
_PLMS_WEIGHTS = {1: (3 / 2, -1 / 2), 2: (23 / 12, -16 / 12, 5 / 12), 3: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


@torch.no_grad()
def sample_plms(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """A1111's PLMS: Adams-Bashforth up to 4th order on eps, each step an Euler (DDIM eta 0) step.

    The first step has no history, so - as in A1111 - it takes an improved-Euler step: a trial step
    to the next sigma, a second model call there, and the mean of the two eps (two model calls). The
    history keeps the raw eps of each step; the callback gets the x0 of the combined eps. When the
    first step already ends at sigma 0 there is nothing to evaluate there, and it stays an Euler step.
    """
    sig = sigmas.tolist()
    n = len(sig) - 1
    old_eps: list[torch.Tensor] = []
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        eps = (x - _denoise(model, x, sigmas, i)) / sigma
        if not old_eps:
            eps_prime = eps
            if sigma_next > 0:
                x_trial = x + (sigma_next - sigma) * eps
                eps_next = (x_trial - _denoise(model, x_trial, sigmas, i + 1)) / sigma_next
                eps_prime = (eps + eps_next) / 2
        else:
            weights = _PLMS_WEIGHTS[len(old_eps)]
            eps_prime = weights[0] * eps
            for weight, old in zip(weights[1:], reversed(old_eps)):
                eps_prime = eps_prime + weight * old
        denoised = x - sigma * eps_prime
        _report(ctx, sigmas, i, x, denoised)
        old_eps = (old_eps + [eps])[-3:]
        x = denoised + sigma_next * eps_prime
    return x


def _unipc_coefficients(rks: list[float], h: float, order: int, variant: str) -> tuple[float, list[float], list[float]]:
    """B(h), the predictor's and the corrector's rhos for one UniPC step (UniPC's ``R rho = b``).

    ``rks`` are the earlier points' ``(lambda_k - lambda_s) / h``, newest first, then 1 for the target.
    """
    hh = -h  # data prediction
    h_phi_k = math.expm1(hh) / hh - 1
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rows, b = [], []
    factorial = 1
    for i in range(1, order + 1):
        rows.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R = torch.tensor(rows, dtype=torch.float64)
    B = torch.tensor(b, dtype=torch.float64)
    rhos_p: list[float]
    if order == 1:
        rhos_p, rhos_c = [], [0.5]
    else:
        rhos_p = [0.5] if order == 2 else torch.linalg.solve(R[:-1, :-1], B[:-1]).tolist()
        rhos_c = torch.linalg.solve(R, B).tolist()
    return b_h, rhos_p, rhos_c


def _unipc_update(
    x: torch.Tensor,
    history: list[tuple[torch.Tensor, float]],
    sigma: float,
    sigma_next: float,
    order: int,
    variant: str,
    corrector_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """One UniPC step from ``sigma`` to ``sigma_next`` on the newest ``order`` x0 predictions.

    Without ``corrector_target`` this is the predictor UniP; with it (the x0 predicted at the
    predictor's result) it is the corrector UniC of the same step, which starts again from ``x``.
    """
    m0, lam0 = history[-1]
    h = math.log(sigma / sigma_next)  # lambda_next - lambda, lambda = -log(sigma)
    rks = [(lam_k - lam0) / h for _, lam_k in reversed(history[-order:-1])]
    d1s = [(m_k - m0) / r for (m_k, _), r in zip(reversed(history[-order:-1]), rks)]
    b_h, rhos_p, rhos_c = _unipc_coefficients(rks + [1.0], h, order, variant)
    ratio = sigma_next / sigma
    x_next = ratio * x + (1 - ratio) * m0
    rhos = rhos_p if corrector_target is None else rhos_c[:-1]
    residual = sum((rho * d for rho, d in zip(rhos, d1s)), torch.zeros_like(x))
    if corrector_target is not None:
        residual = residual + rhos_c[-1] * (corrector_target - m0)
    return x_next - b_h * residual


@torch.no_grad()
def sample_unipc(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    ctx: SamplerContext,
    *,
    order: int = 3,
    variant: str = "bh1",
    lower_order_final: bool = True,
) -> torch.Tensor:
    """UniPC (multistep, data prediction), A1111's defaults: order 3, variant ``bh1``, lower order final.

    Each step calls the model once: at step i the model's x0 at the predictor's point corrects the
    previous step (UniC) and then drives the next predictor (UniP); the final step uses no corrector.
    The first steps warm up at order 1, 2, ...; with ``lower_order_final`` the last steps drop to
    orders 2 and 1, and a step onto sigma 0 always lands on the x0 prediction (order 1).
    """
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"UniPC variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}")
    if order < 1:
        raise ValueError(f"UniPC order must be at least 1, got {order}")
    sig = sigmas.tolist()
    n = len(sig) - 1
    history: list[tuple[torch.Tensor, float]] = []  # (x0 prediction, lambda), oldest first
    x_before = x
    last_order = 0
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(model, x, sigmas, i)
        if last_order:
            x = _unipc_update(x_before, history, sig[i - 1], sigma, last_order, variant, corrector_target=denoised)
        _report(ctx, sigmas, i, x, denoised)
        history = (history + [(denoised, -math.log(sigma))])[-order:]
        if sigma_next == 0:
            x = denoised
            last_order = 0
            continue
        last_order = min(order, len(history), n - i) if lower_order_final else min(order, len(history))
        x_before = x
        x = _unipc_update(x, history, sigma, sigma_next, last_order, variant)
    return x


@torch.no_grad()
def sample_lcm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ctx: SamplerContext) -> torch.Tensor:
    """A1111's LCM sampler: take the model's x0, then noise it afresh up to the next sigma."""
    sig = sigmas.tolist()
    n = len(sig) - 1
    for i in range(n):
        denoised = _denoise(model, x, sigmas, i)
        _report(ctx, sigmas, i, x, denoised)
        x = denoised
        if sig[i + 1] > 0:
            x = x + sig[i + 1] * _noise(ctx, x, sigmas, i)
    return x
