"""Seeds and the noise they make, drawn exactly as AUTOMATIC1111 1.10.1 draws it (`modules/rng.py`).

Every image gets its noise from its own seed, so a picture never depends on the batch it was made in.
Three random sources, A1111's `randn_source` setting:

- ``"GPU"`` (A1111's default): ``torch.randn`` on the compute device with a generator on that device.
  CUDA's generator gives other numbers than the CPU one. When the device is the CPU (or MPS, as in
  A1111) there is no GPU generator and the CPU generator is used, so on a CPU-only machine "GPU" and
  "CPU" noise are the same; infotext still says what the user asked for.
- ``"CPU"``: ``torch.randn`` on a CPU generator, moved to the device; the same on every machine.
- ``"NV"``: :class:`PhiloxGenerator`, a numpy re-implementation of CUDA's Philox-4x32 ``randn`` that
  gives NVIDIA's numbers on any machine.

No function here touches torch's global random state.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

RngSource = Literal["GPU", "CPU", "NV"]
Shape = tuple[int, ...]

RNG_SOURCES: tuple[str, ...] = ("GPU", "CPU", "NV")


def random_seed() -> int:
    """A fresh seed in A1111's range, ``random.randrange(4294967294)``."""
    return int(random.randrange(4294967294))


def resolve_seed(seed: int | str | None) -> int:
    """A1111's `get_fixed_seed`: None, "", -1 or text that is not a number mean a fresh random seed."""
    if seed is None or seed == "":
        return random_seed()
    if isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            return random_seed()
    seed = int(seed)
    return random_seed() if seed == -1 else seed


def batch_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Seeds and variation seeds of a job's `count` images, as A1111's `process_images` lays them out.

    Image i uses ``seed + i`` and ``subseed + i`` - except that with a variation strength other than 0
    every image keeps the *same* seed and only the variation seed counts up.
    """
    seeds = [int(seed) + (i if subseed_strength == 0 else 0) for i in range(count)]
    subseeds = [int(subseed) + i for i in range(count)]
    return seeds, subseeds


# ---------------------------------------------------------------------------------------------
# NV: CUDA's Philox-4x32-10 + Box-Muller, on the CPU

_PHILOX_M0, _PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
# CUDA's float constants: 2^-32 and 2^-32 * 2*pi, both rounded to float32.
_INV_2POW32 = np.array([2.3283064e-10], dtype=np.float32)
_INV_2POW32_2PI = np.array([2.3283064e-10 * 6.2831855], dtype=np.float32)


def _philox4x32(counter: list[np.ndarray], key: list[np.ndarray], rounds: int = 10) -> list[np.ndarray]:
    """Philox-4x32 on columns of uint32 words (counter: 4 arrays, key: 2 arrays)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    with np.errstate(over="ignore"):
        for round_no in range(rounds):
            if round_no:
                k0, k1 = k0 + _PHILOX_W0, k1 + _PHILOX_W1
            p0 = c0.astype(np.uint64) * _PHILOX_M0
            p1 = c2.astype(np.uint64) * _PHILOX_M1
            hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _LOW32).astype(np.uint32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _LOW32).astype(np.uint32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


class PhiloxGenerator:
    """Gives the numbers ``torch.randn(shape, device="cuda")`` gives after ``torch.manual_seed(seed)``.

    Each :meth:`randn` call is one CUDA launch: element i comes from counter ``(offset, 0, i, 0)``
    and key = the 64-bit seed; words 0 and 1 feed one Box-Muller draw (its cosine half is thrown
    away). The offset then moves on by one, whatever the size of the call - A1111's convention.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        """A float32 array of standard normal numbers."""
        n = int(np.prod(shape, dtype=np.int64))
        counter = [
            np.full(n, self.offset, dtype=np.uint32),
            np.zeros(n, dtype=np.uint32),
            np.arange(n, dtype=np.uint32),
            np.zeros(n, dtype=np.uint32),
        ]
        key = [np.full(n, self.seed & 0xFFFFFFFF, dtype=np.uint32), np.full(n, self.seed >> 32, dtype=np.uint32)]
        self.offset += 1
        x, y = _philox4x32(counter, key)[:2]
        # A1111 computes in float64 from float32 constants (numpy promotes uint32 * float32 arrays).
        u = x * _INV_2POW32 + _INV_2POW32 / 2
        v = y * _INV_2POW32_2PI + _INV_2POW32_2PI / 2
        return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32).reshape(tuple(shape))


Generator = torch.Generator | PhiloxGenerator

# ---------------------------------------------------------------------------------------------
# generators and draws


def _generator_device(source: str, device: torch.device) -> torch.device:
    if source == "CPU" or device.type in ("cpu", "mps"):
        return torch.device("cpu")
    return device


def create_generator(seed: int, source: RngSource = "GPU", device: torch.device | str = "cpu") -> Generator:
    """A generator seeded with `seed` for the source; the GPU source uses the device's own generator."""
    _check_source(source)
    if source == "NV":
        return PhiloxGenerator(seed)
    return torch.Generator(_generator_device(source, torch.device(device))).manual_seed(int(seed))


def draw(generator: Generator, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The generator's next float32 normal tensor of `shape`, placed on `device`."""
    device = torch.device(device)
    if isinstance(generator, PhiloxGenerator):
        return torch.from_numpy(generator.randn(shape)).to(device)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=torch.float32).to(device)


def _check_source(source: str) -> None:
    if source not in RNG_SOURCES:
        raise ValueError(f"unknown random number source {source!r}; use one of {', '.join(RNG_SOURCES)}")


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's spherical interpolation of one image's (C, H, W) noise, quirks kept.

    Norms are taken along dim 1 (the rows), so each (channel, column) vector is interpolated on its
    own. When the vectors are nearly parallel (mean cosine > 0.9995) A1111 falls back to
    ``low * val + high * (1 - val)`` - the weights swapped with respect to the slerp branch.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _resize_shape(shape: Shape, seed_resize_from: tuple[int, int] | None) -> Shape:
    if seed_resize_from is None:
        return shape
    width, height = seed_resize_from
    if width is None or height is None or width <= 0 or height <= 0:
        return shape
    return (shape[0], int(height) // 8, int(width) // 8)


def image_noise(
    shape: Sequence[int],
    seed: int,
    subseed: int | None = None,
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
    source: RngSource = "GPU",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """One image's initial noise, shape (C, H, W), as A1111's `ImageRNG.first` makes it.

    Variation: ``slerp(subseed_strength, noise(seed), noise(subseed))``, skipped when the strength
    is 0. Resize seed: `seed_resize_from` is (width, height) in pixels (either <= 0 or None = off);
    the noise is made at that size / 8, varied, and its centre pasted into the seed's own full-size
    noise (cropped when larger than the target).
    """
    _check_source(source)
    shape = tuple(int(s) for s in shape)
    device = torch.device(device)
    noise_shape = _resize_shape(shape, seed_resize_from)

    noise = draw(create_generator(seed, source, device), noise_shape, device)
    if subseed is not None and subseed_strength != 0:
        subnoise = draw(create_generator(subseed, source, device), noise_shape, device)
        noise = slerp(subseed_strength, noise, subnoise)
    if noise_shape == shape:
        return noise

    x = draw(create_generator(seed, source, device), shape, device)
    dx = (shape[2] - noise_shape[2]) // 2
    dy = (shape[1] - noise_shape[1]) // 2
    w = noise_shape[2] if dx >= 0 else noise_shape[2] + 2 * dx
    h = noise_shape[1] if dy >= 0 else noise_shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    x[:, ty : ty + h, tx : tx + w] = noise[:, sy : sy + h, sx : sx + w]
    return x


def batch_noise(
    shape: Sequence[int],
    seeds: int | Sequence[int],
    subseeds: int | Sequence[int] | None = None,
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
    source: RngSource = "GPU",
    device: torch.device | str = "cpu",
    count: int = 1,
) -> torch.Tensor:
    """Initial noise of a batch, (B, C, H, W): each image's :func:`image_noise`, stacked.

    `seeds` / `subseeds` are the images' own seeds, or one base seed each plus `count`, laid out
    by :func:`batch_seeds`. Missing variation seeds are 0, as in A1111.
    """
    if isinstance(seeds, int):
        base_subseed = subseeds if isinstance(subseeds, int) else 0
        seeds, generated = batch_seeds(seeds, base_subseed, subseed_strength, count)
        if isinstance(subseeds, int):
            subseeds = generated
    elif isinstance(subseeds, int):
        subseeds = [subseeds + i for i in range(len(seeds))]
    xs = []
    for i, seed in enumerate(seeds):
        subseed = None
        if subseeds is not None:
            subseed = subseeds[i] if i < len(subseeds) else 0
        xs.append(image_noise(shape, seed, subseed, subseed_strength, seed_resize_from, source, device))
    return torch.stack(xs)


class AncestralNoise:
    """Noise for ancestral and SDE steps, one generator per image, as A1111's `ImageRNG.next`.

    A1111 draws the initial latent from these same per-image generators. With ENSD
    (`eta_noise_seed_delta`) 0 the step noise continues each generator after that draw, so the first
    step noise is the seed's *second* tensor; with ENSD != 0 the generators restart from
    ``seed + ENSD``. This class makes its own generators and, for ENSD 0, throws one tensor of the
    latent's shape away first - the initial noise must therefore have the shape the steps see
    (it does: it is the latent). Call it like k-diffusion's noise samplers: ``(x, sigma, sigma_next)``.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        eta_noise_seed_delta: int = 0,
        source: RngSource = "GPU",
        device: torch.device | str = "cpu",
    ) -> None:
        _check_source(source)
        self.seeds = [int(s) for s in seeds]
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.source = source
        self.device = torch.device(device)
        offset = self.eta_noise_seed_delta
        self.generators = [create_generator(s + offset, source, self.device) for s in self.seeds]
        self._skip_initial = offset == 0

    def __call__(self, x: torch.Tensor, sigma: object = None, sigma_next: object = None) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"latent batch of {x.shape[0]} but noise for {len(self.generators)} seeds")
        shape = tuple(x.shape[1:])
        if self._skip_initial:
            self._skip_initial = False
            for generator in self.generators:
                draw(generator, shape, self.device)
        noise = torch.stack([draw(g, shape, self.device) for g in self.generators])
        return noise.to(device=x.device, dtype=x.dtype)
