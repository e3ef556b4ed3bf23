"""A discrete-time diffusion model seen as a continuous denoiser D(x, sigma) -> x0.

Stable Diffusion's UNet was trained on 1000 timesteps of a variance-preserving process. k-diffusion
(and so A1111) samples in variance-exploding sigma space instead: for timestep t,
sigma_t = sqrt((1 - alphā_t) / alphā_t), the latent seen by the sampler is x = x0 + sigma·noise, and
the UNet gets x / sqrt(sigma² + 1) (back in VP scale) with a timestep recovered from sigma.

A1111 runs with ``enable_quantization = False``: the timestep is continuous, found by interpolating
linearly in log-sigma between the two neighbouring grid points. (diffusers' schedulers round it,
which is k-diffusion's ``quantize=True``.)

The wrapped model is any callable ``eps_fn(x_in, t, **cond)`` returning the UNet output: the
predicted noise for ``"epsilon"`` models, the velocity for ``"v_prediction"`` ones (SD 2.x 768).
This module does not import diffusers.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction")


def _per_sample(value: Tensor, ndim: int) -> Tensor:
    """(batch,) -> (batch, 1, 1, 1): broadcast one number per image over the latent."""
    return value[(...,) + (None,) * (ndim - value.ndim)]


class DiscreteDenoiser:
    """Wraps ``eps_fn(x_in, t, **cond)`` as ``denoise(x, sigma, **cond) -> x0``.

    Args:
        eps_fn: the model. Receives the VP-scaled latent and a float timestep tensor of shape
            (batch,), plus whatever keyword arguments the caller passes (text conditioning...).
        alphas_cumprod: the training schedule's cumulative alpha products (1000 values for SD).
        prediction_type: "epsilon" or "v_prediction".
        quantize: round timesteps to the nearest grid point (diffusers' behaviour) instead of the
            continuous log-sigma interpolation A1111 uses.
    """

    def __init__(
        self,
        eps_fn: Callable[..., Tensor],
        alphas_cumprod: Tensor,
        prediction_type: str = "epsilon",
        quantize: bool = False,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")
        alphas_cumprod = torch.as_tensor(alphas_cumprod)
        self.eps_fn = eps_fn
        self.prediction_type = prediction_type
        self.quantize = quantize
        self.sigmas: Tensor = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        """The model's noise level at every training timestep, ascending (index = timestep)."""
        self.log_sigmas: Tensor = self.sigmas.log()

    # -- the noise grid -------------------------------------------------------------------------

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def to(self, device: torch.device | str) -> DiscreteDenoiser:
        """Moves the grid to ``device`` (the model callable is left alone)."""
        self.sigmas = self.sigmas.to(device)
        self.log_sigmas = self.log_sigmas.to(device)
        return self

    def sigma_to_t(self, sigma: Tensor, quantize: bool | None = None) -> Tensor:
        """Timestep for each sigma: the nearest grid index when quantizing, otherwise the
        fractional index found by linear interpolation in log-sigma (clamped to [0, 999])."""
        quantize = self.quantize if quantize is None else quantize
        sigma = torch.as_tensor(sigma, device=self.log_sigmas.device)
        log_sigma = sigma.log()
        flat = log_sigma.reshape(-1)
        if quantize:
            return (flat[None, :] - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)
        # Index of the last grid point at or below log_sigma; outside the grid the end interval is
        # used and the weight clamped, so t never leaves [0, len - 1].
        below = (self.log_sigmas[:, None] <= flat[None, :]).sum(dim=0) - 1
        low_idx = below.clamp(min=0, max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - flat) / (low - high)).clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Sigma for a (possibly fractional) timestep, interpolating log-sigma between grid points."""
        t = torch.as_tensor(t, device=self.log_sigmas.device).float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()

    def get_sigmas(self, n: int | None = None) -> Tensor:
        """``n`` sigmas at timesteps evenly spaced from the last to the first, then 0 (A1111's
        default "Uniform" schedule). Without ``n``: the whole grid, descending, then 0."""
        if n is None:
            return torch.cat([self.sigmas.flip(0), self.sigmas.new_zeros([1])])
        t = torch.linspace(len(self.sigmas) - 1, 0, n, device=self.sigmas.device)
        return torch.cat([self.t_to_sigma(t), self.sigmas.new_zeros([1])])

    # -- the denoiser ---------------------------------------------------------------------------

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) with x0 = c_skip·x + c_out·model(c_in·x, t)."""
        c_in = 1 / (sigma**2 + 1) ** 0.5
        if self.prediction_type == "epsilon":
            return torch.ones_like(sigma), -sigma, c_in
        c_skip = 1 / (sigma**2 + 1)
        c_out = -sigma / (sigma**2 + 1) ** 0.5
        return c_skip, c_out, c_in

    def denoise(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """The predicted clean latent for ``x`` at noise level ``sigma`` (shape (batch,))."""
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if self.log_sigmas.device != x.device:
            self.to(x.device)  # so the timesteps reach the model on the latent's device
        c_skip, c_out, c_in = (_per_sample(c, x.ndim) for c in self.scalings(sigma))
        out = self.eps_fn(x * c_in, self.sigma_to_t(sigma), **cond)
        if self.prediction_type == "epsilon":
            # Written as k-diffusion writes it (x + eps·c_out) so results agree bit for bit.
            return x + out * c_out
        return out * c_out + x * c_skip

    __call__ = denoise
