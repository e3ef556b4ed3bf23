"""The contract between the denoising engine and the samplers.

A sampler is a plain function ``(model, x, sigmas, ctx) -> latent`` (:data:`SamplerFn`), as in
k-diffusion where every sampler has the same signature:

- ``model`` is a :class:`Denoiser`: it maps a noisy latent and its noise level to the predicted
  clean latent x0. The engine has already folded classifier-free guidance, the prompt schedule
  and inpainting masks into it, so a sampler only ever sees "x0 for this x at this sigma". The one
  exception is CFG++ (DDIM CFG++), which steps along the unconditional prediction: its model is an
  :class:`UncondDenoiser`, which also keeps the unconditional x0 of its latest call.
- ``x`` is the starting latent, already multiplied by ``sigmas[0]`` (for txt2img: unit noise
  times sigma_max; for img2img: the encoded image plus noise at the first sigma).
- ``sigmas`` is a 1-D float tensor of descending noise levels; it ends with 0 (A1111's KL Optimal
  schedule is the one exception: it ends at the model's smallest sigma, as A1111 1.10 does).
- ``ctx`` (:class:`SamplerContext`) carries what varies per job: the step callback, the noise
  sources and the ancestral settings.

Samplers are deterministic given ``x``, ``sigmas`` and the noise the context hands out; they never
touch torch's global random state unless the context gives them no noise source at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from torch import Tensor

NoiseRange = tuple[float | Tensor, float | Tensor]
"""(sigma_min, sigma_max) a Brownian tree spans: numbers, or 0-d tensors read off a schedule."""


@runtime_checkable
class Denoiser(Protocol):
    """What a sampler calls: ``model(x, sigma) -> x0``.

    ``x`` has shape (batch, channels, height, width); ``sigma`` has shape (batch,) (one noise level
    per image, usually all equal). The result is the predicted clean latent, shaped like ``x``.
    ``sigma_min`` / ``sigma_max`` are the smallest and largest noise levels the model was trained on
    (DPM fast / adaptive and some schedules need them).
    """

    sigma_min: float
    sigma_max: float

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


@runtime_checkable
class UncondDenoiser(Denoiser, Protocol):
    """A :class:`Denoiser` under classifier-free guidance that also keeps, after every call, the
    *unconditional* (negative prompt) x0 prediction of that call as ``last_uncond_x0``.

    Samplers that step along the unconditional prediction (DDIM CFG++, flagged ``needs_uncond`` in
    the sampler table) need it; the engine's guidance keeps it for them. It is ``None`` before the
    first call.
    """

    last_uncond_x0: Tensor | None


@runtime_checkable
class DiscreteSchedule(Protocol):
    """A model's discrete noise grid and the continuous mapping between sigma and timestep.

    ``sigmas`` holds the model's training noise levels in ascending order (index = timestep).
    Schedules such as Uniform, Simple, Normal, SGM Uniform and DDIM are built from it.
    :class:`modules.sampling.denoiser.DiscreteDenoiser` implements this.
    """

    sigmas: Tensor

    def sigma_to_t(self, sigma: Tensor) -> Tensor: ...

    def t_to_sigma(self, t: Tensor) -> Tensor: ...


@dataclass
class StepInfo:
    """What a sampler reports once per step, right after the step's first model call.

    ``denoised`` is the x0 prediction at this step: it is what a live preview decodes (the noisy
    ``x`` would show mostly noise). ``index`` counts from 0; ``total`` is the number of steps the
    sampler will report (for DPM adaptive it is the nominal count and ``index`` may pass it).
    """

    index: int
    total: int
    x: Tensor
    sigma: Tensor
    sigma_next: Tensor
    denoised: Tensor


StepCallback = Callable[[StepInfo], None]
NoiseSource = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class SamplerContext:
    """Per-job settings and hooks handed to every sampler.

    callback: called once per step after the model call. The engine may raise from it to stop
        sampling (interrupt or skip); the exception propagates out of the sampler unchanged.
    noise: the ancestral noise source ``(x, sigma, sigma_next) -> standard normal noise shaped like
        x``. The engine supplies per-image generators (A1111's ``ImageRNG``, eta noise seed delta
        applied) so an image never depends on its batch. ``None`` means ``torch.randn_like``.
    eta: ancestral strength (A1111's "Eta" for k-diffusion samplers, default 1; DDIM's own eta
        defaults to 0 and is passed here too for the DDIM rows).
    s_noise: noise multiplier (A1111 "Sigma noise"); only the samplers A1111 hands it to use it,
        see ``SamplerSpec.takes_s_noise`` in the sampler table.
    seeds: one seed per image in the batch; SDE samplers (DPM++ SDE, 2M SDE, 3M SDE) build a
        Brownian tree per image from them, as A1111 does. Empty: they fall back to ``noise``.
    s_churn, s_tmin, s_tmax: Karras et al.'s stochastic churn for Euler, Heun and DPM2 (A1111
        "Sigma churn", "Sigma tmin", "Sigma tmax"); churn 0 (the default) turns it off.
    noise_range: (sigma_min, sigma_max) the Brownian tree spans. A1111 builds the tree over the
        whole schedule even when img2img samples only its tail, so the engine passes the full
        schedule's range here for img2img; ``None`` takes it from the sigmas the sampler gets.
    """

    callback: StepCallback | None = None
    noise: NoiseSource | None = None
    eta: float = 1.0
    s_noise: float = 1.0
    seeds: list[int] = field(default_factory=list)
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    noise_range: NoiseRange | None = None


SamplerFn = Callable[[Denoiser, Tensor, Tensor, SamplerContext], Tensor]
"""``(model, x, sigmas, ctx) -> final latent``; ``x`` is already scaled by ``sigmas[0]``."""
