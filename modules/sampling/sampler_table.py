"""The sampler table: one row per A1111 1.10 sampler, in A1111's order, and the name lookups.

A row says how A1111 runs the sampler: its default ("Automatic") schedule, whether it draws
ancestral noise (ENSD is written to infotext for those flagged ``uses_ensd``), whether its SDE noise
comes from Brownian trees, whether its schedule drops the next-to-last sigma, and which of A1111's
sampler settings (eta, sigma noise, churn) reach it. Adding a sampler is adding a row.

k-diffusion samplers live in :mod:`modules.sampling.k_samplers`; DDIM, PLMS, UniPC and LCM in
:mod:`modules.sampling.timestep_samplers`, imported only when a row's function is first needed.
DDIM, PLMS and UniPC walk their own timestep grid: A1111 ignores the schedule type for them (it
still writes the chosen one to infotext).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

from torch import Tensor

from modules.errors import UserError
from modules.sampling.schedules import (
    SCHEDULES,
    build_sigmas,
    discard_next_to_last,
    find_schedule,
)
from modules.sampling.types import Denoiser, DiscreteSchedule, SamplerContext, SamplerFn

_K = "modules.sampling.k_samplers"
_TIMESTEPS = "modules.sampling.timestep_samplers"
ALL_SCHEDULES: tuple[str, ...] = tuple(s.id for s in SCHEDULES)


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler as A1111 lists it.

    label / aliases: the name A1111 shows and writes to infotext, and the old API names
        (``k_euler_a``...). Lookups ignore case.
    module / function_name: where the :data:`SamplerFn` lives (imported on first use).
    default_schedule: what "Automatic" means for it (None: the model's uniform timestep grid,
        written to infotext as "Automatic").
    uses_ensd: A1111's flag: the sampler draws ancestral noise, so "ENSD" goes into infotext.
    brownian: SDE noise from per-image Brownian trees seeded from the image seeds.
    discard_next_to_last_sigma: build steps+1 sigmas and drop the next-to-last.
    second_order: two model calls per step (A1111 uses it to count progress).
    takes_s_noise / takes_churn: A1111 passes its "sigma noise" / "sigma churn, tmin, tmax"
        settings to this sampler; the others run with s_noise 1 and no churn.
    eta_default: the eta A1111 uses when none is given, whose value it leaves out of infotext
        (1 for ancestral k-samplers, 0 for DDIM); None when the sampler has no eta.
    own_grid: for DDIM, PLMS and UniPC, the timestep_samplers function giving the sigmas they
        walk; the schedule type is then ignored. automatic_grid: the same for what "Automatic"
        means (LCM's 50-step grid) while explicit schedule types still apply.
    """

    label: str
    aliases: tuple[str, ...]
    function_name: str
    module: str = _K
    default_schedule: str | None = None
    uses_ensd: bool = False
    brownian: bool = False
    discard_next_to_last_sigma: bool = False
    second_order: bool = False
    takes_s_noise: bool = False
    takes_churn: bool = False
    eta_default: float | None = None
    own_grid: str | None = None
    automatic_grid: str | None = None

    @property
    def schedules(self) -> tuple[str, ...]:
        """Schedule ids that change what this sampler does (none for the timestep samplers)."""
        return () if self.own_grid else ALL_SCHEDULES

    @property
    def available(self) -> bool:
        return _resolve(self.module, self.function_name) is not None

    @property
    def function(self) -> SamplerFn:
        """The sampler function, imported on first use."""
        function = _resolve(self.module, self.function_name)
        if function is None:
            raise UserError(f"The {self.label} sampler is not available in this version of Easel; choose another sampler.")
        return function

    def context_for(self, ctx: SamplerContext) -> SamplerContext:
        """``ctx`` with the settings A1111 does not hand to this sampler reset to their neutral
        values (e.g. Euler a ignores "sigma noise", only Euler/Heun/DPM2 see churn)."""
        return replace(
            ctx,
            s_noise=ctx.s_noise if self.takes_s_noise else 1.0,
            s_churn=ctx.s_churn if self.takes_churn else 0.0,
        )

    def run(self, model: Denoiser, x: Tensor, sigmas: Tensor, ctx: SamplerContext) -> Tensor:
        """Runs the sampler the way A1111 would (see :meth:`context_for`)."""
        return self.function(model, x, sigmas, self.context_for(ctx))


def _resolve(module: str, name: str) -> Callable | None:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _k(label: str, aliases: tuple[str, ...], function_name: str, **flags: object) -> SamplerSpec:
    return SamplerSpec(label, aliases, function_name, _K, **flags)  # type: ignore[arg-type]


def _t(label: str, aliases: tuple[str, ...], function_name: str, **flags: object) -> SamplerSpec:
    return SamplerSpec(label, aliases, function_name, _TIMESTEPS, **flags)  # type: ignore[arg-type]


_SDE = dict(brownian=True, takes_s_noise=True, eta_default=1.0)
_ANCESTRAL = dict(uses_ensd=True, eta_default=1.0)

SAMPLERS: tuple[SamplerSpec, ...] = (
    _k("DPM++ 2M", ("k_dpmpp_2m",), "sample_dpmpp_2m", default_schedule="karras"),
    _k("DPM++ SDE", ("k_dpmpp_sde",), "sample_dpmpp_sde", default_schedule="karras", second_order=True, **_SDE),
    _k("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "sample_dpmpp_2m_sde", default_schedule="exponential", **_SDE),
    _k("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "sample_dpmpp_2m_sde_heun", default_schedule="exponential", **_SDE),
    _k("DPM++ 2S a", ("k_dpmpp_2s_a",), "sample_dpmpp_2s_ancestral", default_schedule="karras", second_order=True,
       takes_s_noise=True, **_ANCESTRAL),
    _k("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "sample_dpmpp_3m_sde", default_schedule="exponential",
       discard_next_to_last_sigma=True, **_SDE),
    _k("Euler a", ("k_euler_a", "k_euler_ancestral"), "sample_euler_ancestral", **_ANCESTRAL),
    _k("Euler", ("k_euler",), "sample_euler", takes_s_noise=True, takes_churn=True),
    _k("LMS", ("k_lms",), "sample_lms"),
    _k("Heun", ("k_heun",), "sample_heun", second_order=True, takes_s_noise=True, takes_churn=True),
    _k("DPM2", ("k_dpm_2",), "sample_dpm_2", default_schedule="karras", discard_next_to_last_sigma=True,
       second_order=True, takes_s_noise=True, takes_churn=True),
    _k("DPM2 a", ("k_dpm_2_a",), "sample_dpm_2_ancestral", default_schedule="karras", discard_next_to_last_sigma=True,
       second_order=True, takes_s_noise=True, **_ANCESTRAL),
    _k("DPM fast", ("k_dpm_fast",), "sample_dpm_fast", takes_s_noise=True, **_ANCESTRAL),
    _k("DPM adaptive", ("k_dpm_ad",), "sample_dpm_adaptive", **_ANCESTRAL),
    _k("Restart", ("restart",), "sample_restart", default_schedule="karras", second_order=True),
    _t("DDIM", ("ddim",), "sample_ddim", eta_default=0.0, own_grid="ddim_timestep_sigmas"),
    _t("DDIM CFG++", ("ddim_cfgpp",), "sample_ddim_cfgpp", eta_default=0.0, own_grid="ddim_timestep_sigmas"),
    _t("PLMS", ("plms",), "sample_plms", own_grid="ddim_timestep_sigmas"),
    _t("UniPC", ("unipc",), "sample_unipc", own_grid="unipc_sigmas"),
    _t("LCM", ("k_lcm",), "sample_lcm", automatic_grid="lcm_sigmas"),
)

_BY_NAME = {name.lower(): row for row in SAMPLERS for name in (row.label, *row.aliases)}
# Old API names that carried the schedule: k_dpmpp_2m_ka = DPM++ 2M with Karras, ..._exp = Exponential.
_LEGACY_SUFFIXES = {"_ka": "karras", "_exp": "exponential"}


def sampler_labels(available_only: bool = True) -> list[str]:
    """Labels in A1111's order (what /sdapi/v1/samplers and the UI list)."""
    return [row.label for row in SAMPLERS if row.available or not available_only]


def parse_sampler_name(name: str | None) -> tuple[SamplerSpec, str | None]:
    """The row a name refers to, and the schedule id its name carried, if any.

    Accepts labels and aliases in any case, and A1111's old combined names: "DPM++ 2M Karras",
    "Euler a Exponential", "k_dpmpp_2m_ka". None or "" means the first sampler (DPM++ 2M), as in
    A1111.
    """
    text = (name or "").strip()
    if not text:
        return SAMPLERS[0], None
    key = text.lower()
    row = _BY_NAME.get(key)
    schedule: str | None = None
    if row is None:
        for schedule_row in SCHEDULES[1:]:
            for option in (schedule_row.label, *schedule_row.aliases):
                if key.endswith(" " + option.lower()) and key[: -len(option) - 1] in _BY_NAME:
                    row, schedule = _BY_NAME[key[: -len(option) - 1]], schedule_row.id
                    break
            if row is not None:
                break
    if row is None:
        for suffix, schedule_id in _LEGACY_SUFFIXES.items():
            if key.endswith(suffix) and key[: -len(suffix)] in _BY_NAME:
                row, schedule = _BY_NAME[key[: -len(suffix)]], schedule_id
                break
    if row is None:
        raise UserError(f"Unknown sampler '{text}'. Choose one of: {', '.join(sampler_labels())}.")
    if not row.available:
        raise UserError(
            f"The {row.label} sampler is not available in this version of Easel. Choose one of: {', '.join(sampler_labels())}."
        )
    return row, schedule


def find_sampler(name: str | None) -> SamplerSpec:
    """The row for a sampler label or alias (any case; "DPM++ 2M Karras" finds DPM++ 2M; use
    :func:`parse_sampler_name` to keep the schedule part). Raises UserError naming the choices."""
    return parse_sampler_name(name)[0]


def resolve_schedule(sampler: SamplerSpec, schedule_name: str | None) -> str:
    """The schedule id to use and to write to infotext: "Automatic" (or None / "") becomes the
    sampler's default schedule when it has one and stays "automatic" otherwise (the model's
    uniform grid, written as "Automatic", as A1111 does). Unknown names raise UserError."""
    schedule = find_schedule(schedule_name)
    if schedule.id == "automatic" and sampler.default_schedule is not None:
        return sampler.default_schedule
    return schedule.id


def schedule_label(sampler: SamplerSpec, schedule_name: str | None) -> str:
    """The "Schedule type" infotext value (A1111's label of the resolved schedule)."""
    return find_schedule(resolve_schedule(sampler, schedule_name)).label


def sigmas_for(
    sampler: SamplerSpec,
    schedule_name: str | None,
    steps: int,
    model: DiscreteSchedule,
    *,
    sdxl: bool = False,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    always_discard_next_to_last_sigma: bool = False,
) -> Tensor:
    """The sigmas ``sampler`` walks for ``steps`` steps of ``schedule_name`` on ``model``'s grid,
    as A1111's ``get_sigmas`` builds them: Automatic resolved per sampler, steps+1 sigmas with the
    next-to-last dropped for DPM2 / DPM2 a / DPM++ 3M SDE (or for all with A1111's "always discard
    next-to-last sigma" setting), the timestep samplers on their own grid.

    ``sdxl`` picks the Align Your Steps table; ``sigma_min`` / ``sigma_max`` / ``rho`` are A1111's
    "schedule min/max sigma" and "rho" overrides (None: the model's and the schedule's own)."""
    if steps < 1:
        raise UserError(f"Sampling steps must be at least 1, got {steps}.")
    if sampler.own_grid:
        return _resolve(_TIMESTEPS, sampler.own_grid)(model, steps)  # type: ignore[misc]
    schedule = resolve_schedule(sampler, schedule_name)
    discard = sampler.discard_next_to_last_sigma or always_discard_next_to_last_sigma
    n = steps + 1 if discard else steps
    if schedule == "automatic" and sampler.automatic_grid:
        sigmas = _resolve(_TIMESTEPS, sampler.automatic_grid)(model, n).float().cpu()  # type: ignore[misc]
    else:
        sigmas = build_sigmas(
            "uniform" if schedule == "automatic" else schedule,
            n,
            model=model,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            rho=rho,
            sdxl=sdxl,
        )
    return discard_next_to_last(sigmas) if discard else sigmas
