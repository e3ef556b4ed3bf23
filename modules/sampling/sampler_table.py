"""The sampler table: one row per A1111 1.10 sampler, in A1111's order, and the name lookups.

A row says how A1111 runs the sampler: its default ("Automatic") schedule, whether it draws
ancestral noise (ENSD is written to infotext for those flagged ``uses_ensd``), whether its SDE noise
comes from Brownian trees, whether its schedule drops the next-to-last sigma, and which of A1111's
sampler settings (eta, sigma noise, churn) reach it. Adding a sampler is adding a row.

k-diffusion samplers live in :mod:`modules.sampling.k_samplers`; DDIM, DDIM CFG++, PLMS, UniPC and
LCM in :mod:`modules.sampling.timestep_samplers`. Rows hold the functions themselves, so a renamed or
missing function fails at import, never hides a sampler. (Importing both eagerly costs 7-9 ms of
this module's 0.9-1.0 s, torch being the rest, by ``python -X importtime`` with bytecode caching on:
less than the run-to-run noise, so no lazy import.)
DDIM, DDIM CFG++, PLMS and UniPC walk their own timestep grid: A1111 ignores the schedule type for
them (it still writes the chosen one to infotext).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from torch import Tensor

from modules.errors import UserError
from modules.sampling import k_samplers as k
from modules.sampling import k_samplers_extra as kx
from modules.sampling import timestep_samplers as ts
from modules.sampling.schedules import (
    SCHEDULES,
    build_sigmas,
    discard_next_to_last,
    find_schedule,
)
from modules.sampling.types import Denoiser, DiscreteSchedule, SamplerContext, SamplerFn

GridFn = Callable[[DiscreteSchedule, int], Tensor]
"""``(model, steps) -> sigmas``: a sampler's own timestep grid (see ``SamplerSpec.own_grid``)."""
ALL_SCHEDULES: tuple[str, ...] = tuple(s.id for s in SCHEDULES)


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler as A1111 lists it.

    label / aliases: the name A1111 shows and writes to infotext, and the old API names
        (``k_euler_a``...). Lookups ignore case.
    function: the :data:`SamplerFn` (use :meth:`run`, which hands it A1111's settings).
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
    own_grid: for DDIM, DDIM CFG++, PLMS and UniPC, the timestep_samplers function giving the sigmas
        they walk; the schedule type is then ignored. automatic_grid: the same for what "Automatic"
        means (LCM's 50-step grid) while explicit schedule types still apply.
    cfg_scale_multiplier: the guidance scale the sampler runs at is the user's CFG scale times this
        (A1111's ``cond_scale_miltiplier``: 1 / 12.5 for DDIM CFG++); infotext keeps the user's value.
    needs_uncond: the sampler steps along the unconditional prediction, so its model must be an
        :class:`~modules.sampling.types.UncondDenoiser` (DDIM CFG++; A1111's ``need_last_noise_uncond``).
    """

    label: str
    aliases: tuple[str, ...]
    function: SamplerFn
    default_schedule: str | None = None
    uses_ensd: bool = False
    brownian: bool = False
    discard_next_to_last_sigma: bool = False
    second_order: bool = False
    takes_s_noise: bool = False
    takes_churn: bool = False
    eta_default: float | None = None
    own_grid: GridFn | None = None
    automatic_grid: GridFn | None = None
    cfg_scale_multiplier: float = 1.0
    needs_uncond: bool = False

    @property
    def schedules(self) -> tuple[str, ...]:
        """Schedule ids that change what this sampler does (none for the timestep samplers)."""
        return () if self.own_grid else ALL_SCHEDULES

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


_SDE: dict[str, Any] = dict(brownian=True, takes_s_noise=True, eta_default=1.0)
_ANCESTRAL: dict[str, Any] = dict(uses_ensd=True, eta_default=1.0)

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", ("k_dpmpp_2m",), k.sample_dpmpp_2m, default_schedule="karras"),
    SamplerSpec("DPM++ SDE", ("k_dpmpp_sde",), k.sample_dpmpp_sde, default_schedule="karras", second_order=True, **_SDE),
    SamplerSpec("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), k.sample_dpmpp_2m_sde, default_schedule="exponential", **_SDE),
    SamplerSpec("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), k.sample_dpmpp_2m_sde_heun, default_schedule="exponential",
                **_SDE),
    SamplerSpec("DPM++ 2S a", ("k_dpmpp_2s_a",), k.sample_dpmpp_2s_ancestral, default_schedule="karras", second_order=True,
                takes_s_noise=True, **_ANCESTRAL),
    SamplerSpec("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), k.sample_dpmpp_3m_sde, default_schedule="exponential",
                discard_next_to_last_sigma=True, **_SDE),
    SamplerSpec("Euler a", ("k_euler_a", "k_euler_ancestral"), k.sample_euler_ancestral, **_ANCESTRAL),
    SamplerSpec("Euler", ("k_euler",), k.sample_euler, takes_s_noise=True, takes_churn=True),
    SamplerSpec("LMS", ("k_lms",), k.sample_lms),
    SamplerSpec("Heun", ("k_heun",), k.sample_heun, second_order=True, takes_s_noise=True, takes_churn=True),
    SamplerSpec("DPM2", ("k_dpm_2",), k.sample_dpm_2, default_schedule="karras", discard_next_to_last_sigma=True,
                second_order=True, takes_s_noise=True, takes_churn=True),
    SamplerSpec("DPM2 a", ("k_dpm_2_a",), k.sample_dpm_2_ancestral, default_schedule="karras",
                discard_next_to_last_sigma=True, second_order=True, takes_s_noise=True, **_ANCESTRAL),
    SamplerSpec("DPM fast", ("k_dpm_fast",), kx.sample_dpm_fast, takes_s_noise=True, **_ANCESTRAL),
    SamplerSpec("DPM adaptive", ("k_dpm_ad",), kx.sample_dpm_adaptive, **_ANCESTRAL),
    SamplerSpec("Restart", ("restart",), kx.sample_restart, default_schedule="karras", second_order=True),
    SamplerSpec("DDIM", ("ddim",), ts.sample_ddim, eta_default=0.0, own_grid=ts.ddim_timestep_sigmas),
    SamplerSpec("DDIM CFG++", ("ddim_cfgpp",), ts.sample_ddim_cfgpp, eta_default=0.0, own_grid=ts.ddim_timestep_sigmas,
                cfg_scale_multiplier=1 / 12.5, needs_uncond=True),
    SamplerSpec("PLMS", ("plms",), ts.sample_plms, own_grid=ts.ddim_timestep_sigmas),
    SamplerSpec("UniPC", ("unipc",), ts.sample_unipc, own_grid=ts.unipc_sigmas),
    SamplerSpec("LCM", ("k_lcm",), ts.sample_lcm, automatic_grid=ts.lcm_sigmas),
)

_BY_NAME = {name.lower(): row for row in SAMPLERS for name in (row.label, *row.aliases)}
# Old API names that carried the schedule: k_dpmpp_2m_ka = DPM++ 2M with Karras, ..._exp = Exponential.
_LEGACY_SUFFIXES = {"_ka": "karras", "_exp": "exponential"}


def sampler_labels() -> list[str]:
    """Labels in A1111's order (what /sdapi/v1/samplers and the UI list)."""
    return [row.label for row in SAMPLERS]


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
        return sampler.own_grid(model, steps)
    schedule = resolve_schedule(sampler, schedule_name)
    discard = sampler.discard_next_to_last_sigma or always_discard_next_to_last_sigma
    n = steps + 1 if discard else steps
    if schedule == "automatic" and sampler.automatic_grid:
        sigmas = sampler.automatic_grid(model, n).float().cpu()
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
