"""The k-diffusion samplers that choose their own steps, and Restart, as A1111 1.10 runs them.

DPM fast and DPM adaptive (Lu et al. 2022, k-diffusion's `DPMSolver`) work in ``t = -log(sigma)``
and take their sigma range and step count from the sigmas they are given; DPM adaptive sizes its
steps with a PID controller on the error it measures over the whole batch (as k-diffusion does).
Restart (Xu et al. 2023) is A1111's own sampler (`sd_samplers_extra`): Heun steps on a Karras
schedule with noise re-injected over restart intervals. Same contract and the same shared pieces
as modules/sampling/k_samplers.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from modules.sampling.k_samplers import ancestral_step, log_t, noise_source, ones_like_batch, report_step, sigma_of_t, to_d
from modules.sampling.schedules import ScheduleArgs, karras
from modules.sampling.types import Denoiser, SamplerContext

# -- DPM-Solver fast / adaptive (Lu et al. 2022), in t = -log(sigma) ------------------------------


class _DPMSolver:
    """Single-step DPM-Solver of orders 1-3 on the noise-prediction form eps = (x - x0) / sigma.

    Model evaluations are cached per step under k-diffusion's keys ("eps", "eps_r1", "eps_r2"),
    so DPM adaptive's low- and high-order solutions share their evaluations as there: every
    model call counts (the prompt schedule advances per call)."""

    def __init__(self, model: Denoiser, x: Tensor):
        self.model, self.s_in = model, ones_like_batch(x)
        self.cache: dict[str, Tensor] = {}

    def eps(self, key: str, x: Tensor, t: Tensor) -> Tensor:
        if key not in self.cache:
            self.cache[key] = (x - self.model(x, sigma_of_t(t) * self.s_in)) / sigma_of_t(t)
        return self.cache[key]

    def step_1(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        return x - sigma_of_t(t_next) * (t_next - t).expm1() * self.eps("eps", x, t)

    def step_2(self, x: Tensor, t: Tensor, t_next: Tensor, r1: float = 1 / 2) -> Tensor:
        h = t_next - t
        eps = self.eps("eps", x, t)
        s1 = t + r1 * h
        eps_r1 = self.eps("eps_r1", x - sigma_of_t(s1) * (r1 * h).expm1() * eps, s1)
        return x - sigma_of_t(t_next) * h.expm1() * eps - sigma_of_t(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step_3(self, x: Tensor, t: Tensor, t_next: Tensor, r1: float = 1 / 3, r2: float = 2 / 3) -> Tensor:
        h = t_next - t
        eps = self.eps("eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        eps_r1 = self.eps("eps_r1", x - sigma_of_t(s1) * (r1 * h).expm1() * eps, s1)
        u2 = x - sigma_of_t(s2) * (r2 * h).expm1() * eps - sigma_of_t(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        eps_r2 = self.eps("eps_r2", u2, s2)
        return x - sigma_of_t(t_next) * h.expm1() * eps - sigma_of_t(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)

    def ancestral_target(self, t: Tensor, t_next: Tensor, t_end: Tensor, eta: float) -> tuple[Tensor, Tensor | float]:
        """Where the deterministic part of a step ends and how much noise follows it."""
        if not eta:
            return t_next, 0.0
        sd, _ = ancestral_step(sigma_of_t(t), sigma_of_t(t_next), eta)
        t_next_ = torch.minimum(t_end, log_t(sd))
        return t_next_, (sigma_of_t(t_next) ** 2 - sigma_of_t(t_next_) ** 2) ** 0.5


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
    noise, solver, nfe = noise_source(ctx), _DPMSolver(model, x), len(sigmas) - 1
    t_start, t_end = log_t(sigma_max), log_t(sigma_min)
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=sigmas.device)  # beside the sigmas: its step sizes are read on the host
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        t_next_, su = solver.ancestral_target(t, t_next, t_end, ctx.eta)
        solver.cache = {}
        eps = solver.eps("eps", x, t)
        report_step(ctx, i, len(orders), x, sigma_of_t(t), sigma_of_t(t_next), x - sigma_of_t(t) * eps)
        step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
        x = step(x, t, t_next_)
        x = x + su * ctx.s_noise * noise(x, sigma_of_t(t), sigma_of_t(t_next))
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
    noise, solver = noise_source(ctx), _DPMSolver(model, x)
    s, t_end = log_t(sigma_max), log_t(sigma_min)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = _PIDStepSize(abs(h_init), 0.0, 1.0, 0.0, 1.5 if ctx.eta else order, 0.81)
    x_prev, steps, nominal = x, 0, len(sigmas) - 1
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + pid.h)
        t_, su = solver.ancestral_target(s, t, t_end, ctx.eta)
        solver.cache = {}
        denoised = x - sigma_of_t(s) * solver.eps("eps", x, s)
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
            x = x_high + su * ctx.s_noise * noise(x, sigma_of_t(s), sigma_of_t(t))
            s = t
        steps += 1
        report_step(ctx, steps - 1, max(nominal, steps), x, sigma_of_t(s), sigma_of_t(t), denoised)
    return x


# -- Restart (Xu et al. 2023), A1111's sd_samplers_extra -------------------------------------------


def _karras(n: int, sigma_min: float, sigma_max: float, device: torch.device) -> Tensor:
    return karras(ScheduleArgs(n, sigma_min, sigma_max)).to(device)


@torch.no_grad()
def sample_restart(model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
    """Heun steps with restarts: at sigma ≈ 0.1 jump back up to sigma ≈ 2 with fresh noise and
    redo that stretch (once for 20-35 steps, twice from 36). Under 20 steps it is plain Heun."""
    s_in, noise = ones_like_batch(x), noise_source(ctx)
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
        report_step(ctx, index, len(step_list), x, old_sigma, new_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, new_sigma, model(x_2, new_sigma * s_in))
            x = x + (d + d_2) / 2 * dt
        last_sigma = new_sigma
    return x
