"""Seeds and noise behave as A1111's `rng.py`: per-image seeds, variation, resize seed, NV Philox."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.sampling import noise
from modules.sampling.noise import (
    AncestralNoise,
    PhiloxGenerator,
    batch_noise,
    batch_seeds,
    create_generator,
    draw,
    image_noise,
    resolve_seed,
    slerp,
)

SHAPE = (4, 16, 16)


@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_batch_of_three_equals_three_singles(source):
    batch = batch_noise(SHAPE, 100, count=3, source=source)
    singles = [image_noise(SHAPE, s, source=source) for s in (100, 101, 102)]
    assert batch.shape == (3, *SHAPE) and batch.dtype == torch.float32
    for i in range(3):
        assert torch.equal(batch[i], singles[i])
    assert not torch.equal(batch[0], batch[1])


def test_explicit_seed_lists_and_missing_subseeds_are_zero():
    batch = batch_noise(SHAPE, [7, 9], [5], 0.5, source="CPU")
    assert torch.equal(batch[0], image_noise(SHAPE, 7, 5, 0.5, source="CPU"))
    assert torch.equal(batch[1], image_noise(SHAPE, 9, 0, 0.5, source="CPU"))


def test_with_variation_every_image_keeps_the_seed_and_subseeds_count_up():
    assert batch_seeds(10, 50, 0.0, 3) == ([10, 11, 12], [50, 51, 52])
    assert batch_seeds(10, 50, 0.3, 3) == ([10, 10, 10], [50, 51, 52])
    batch = batch_noise(SHAPE, 10, 50, 0.3, count=2, source="CPU")
    assert torch.equal(batch[1], image_noise(SHAPE, 10, 51, 0.3, source="CPU"))


def test_variation_strength_zero_is_no_variation_and_one_is_the_subseed():
    plain = image_noise(SHAPE, 1234, source="CPU")
    assert torch.equal(image_noise(SHAPE, 1234, 99, 0.0, source="CPU"), plain)
    assert torch.equal(image_noise(SHAPE, 1234, 99, 1.0, source="CPU"), image_noise(SHAPE, 99, source="CPU"))
    half = image_noise(SHAPE, 1234, 99, 0.5, source="CPU")
    assert not torch.equal(half, plain)
    assert abs(half.std().item() - 1.0) < 0.15  # slerp keeps noise at unit scale, unlike a plain mix


def test_slerp_matches_the_formula_and_keeps_a1111s_swapped_parallel_fallback():
    low = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    high = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    low_n, high_n = low / low.norm(dim=1, keepdim=True), high / high.norm(dim=1, keepdim=True)
    omega = torch.acos((low_n * high_n).sum(1))
    expected = (torch.sin(0.7 * omega) / torch.sin(omega)).unsqueeze(1) * low + (
        torch.sin(0.3 * omega) / torch.sin(omega)
    ).unsqueeze(1) * high
    assert torch.allclose(slerp(0.3, low, high), expected, atol=1e-6)
    nearly = low + 1e-3 * high
    assert torch.equal(slerp(0.25, low, nearly), low * 0.25 + nearly * 0.75)


def test_resize_seed_from_the_same_size_or_off_changes_nothing():
    plain = image_noise(SHAPE, 5, source="CPU")
    assert torch.equal(image_noise(SHAPE, 5, seed_resize_from=(128, 128), source="CPU"), plain)
    assert torch.equal(image_noise(SHAPE, 5, seed_resize_from=(0, 0), source="CPU"), plain)
    assert torch.equal(image_noise(SHAPE, 5, seed_resize_from=(64, -1), source="CPU"), plain)


def test_resize_seed_from_a_smaller_size_pastes_its_noise_in_the_centre():
    target = (4, 16, 20)  # 160x128 px
    out = image_noise(target, 5, seed_resize_from=(64, 96), source="CPU")  # noise 4x12x8
    small = image_noise((4, 12, 8), 5, source="CPU")
    full = image_noise(target, 5, source="CPU")
    assert torch.equal(out[:, 2:14, 6:14], small)  # dy = (16-12)//2, dx = (20-8)//2
    mask = torch.ones(target, dtype=torch.bool)
    mask[:, 2:14, 6:14] = False
    assert torch.equal(out[mask], full[mask])


def test_resize_seed_from_a_larger_size_crops_its_centre():
    out = image_noise(SHAPE, 5, seed_resize_from=(200, 160), source="CPU")  # noise 4x20x25
    big = image_noise((4, 20, 25), 5, source="CPU")
    # A1111's arithmetic: dy = -2 -> rows 2:18; dx = (16-25)//2 = -5 -> a 25-10 = 15 wide window, so
    # the last column keeps the seed's own full-size noise.
    assert torch.equal(out[:, :, :15], big[:, 2:18, 5:20])
    assert torch.equal(out[:, :, 15], image_noise(SHAPE, 5, source="CPU")[:, :, 15])


def test_resize_seed_with_variation_varies_the_small_noise():
    out = image_noise(SHAPE, 5, 8, 1.0, seed_resize_from=(64, 64), source="CPU")
    assert torch.equal(out[:, 4:12, 4:12], image_noise((4, 8, 8), 8, source="CPU"))


def test_minus_one_resolves_to_a_fresh_seed_in_range():
    seeds = {resolve_seed(-1) for _ in range(5)}
    assert len(seeds) > 1
    assert all(isinstance(s, int) and 0 <= s < 4294967294 for s in seeds)
    assert resolve_seed(42) == 42 and resolve_seed("42") == 42
    assert isinstance(resolve_seed(None), int) and isinstance(resolve_seed("not a number"), int)
    assert 0 <= noise.random_seed() < 4294967294


def test_gpu_source_on_a_cpu_device_falls_back_to_the_cpu_generator():
    assert torch.equal(image_noise(SHAPE, 3, source="GPU"), image_noise(SHAPE, 3, source="CPU"))
    assert create_generator(3, "GPU", "cpu").device.type == "cpu"


def test_nv_source_is_deterministic_normal_and_differs_from_cpu():
    a = image_noise((4, 64, 64), 77, source="NV")
    assert torch.equal(a, image_noise((4, 64, 64), 77, source="NV"))
    assert abs(a.mean().item()) < 0.02 and abs(a.std().item() - 1.0) < 0.02
    assert not torch.allclose(a, image_noise((4, 64, 64), 77, source="CPU"))
    generator = PhiloxGenerator(77)
    first, second = generator.randn((4, 8)), generator.randn((4, 8))
    assert generator.offset == 2 and not np.array_equal(first, second)


def test_philox_matches_the_random123_known_answers():
    cases = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (
            [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
            [0xA4093822, 0x299F31D0],
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
        ),
    ]
    for counter, key, expected in cases:
        out = noise._philox4x32([np.array([c], np.uint32) for c in counter], [np.array([k], np.uint32) for k in key])
        assert [int(w[0]) for w in out] == expected


def test_nv_seed_zero_gives_cudas_numbers():
    # A1111's rng_philox docstring (torch.randn((3, 4), device="cuda") after manual_seed(0)); its own
    # code, which we follow, differs from these in the 7th digit (float32 2*pi constant).
    expected = np.array(
        [
            [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
            [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
            [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
        ]
    )
    out = PhiloxGenerator(0).randn((3, 4))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_ancestral_noise_continues_each_seed_after_the_initial_draw():
    shape = (2, *SHAPE)
    step = AncestralNoise([100, 101], source="CPU")(torch.zeros(shape), 1.0, 0.5)
    for i, seed in enumerate((100, 101)):
        generator = create_generator(seed, "CPU")
        initial = draw(generator, SHAPE)
        assert torch.equal(initial, image_noise(SHAPE, seed, source="CPU"))
        assert torch.equal(step[i], draw(generator, SHAPE))
    alone = AncestralNoise([101], source="CPU")(torch.zeros(1, *SHAPE))
    assert torch.equal(alone[0], step[1])


def test_ancestral_noise_with_ensd_restarts_from_seed_plus_delta():
    sampler = AncestralNoise([100], eta_noise_seed_delta=31337, source="CPU")
    x = torch.zeros(1, *SHAPE, dtype=torch.float64)
    first, second = sampler(x), sampler(x)
    generator = create_generator(100 + 31337, "CPU")
    assert first.dtype == torch.float64
    assert torch.equal(first[0].float(), draw(generator, SHAPE))
    assert torch.equal(second[0].float(), draw(generator, SHAPE))


def test_ancestral_noise_nv_and_batch_mismatch():
    step = AncestralNoise([3], source="NV")(torch.zeros(1, 4, 2, 2))
    generator = PhiloxGenerator(3)
    generator.randn((4, 2, 2))
    assert np.array_equal(step[0].numpy(), generator.randn((4, 2, 2)))
    with pytest.raises(ValueError, match="batch of 2"):
        AncestralNoise([1], source="CPU")(torch.zeros(2, 4, 2, 2))


def test_global_torch_rng_is_untouched_and_bad_source_is_refused():
    state = torch.get_rng_state()
    image_noise(SHAPE, 1, 2, 0.5, (64, 64), source="CPU")
    AncestralNoise([1], source="CPU")(torch.zeros(1, *SHAPE))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="random number source"):
        image_noise(SHAPE, 1, source="TPU")  # type: ignore[arg-type]
