"""The noise "Outpainting mk2" paints into a new strip before inpainting it (numpy only).

A1111's mk2 (after g-diffuser) fills the strip with noise that looks statistically like the picture:
its Fourier magnitude is the picture's magnitude raised to the fall-off exponent, times a smooth
random magnitude, with the picture's own phase; the colour is mostly grey noise mixed with a
little coloured noise (colour variation); and the result's histogram is matched to the kept
pixels, so the strip has the picture's colours in the picture's proportions. This is our code for
those steps; the random generator is seeded by the caller (A1111 uses a fixed seed 0), so a given
seed always gives the same strip.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-8


def matched_noise(image: np.ndarray, mask: np.ndarray, noise_q: float, color_variation: float, rng: np.random.Generator) -> np.ndarray:
    """`image` (H x W x 3, floats in [0, 1]) with the masked part (`mask` H x W in [0, 1], 1 = new)
    replaced by noise matched to the rest; the kept part is returned unchanged. Values in [0, 1]."""
    weight = mask[..., None]
    known, new = mask < 1e-3, mask > 1e-6
    source = source_spectrum(image, mask)
    magnitude = np.abs(source)
    phase = source / np.maximum(magnitude, EPSILON)
    noise_spectrum = np.fft.fft2(grey_noise(image.shape, color_variation, rng), axes=(0, 1), norm="ortho")
    noise_spectrum *= lowpass_window(image.shape[:2])[..., None]
    shaped = np.real(np.fft.ifft2(np.abs(noise_spectrum) ** 2 * magnitude**noise_q * phase, axes=(0, 1), norm="ortho"))
    shaped = (shaped - shaped.min()) / max(float(shaped.max() - shaped.min()), EPSILON)
    if known.any() and new.any():
        for channel in range(image.shape[2]):
            shaped[..., channel][new] = match_histogram(shaped[..., channel][new], image[..., channel][known])
    return np.clip(image * (1 - weight) + shaped * weight, 0.0, 1.0)


def source_spectrum(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The 2-D spectrum (per channel, orthonormal) of the kept picture, scaled to a maximum of 1,
    with the hole filled by the kept pixels' mean colour: a black hole would put its own edges into
    the spectrum."""
    weight = mask[..., None]
    known = mask < 1e-3
    kept = image * (1 - weight)
    kept = kept / max(float(kept.max()), EPSILON)
    mean = image[known].mean(axis=0) if known.any() else image.reshape(-1, image.shape[2]).mean(axis=0)
    return np.fft.fft2(kept + mean * weight, axes=(0, 1), norm="ortho")


def grey_noise(shape: tuple[int, ...], color_variation: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise, mostly grey: each channel is `color_variation` of its own noise plus the rest
    of the channels' mean."""
    noise = rng.random(shape)
    grey = noise.mean(axis=2, keepdims=True)
    return noise * color_variation + grey * (1 - color_variation)


def lowpass_window(shape: tuple[int, int]) -> np.ndarray:
    """A soft low-pass over 2-D frequencies, 1 / ((1 + fx²)(1 + fy²)) with fx, fy in [-1, 1)
    stretched by the aspect ratio (A1111's window, in numpy's unshifted frequency layout)."""
    height, width = shape
    short = min(width, height)
    fx = np.fft.fftfreq(width) * 2 * (width / short)
    fy = np.fft.fftfreq(height) * 2 * (height / short)
    return 1.0 / ((fx[None, :] ** 2 + 1.0) * (fy[:, None] ** 2 + 1.0))


def match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`values` mapped so their distribution is `reference`'s: each value takes the reference's
    quantile at its own rank (ties keep their order, which is fine for continuous noise)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (np.arange(len(values)) + 0.5) / len(values)
    levels = np.sort(reference.ravel())
    quantiles = (np.arange(len(levels)) + 0.5) / len(levels)
    return np.interp(ranks, quantiles, levels)
