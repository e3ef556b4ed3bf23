"""Brownian-tree noise for the SDE samplers, one tree per image seeded from that image's seed.

DPM++ SDE, DPM++ 2M SDE (and Heun) and DPM++ 3M SDE add noise whose values must not depend on
the step count's fine structure: the noise between two sigmas is the increment of one Brownian
motion W over [sigma_min, sigma_max], normalised to unit variance, W(s, s') / sqrt(|s' - s|).
torchsde's ``BrownianTree`` gives such a W that is a pure function of its seed, the interval and
the query points. A1111 builds one tree per image from the image's seed (so a picture does not
depend on its batch) over the schedule's nonzero sigma range; this module does the same, with the
same torchsde arguments as k-diffusion's ``BrownianTreeNoiseSampler`` so the numbers agree.

The tree lives on ``x``'s device and draws with that device's generator, so CUDA and CPU give
different noise, as in A1111.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from modules.sampling.types import NoiseRange


class BrownianNoise:
    """Unit-variance Brownian increments between two sigmas, one independent tree per image.

    Args:
        x: a latent shaped like the sampler's (batch first); gives shape, dtype and device.
        sigma_min, sigma_max: the interval the trees span (the schedule's smallest nonzero and
            largest sigma).
        seeds: one seed per image in the batch.

    Call it as a :data:`~modules.sampling.types.NoiseSource`: ``noise(x, sigma, sigma_next)``.
    """

    def __init__(self, x: Tensor, sigma_min: float | Tensor, sigma_max: float | Tensor, seeds: Sequence[int]) -> None:
        import torchsde  # imported here: only SDE samplers need it

        if len(seeds) != x.shape[0]:
            raise ValueError(f"Brownian noise needs one seed per image: {len(seeds)} seeds for a batch of {x.shape[0]}")
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        t0, t1, self._sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        w0 = torch.zeros_like(x[0])
        self.seeds = [int(s) for s in seeds]
        self._trees = [torchsde.BrownianTree(t0, w0, t1, entropy=seed) for seed in self.seeds]

    def increment(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        """W(sigma_next) - W(sigma) for every image, stacked (not normalised)."""
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        a, b, sign = (a, b, 1) if a < b else (b, a, -1)
        return torch.stack([tree(a, b) for tree in self._trees]) * (self._sign * sign)

    def __call__(self, x: Tensor | None, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        return self.increment(a, b) / (b - a).abs().sqrt()


def brownian_for(x: Tensor, sigmas: Tensor, seeds: Sequence[int], noise_range: NoiseRange | None = None) -> BrownianNoise:
    """A1111's choice of interval: the smallest nonzero and the largest sigma of the schedule
    (``noise_range`` overrides it, for img2img where the sampler sees only the schedule's tail)."""
    if noise_range is not None:
        low, high = noise_range
        return BrownianNoise(x, torch.as_tensor(low), torch.as_tensor(high), seeds)
    return BrownianNoise(x, sigmas[sigmas > 0].min(), sigmas.max(), seeds)
