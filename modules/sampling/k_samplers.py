"""The k-diffusion family of samplers, as A1111 1.10 runs them.

Every function here is a :data:`~modules.sampling.types.SamplerFn` and follows the algorithm of
the k-diffusion function it is named after (Katherine Crowson's k-diffusion, `sampling.py`, the
version A1111 pins), operation for operation, so results agree with it to float rounding. Two
A1111 details are built in: the ODE derivative is ``(x - x0) / sigma``, and every random draw
k-diffusion makes with ``torch.randn_like`` comes from the context's noise source (A1111 routes
those draws to its per-image generators). DPM fast, DPM adaptive and Restart, which choose their
own steps, are in k_samplers_extra.py.

Ancestral samplers split each step into a deterministic move down to ``sigma_down`` and fresh
noise of size ``sigma_up`` (``get_ancestral_step``); SDE samplers draw their noise from a Brownian
tree per image (``ctx.seeds``) so the noise between two sigmas does not depend on the step count.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from modules.sampling.brownian import brownian_for
from modules.sampling.types import Denoiser, NoiseSource, SamplerContext, StepInfo

# -- shared pieces ---------------------------------------------------------------------------------


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The probability-flow ODE derivative dx/dsigma for a scalar sigma."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor | float]:
    """(sigma_down, sigma_up): where the deterministic part of an ancestral step lands and how much
    fresh noise brings it back to ``sigma_to`` (sigma_down² + sigma_up² = sigma_to²)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def noise_source(ctx: SamplerContext) -> NoiseSource:
    if ctx.noise is not None:
        return ctx.noise
    return lambda x, sigma, sigma_next: torch.randn_like(x)


def _sde_noise(x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> NoiseSource:
    """Brownian trees from the per-image seeds; without seeds, the plain noise source."""
    if ctx.seeds:
        return brownian_for(x, sigmas, ctx.seeds, ctx.noise_range)
    return noise_source(ctx)


def report_step(ctx: SamplerContext, i: int, total: int, x: Tensor, sigma: Tensor, sigma_next: Tensor, denoised: Tensor) -> None:
    if ctx.callback is not None:
        ctx.callback(StepInfo(i, total, x, sigma, sigma_next, denoised))


def _churned(x: Tensor, sigmas: Tensor, i: int, ctx: SamplerContext) -> tuple[Tensor, Tensor]:
    """Karras's churn: raise sigma by gamma and add the matching noise (no-op with s_churn 0).
    k-diffusion draws the churn noise every step; so does this, but only when churn is on, since
    with churn off no draw is ever used."""
    steps = len(sigmas) - 1
    gamma = min(ctx.s_churn / steps, 2**0.5 - 1) if ctx.s_tmin <= sigmas[i] <= ctx.s_tmax else 0.0
    sigma_hat = sigmas[i] * (gamma + 1)
    if ctx.s_churn > 0:
        eps = noise_source(ctx)(x, sigmas[i], sigma_hat) * ctx.s_noise
        if gamma > 0:
            x = x + eps * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


def ones_like_batch(x: Tensor) -> Tensor:
    return x.new_ones([x.shape[0]])


# -- Euler, Heun, DPM2 and their ancestral versions -------------------------------------------------


@torch.no_grad()
def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2)."""
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Euler a: an Euler step down to sigma_down, then fresh noise up to the next sigma."""
    noise, s_in, total = noise_source(ctx), ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Heun's second-order method (Karras et al. 2022); the last step to 0 is plain Euler."""
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver-2 style midpoint steps (the midpoint taken in log-sigma)."""
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM2 a: a DPM2 step down to sigma_down, then fresh noise."""
    noise, s_in, total = noise_source(ctx), ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


# -- linear multistep ------------------------------------------------------------------------------

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(4)  # exact for degree <= 7


def lms_coefficient(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t[i], t[i+1]] of the Lagrange basis polynomial for node t[i-j] on the nodes
    t[i], t[i-1], ..., t[i-order+1]. The integrand has degree < 4, so 4-point Gauss-Legendre is
    exact; it agrees with k-diffusion's adaptive quadrature to rounding."""
    if order - 1 > i:
        raise ValueError(f"Order {order} too high for step {i}")
    a, b = float(t[i]), float(t[i + 1])
    tau = (b - a) / 2 * _GAUSS_NODES + (a + b) / 2
    prod = np.ones_like(tau)
    for k in range(order):
        if k != j:
            prod = prod * (tau - t[i - k]) / (t[i - j] - t[i - k])
    return float((b - a) / 2 * np.sum(_GAUSS_WEIGHTS * prod))


@torch.no_grad()
def sample_lms(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext, order: int = 4) -> Tensor:
    """Linear multistep: the last ``order`` derivatives extrapolated by a Lagrange polynomial."""
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    sigmas_cpu = sigmas.detach().cpu().numpy().astype(np.float64)
    ds: list[Tensor] = []
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        cur_order = min(i + 1, order)
        coeffs = [lms_coefficient(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x


# -- DPM-Solver++ ----------------------------------------------------------------------------------


def log_t(sigma: Tensor) -> Tensor:
    return sigma.log().neg()


def sigma_of_t(t: Tensor) -> Tensor:
    return t.neg().exp()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver++(2S) single-step second order, ancestral."""
    noise, s_in, total = noise_source(ctx), ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = log_t(sigmas[i]), log_t(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (sigma_of_t(s) / sigma_of_t(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, sigma_of_t(s) * s_in)
            x = (sigma_of_t(t_next) / sigma_of_t(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext, r: float = 1 / 2) -> Tensor:
    """DPM-Solver++ stochastic: two half steps per step, each with Brownian noise."""
    noise = _sde_noise(x, sigmas, ctx)
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = log_t(sigmas[i]), log_t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # 1. to the intermediate point s
        sd, su = ancestral_step(sigma_of_t(t), sigma_of_t(s), ctx.eta)
        s_ = log_t(sd)
        x_2 = (sigma_of_t(s_) / sigma_of_t(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise(x, sigma_of_t(t), sigma_of_t(s)) * ctx.s_noise * su
        denoised_2 = model(x_2, sigma_of_t(s) * s_in)
        # 2. the full step with the blended prediction
        sd, su = ancestral_step(sigma_of_t(t), sigma_of_t(t_next), ctx.eta)
        t_next_ = log_t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_of_t(t_next_) / sigma_of_t(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise(x, sigma_of_t(t), sigma_of_t(t_next)) * ctx.s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver++(2M): second-order multistep using the previous step's prediction."""
    s_in, total = ones_like_batch(x), len(sigmas) - 1
    old_denoised = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        t, t_next = log_t(sigmas[i]), log_t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_of_t(t_next) / sigma_of_t(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - log_t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_of_t(t_next) / sigma_of_t(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext, solver_type: str = "midpoint"
) -> Tensor:
    """DPM-Solver++(2M) SDE; ``solver_type`` "midpoint" (DPM++ 2M SDE) or "heun" (… SDE Heun)."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    noise = _sde_noise(x, sigmas, ctx)
    s_in, total, eta = ones_like_batch(x), len(sigmas) - 1, ctx.eta
    old_denoised: Tensor | None = None
    h_last: Tensor | None = None
    h: Tensor | None = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                assert h_last is not None  # sigma 0 only ends a schedule, so the step before set h
                r = h_last / h
                if solver_type == "heun":
                    x = x + ((-h - eta_h).expm1().neg() / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise(x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * ctx.s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM++ 2M SDE with the Heun-type correction (A1111's "DPM++ 2M SDE Heun")."""
    return sample_dpmpp_2m_sde(model, x, sigmas, ctx, solver_type="heun")


@torch.no_grad()
def sample_dpmpp_3m_sde(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with Brownian noise."""
    noise = _sde_noise(x, sigmas, ctx)
    s_in, total, eta = ones_like_batch(x), len(sigmas) - 1, ctx.eta
    denoised_1: Tensor | None = None
    denoised_2: Tensor | None = None
    h: Tensor | None = None
    h_1: Tensor | None = None
    h_2: Tensor | None = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        report_step(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                assert h_1 is not None and denoised_1 is not None and denoised_2 is not None  # set by the two steps before
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                assert denoised_1 is not None  # set by the step before
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise(x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * ctx.s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x
