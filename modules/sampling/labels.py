"""The sampler and schedule labels a request's sampler and scheduler resolve to (what infotext
writes and the hires pass records)."""

from __future__ import annotations

from modules.sampling.sampler_table import SamplerSpec, parse_sampler_name, schedule_label


def sampler_and_schedule(sampler_name: str, scheduler: str | None) -> tuple[str, str]:
    """The "Sampler" and "Schedule type" values for a request's sampler and scheduler.

    A name that carries a schedule ("DPM++ 2M Karras") is split, and its schedule wins over the
    scheduler field, as in A1111. "Automatic" becomes the sampler's default schedule (Karras for
    DPM++ 2M); samplers without one keep "Automatic". Raises UserError for an unknown sampler."""
    row, schedule = resolve_sampler_and_schedule(sampler_name, scheduler)
    return row.label, schedule


def resolve_sampler_and_schedule(sampler_name: str, scheduler: str | None) -> tuple[SamplerSpec, str]:
    """The sampler's row and the schedule label it runs with."""
    row, carried = parse_sampler_name(sampler_name)
    return row, schedule_label(row, carried if carried is not None else scheduler)
