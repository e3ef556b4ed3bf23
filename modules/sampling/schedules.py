"""Sigma schedules: which noise levels a sampler visits, A1111 1.10's "Schedule type" list.

Each schedule is one row of :data:`SCHEDULES`. Every builder takes the step count ``n`` and returns
``n`` descending sigmas followed by 0 as a float32 tensor (KL Optimal ends at sigma_min instead of 0,
exactly as A1111 1.10 builds it). Schedules that read the model's own noise grid
(``needs_model``) get a :class:`~modules.sampling.types.DiscreteSchedule` (a ``DiscreteDenoiser``).

"Automatic" is not a schedule of its own: the sampler table resolves it per sampler (Karras for
DPM++ 2M, Exponential for DPM++ 2M SDE, the model's uniform grid for Euler...).

The arithmetic follows A1111 / k-diffusion step by step (same dtypes, same order of operations) so
the sigmas agree to the last bit where the inputs do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from modules.errors import UserError
from modules.sampling.types import DiscreteSchedule

# NVIDIA's published Align Your Steps sigmas for 10 steps (A1111 `get_align_your_steps_sigmas`).
AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)

# A1111 options `beta_dist_alpha` / `beta_dist_beta` (defaults).
BETA_ALPHA = 0.6
BETA_BETA = 0.6


@dataclass(frozen=True)
class ScheduleArgs:
    """Everything a schedule builder may read; each builder uses what it needs."""

    n: int
    sigma_min: float
    sigma_max: float
    rho: float | None = None
    model: DiscreteSchedule | None = None
    sdxl: bool = False
    beta_alpha: float = BETA_ALPHA
    beta_beta: float = BETA_BETA


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _model(args: ScheduleArgs) -> DiscreteSchedule:
    if args.model is None:
        raise ValueError("this schedule is built from the model's noise grid: pass model=")
    return args.model


def karras(args: ScheduleArgs) -> Tensor:
    """Karras et al. (2022): evenly spaced in sigma^(1/rho) (rho 7)."""
    rho = 7.0 if args.rho is None else args.rho
    ramp = torch.linspace(0, 1, args.n)
    min_inv_rho = args.sigma_min ** (1 / rho)
    max_inv_rho = args.sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(args: ScheduleArgs) -> Tensor:
    """Evenly spaced in log-sigma."""
    return _append_zero(torch.linspace(math.log(args.sigma_max), math.log(args.sigma_min), args.n).exp())


def polyexponential(args: ScheduleArgs) -> Tensor:
    """log-sigma follows a polynomial ramp of degree rho (rho 1 = Exponential)."""
    rho = 1.0 if args.rho is None else args.rho
    ramp = torch.linspace(1, 0, args.n) ** rho
    log_min = math.log(args.sigma_min)
    return _append_zero(torch.exp(ramp * (math.log(args.sigma_max) - log_min) + log_min))


def uniform(args: ScheduleArgs) -> Tensor:
    """The model's grid at evenly spaced (fractional) timesteps from last to first."""
    model = _model(args)
    t = torch.linspace(len(model.sigmas) - 1, 0, args.n, device=model.sigmas.device)
    return _append_zero(model.t_to_sigma(t)).cpu()


def _timesteps_between_extremes(args: ScheduleArgs, count: int) -> Tensor:
    model = _model(args)
    start = model.sigma_to_t(torch.tensor(args.sigma_max))
    end = model.sigma_to_t(torch.tensor(args.sigma_min))
    return torch.linspace(float(start), float(end), count)


def sgm_uniform(args: ScheduleArgs) -> Tensor:
    """Like Normal, but n+1 evenly spaced timesteps with the last dropped (SGM / SDXL Turbo)."""
    model = _model(args)
    timesteps = _timesteps_between_extremes(args, args.n + 1)[:-1]
    values = [float(model.t_to_sigma(ts)) for ts in timesteps]
    return torch.tensor(values + [0.0], dtype=torch.float32)


def normal(args: ScheduleArgs) -> Tensor:
    """n evenly spaced timesteps between sigma_max's and sigma_min's."""
    model = _model(args)
    values = [float(model.t_to_sigma(ts)) for ts in _timesteps_between_extremes(args, args.n)]
    return torch.tensor(values + [0.0], dtype=torch.float32)


def simple(args: ScheduleArgs) -> Tensor:
    """Every (1000/n)-th grid sigma counted down from the top (ComfyUI's "simple")."""
    sigmas = _model(args).sigmas
    stride = len(sigmas) / args.n
    values = [float(sigmas[-(1 + int(i * stride))]) for i in range(args.n)]
    return torch.tensor(values + [0.0], dtype=torch.float32)


def ddim(args: ScheduleArgs) -> Tensor:
    """The grid at timesteps 1, 1+k, 1+2k... with k = 1000 // n, descending: the timesteps A1111's
    DDIM sampler visits (note: more than n of them when n does not divide 1000, e.g. 31 for 30)."""
    sigmas = _model(args).sigmas
    stride = max(len(sigmas) // args.n, 1)
    values = [float(sigmas[t]) for t in range(1, len(sigmas), stride)][::-1]
    return torch.tensor(values + [0.0], dtype=torch.float32)


def kl_optimal(args: ScheduleArgs) -> Tensor:
    """Evenly spaced in arctan(sigma) (Teng et al.). n+1 values from sigma_max down to sigma_min:
    A1111 1.10 does not append a 0, so the last step stops at sigma_min; kept for parity."""
    alpha_min = torch.arctan(torch.tensor(args.sigma_min))
    alpha_max = torch.arctan(torch.tensor(args.sigma_max))
    step = torch.arange(args.n + 1)
    return torch.tan(step / args.n * alpha_min + (1.0 - step / args.n) * alpha_max)


def _loglinear_interp(values: list[float], count: int) -> np.ndarray:
    xs = np.linspace(0, 1, len(values))
    ys = np.log(values[::-1])
    new_ys = np.interp(np.linspace(0, 1, count), xs, ys)
    return np.exp(new_ys)[::-1].copy()


def align_your_steps(args: ScheduleArgs) -> Tensor:
    """NVIDIA's optimised 10-step sigmas (SD1 or SDXL table), log-linearly interpolated to n."""
    table = list(AYS_SDXL if args.sdxl else AYS_SD1)
    if args.n != len(table):
        return torch.tensor(np.append(_loglinear_interp(table, args.n), [0.0]), dtype=torch.float32)
    return torch.tensor(table + [0.0], dtype=torch.float32)


def beta(args: ScheduleArgs) -> Tensor:
    """Beta-distribution quantiles mapped linearly onto [sigma_min, sigma_max] (Lee et al. 2024),
    A1111's version with alpha = beta = 0.6."""
    from scipy import stats  # scipy is heavy to import; only this schedule needs it

    quantiles = [stats.beta.ppf(x, args.beta_alpha, args.beta_beta) for x in 1 - np.linspace(0, 1, args.n)]
    values = [args.sigma_min + q * (args.sigma_max - args.sigma_min) for q in quantiles]
    return torch.tensor(values + [0.0], dtype=torch.float32)


@dataclass(frozen=True)
class Schedule:
    """One row of the schedule table."""

    id: str
    label: str
    build: Callable[[ScheduleArgs], Tensor] | None  # None for "automatic"
    default_rho: float | None = None  # the rho A1111 writes no "Schedule rho" for
    needs_model: bool = False  # reads the model's discrete sigma grid
    aliases: tuple[str, ...] = ()


SCHEDULES: tuple[Schedule, ...] = (
    Schedule("automatic", "Automatic", None),
    Schedule("uniform", "Uniform", uniform, needs_model=True),
    Schedule("karras", "Karras", karras, default_rho=7.0),
    Schedule("exponential", "Exponential", exponential),
    Schedule("polyexponential", "Polyexponential", polyexponential, default_rho=1.0),
    Schedule("sgm_uniform", "SGM Uniform", sgm_uniform, needs_model=True, aliases=("SGMUniform",)),
    Schedule("kl_optimal", "KL Optimal", kl_optimal),
    Schedule("align_your_steps", "Align Your Steps", align_your_steps),
    Schedule("simple", "Simple", simple, needs_model=True),
    Schedule("normal", "Normal", normal, needs_model=True),
    Schedule("ddim", "DDIM", ddim, needs_model=True),
    Schedule("beta", "Beta", beta, needs_model=True),
)

_BY_NAME = {
    name.lower(): schedule
    for schedule in SCHEDULES
    for name in (schedule.id, schedule.label, *schedule.aliases)
}


def schedule_labels() -> list[str]:
    """The labels as A1111 lists them (its API's /schedulers and the UI dropdown)."""
    return [s.label for s in SCHEDULES]


def find_schedule(name: str | None) -> Schedule:
    """The schedule named by id, label or alias in any case; None or "" means Automatic."""
    if name is None or not str(name).strip():
        return SCHEDULES[0]
    schedule = _BY_NAME.get(str(name).strip().lower())
    if schedule is None:
        raise UserError(f"Unknown schedule type '{name}'. Choose one of: {', '.join(schedule_labels())}.")
    return schedule


def build_sigmas(
    schedule: str,
    steps: int,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    model: DiscreteSchedule | None = None,
    rho: float | None = None,
    sdxl: bool = False,
    beta_alpha: float = BETA_ALPHA,
    beta_beta: float = BETA_BETA,
) -> Tensor:
    """Sigmas for ``steps`` steps of a concrete (not Automatic) schedule, on the CPU.

    ``sigma_min`` / ``sigma_max`` default to the ends of the model's grid (A1111 takes them from
    the model unless its "Schedule min/max sigma" settings override them); ``rho`` None means the
    schedule's default.
    """
    row = find_schedule(schedule)
    if row.build is None:
        raise ValueError("'Automatic' depends on the sampler: resolve it with sampler_table.resolve_schedule first")
    if steps < 1:
        raise UserError(f"Sampling steps must be at least 1, got {steps}.")
    if sigma_min is None or sigma_max is None:
        if model is None:
            raise ValueError(f"schedule '{row.id}' needs sigma_min and sigma_max, or the model to take them from")
        sigma_min = float(model.sigmas[0]) if sigma_min is None else sigma_min
        sigma_max = float(model.sigmas[-1]) if sigma_max is None else sigma_max
    args = ScheduleArgs(steps, float(sigma_min), float(sigma_max), rho, model, sdxl, beta_alpha, beta_beta)
    return row.build(args).float().cpu()


def discard_next_to_last(sigmas: Tensor) -> Tensor:
    """Drops the next-to-last sigma (A1111 builds steps+1 sigmas for DPM2, DPM2 a and DPM++ 3M SDE,
    then removes the smallest non-zero one, so their last step goes straight to 0)."""
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def build_sigmas_for_steps(schedule: str, steps: int, *, discard_penultimate: bool = False, **kwargs: object) -> Tensor:
    """:func:`build_sigmas` with A1111's ``discard_next_to_last_sigma`` handling: when set, builds
    ``steps + 1`` sigmas and drops the next-to-last, leaving ``steps`` steps."""
    if not discard_penultimate:
        return build_sigmas(schedule, steps, **kwargs)  # type: ignore[arg-type]
    return discard_next_to_last(build_sigmas(schedule, steps + 1, **kwargs))  # type: ignore[arg-type]
