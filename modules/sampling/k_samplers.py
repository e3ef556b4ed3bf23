"""The k-diffusion family of samplers, as A1111 1.10 runs them.

Every function here is a :data:`~modules.sampling.types.SamplerFn` and follows the algorithm of
the k-diffusion function it is named after (Katherine Crowson's k-diffusion, `sampling.py`, the
version A1111 pins), operation for operation, so results agree with it to float rounding. Two
A1111 details are built in: the ODE derivative is ``(x - x0) / sigma``, and every random draw
k-diffusion makes with ``torch.randn_like`` comes from the context's noise source (A1111 routes
those draws to its per-image generators). DPM fast and DPM adaptive take their sigma range and
step count from the sigmas they are given; Restart is A1111's own sampler (`sd_samplers_extra`).

Ancestral samplers split each step into a deterministic move down to ``sigma_down`` and fresh
noise of size ``sigma_up`` (``get_ancestral_step``); SDE samplers draw their noise from a Brownian
tree per image (``ctx.seeds``) so the noise between two sigmas does not depend on the step count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from modules.sampling.brownian import brownian_for
from modules.sampling.schedules import ScheduleArgs, karras
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


def _noise(ctx: SamplerContext) -> NoiseSource:
    if ctx.noise is not None:
        return ctx.noise
    return lambda x, sigma, sigma_next: torch.randn_like(x)


def _sde_noise(x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> NoiseSource:
    """Brownian trees from the per-image seeds; without seeds, the plain noise source."""
    if ctx.seeds:
        return brownian_for(x, sigmas, ctx.seeds, ctx.noise_range)
    return _noise(ctx)


def _report(ctx: SamplerContext, i: int, total: int, x: Tensor, sigma: Tensor, sigma_next: Tensor, denoised: Tensor) -> None:
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
        eps = _noise(ctx)(x, sigmas[i], sigma_hat) * ctx.s_noise
        if gamma > 0:
            x = x + eps * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


def _ones(x: Tensor) -> Tensor:
    return x.new_ones([x.shape[0]])


# -- Euler, Heun, DPM2 and their ancestral versions -------------------------------------------------


@torch.no_grad()
def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2)."""
    s_in, total = _ones(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Euler a: an Euler step down to sigma_down, then fresh noise up to the next sigma."""
    noise, s_in, total = _noise(ctx), _ones(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Heun's second-order method (Karras et al. 2022); the last step to 0 is plain Euler."""
    s_in, total = _ones(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
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
    s_in, total = _ones(x), len(sigmas) - 1
    for i in range(total):
        x, sigma_hat = _churned(x, sigmas, i, ctx)
        denoised = model(x, sigma_hat * s_in)
        d = to_d(x, sigma_hat, denoised)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
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
    noise, s_in, total = _noise(ctx), _ones(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
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
    s_in, total = _ones(x), len(sigmas) - 1
    sigmas_cpu = sigmas.detach().cpu().numpy().astype(np.float64)
    ds: list[Tensor] = []
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        cur_order = min(i + 1, order)
        coeffs = [lms_coefficient(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x


# -- DPM-Solver++ ----------------------------------------------------------------------------------


def _t(sigma: Tensor) -> Tensor:
    return sigma.log().neg()


def _sigma(t: Tensor) -> Tensor:
    return t.neg().exp()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver++(2S) single-step second order, ancestral."""
    noise, s_in, total = _noise(ctx), _ones(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], ctx.eta)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s) * s_in)
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(x, sigmas[i], sigmas[i + 1]) * ctx.s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext, r: float = 1 / 2) -> Tensor:
    """DPM-Solver++ stochastic: two half steps per step, each with Brownian noise."""
    noise = _sde_noise(x, sigmas, ctx)
    s_in, total = _ones(x), len(sigmas) - 1
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # 1. to the intermediate point s
        sd, su = ancestral_step(_sigma(t), _sigma(s), ctx.eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise(x, _sigma(t), _sigma(s)) * ctx.s_noise * su
        denoised_2 = model(x_2, _sigma(s) * s_in)
        # 2. the full step with the blended prediction
        sd, su = ancestral_step(_sigma(t), _sigma(t_next), ctx.eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise(x, _sigma(t), _sigma(t_next)) * ctx.s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver++(2M): second-order multistep using the previous step's prediction."""
    s_in, total = _ones(x), len(sigmas) - 1
    old_denoised = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
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
    s_in, total, eta = _ones(x), len(sigmas) - 1, ctx.eta
    old_denoised = h_last = h = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
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
    s_in, total, eta = _ones(x), len(sigmas) - 1, ctx.eta
    denoised_1 = denoised_2 = h = h_1 = h_2 = None
    for i in range(total):
        denoised = model(x, sigmas[i] * s_in)
        _report(ctx, i, total, x, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                x = x + noise(x, sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * ctx.s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


# -- DPM-Solver fast / adaptive (Lu et al. 2022), in t = -log(sigma) ------------------------------


class _DPMSolver:
    """Single-step DPM-Solver of orders 1-3 on the noise-prediction form eps = (x - x0) / sigma.

    Model evaluations are cached per step under k-diffusion's keys ("eps", "eps_r1", "eps_r2"),
    so DPM adaptive's low- and high-order solutions share their evaluations as there: every
    model call counts (the prompt schedule advances per call)."""

    def __init__(self, model: Denoiser, x: Tensor):
        self.model, self.s_in = model, _ones(x)
        self.cache: dict[str, Tensor] = {}

    def eps(self, key: str, x: Tensor, t: Tensor) -> Tensor:
        if key not in self.cache:
            self.cache[key] = (x - self.model(x, _sigma(t) * self.s_in)) / _sigma(t)
        return self.cache[key]

    def step_1(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        return x - _sigma(t_next) * (t_next - t).expm1() * self.eps("eps", x, t)

    def step_2(self, x: Tensor, t: Tensor, t_next: Tensor, r1: float = 1 / 2) -> Tensor:
        h = t_next - t
        eps = self.eps("eps", x, t)
        s1 = t + r1 * h
        eps_r1 = self.eps("eps_r1", x - _sigma(s1) * (r1 * h).expm1() * eps, s1)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x: Tensor, t: Tensor, t_next: Tensor, r1: float = 1 / 3, r2: float = 2 / 3) -> Tensor:
        h = t_next - t
        eps = self.eps("eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        eps_r1 = self.eps("eps_r1", x - _sigma(s1) * (r1 * h).expm1() * eps, s1)
        u2 = x - _sigma(s2) * (r2 * h).expm1() * eps - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        eps_r2 = self.eps("eps_r2", u2, s2)
        return x - _sigma(t_next) * h.expm1() * eps - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def ancestral_target(self, t: Tensor, t_next: Tensor, t_end: Tensor, eta: float) -> tuple[Tensor, Tensor | float]:
        """Where the deterministic part of a step ends and how much noise follows it."""
        if not eta:
            return t_next, 0.0
        sd, _ = ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = torch.minimum(t_end, _t(sd))
        return t_next_, (_sigma(t_next) ** 2 - _sigma(t_next_) ** 2) ** 0.5


def _sigma_range(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas[0]
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    return sigma_min, sigma_max


@torch.no_grad()
def sample_dpm_fast(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """DPM-Solver-Fast: len(sigmas)-1 model calls spread over third-order steps evenly spaced in
    log-sigma between the first and the last nonzero sigma (the schedule's other values unused)."""
    sigma_min, sigma_max = _sigma_range(sigmas)
    noise, solver, nfe = _noise(ctx), _DPMSolver(model, x), len(sigmas) - 1
    t_start, t_end = _t(sigma_max), _t(sigma_min)
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=sigmas.device)  # beside the sigmas: its step sizes are read on the host
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        t_next_, su = solver.ancestral_target(t, t_next, t_end, ctx.eta)
        solver.cache = {}
        eps = solver.eps("eps", x, t)
        _report(ctx, i, len(orders), x, _sigma(t), _sigma(t_next), x - _sigma(t) * eps)
        step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
        x = step(x, t, t_next_)
        x = x + su * ctx.s_noise * noise(x, _sigma(t), _sigma(t_next))
    return x


class _PIDStepSize:
    """PID control of the step size from the error estimate (k-diffusion's controller)."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, accept_safety: float):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.errs: list[float] = []

    def propose(self, error: Tensor) -> bool:
        inv_error = 1 / (float(error) + 1e-8)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    ctx: SamplerContext,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
) -> Tensor:
    """DPM-Solver-23 with adaptive step size from the first to the last nonzero sigma; the step
    count is chosen by the error control (the schedule's values and length are not used)."""
    sigma_min, sigma_max = _sigma_range(sigmas)
    noise, solver = _noise(ctx), _DPMSolver(model, x)
    s, t_end = _t(sigma_max), _t(sigma_min)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = _PIDStepSize(abs(h_init), 0.0, 1.0, 0.0, 1.5 if ctx.eta else order, 0.81)
    x_prev, steps, nominal = x, 0, len(sigmas) - 1
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + pid.h)
        t_, su = solver.ancestral_target(s, t, t_end, ctx.eta)
        solver.cache = {}
        denoised = x - _sigma(s) * solver.eps("eps", x, s)
        if order == 2:
            x_low = solver.step_1(x, s, t_)
            x_high = solver.step_2(x, s, t_)
        else:
            x_low = solver.step_2(x, s, t_, r1=1 / 3)
            x_high = solver.step_3(x, s, t_)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose(error):
            x_prev = x_low
            x = x_high + su * ctx.s_noise * noise(x, _sigma(s), _sigma(t))
            s = t
        steps += 1
        _report(ctx, steps - 1, max(nominal, steps), x, _sigma(s), _sigma(t), denoised)
    return x


# -- Restart (Xu et al. 2023), A1111's sd_samplers_extra -------------------------------------------


def _karras(n: int, sigma_min: float, sigma_max: float, device: torch.device) -> Tensor:
    return karras(ScheduleArgs(n, sigma_min, sigma_max)).to(device)


@torch.no_grad()
def sample_restart(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Heun steps with restarts: at sigma ≈ 0.1 jump back up to sigma ≈ 2 with fresh noise and
    redo that stretch (once for 20-35 steps, twice from 36). Under 20 steps it is plain Heun."""
    s_in, noise = _ones(x), _noise(ctx)
    steps = sigmas.shape[0] - 1
    restart_at: dict[float, list[float | int]] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = _karras(steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(), sigmas.device)
        restart_at = {0.1: [restart_steps + 1, restart_times, 2]}
    by_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_at.items()}

    step_list: list[tuple[Tensor, Tensor]] = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in by_index:
            n, times, restart_max = by_index[i + 1]
            min_idx, max_idx = i + 1, int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                restart = _karras(int(n), sigmas[min_idx].item(), sigmas[max_idx].item(), sigmas.device)[:-1]
                step_list.extend(list(zip(restart[:-1], restart[1:])) * int(times))

    last_sigma = None
    for index, (old_sigma, new_sigma) in enumerate(step_list):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + noise(x, last_sigma, old_sigma) * ctx.s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        denoised = model(x, old_sigma * s_in)
        d = to_d(x, old_sigma, denoised)
        _report(ctx, index, len(step_list), x, old_sigma, new_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, new_sigma, model(x_2, new_sigma * s_in))
            x = x + (d + d_2) / 2 * dt
        last_sigma = new_sigma
    return x
