"""Outpainting end to end on tiny real checkpoints: the enlarged size for every method and many
direction combinations, the picture kept exactly outside each method's seam band, repeated
outpainting, the 9-channel inpainting model, seeds and batches, step counting across passes,
interrupt and skip, and bad input refused with a sentence."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.errors import UserError
from modules.generation.engine import Interrupted, Skipped
from modules.generation.outpaint import OUTPAINT_METHODS, OutpaintRequest, check_inputs, outpaint, resolve
from modules.generation.outpaint.canvas import Expansion
from modules.generation.request import Img2ImgRequest
from tools.make_test_models import write_test_checkpoint

DIRECTIONS = ("left", "right", "up", "down")
ALL_COMBINATIONS = [c for n in range(1, 5) for c in combinations(DIRECTIONS, n)]  # the 15 non-empty sets
EASEL, MK2, POOR = "Easel fill", "Outpainting mk2", "Poor man's outpainting"
SMALL_BLUR = {EASEL: 4, MK2: 1, POOR: 2}  # mk2's band: 1 + 10 px, poor man's: 4 + 10 px


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("models")
    write_test_checkpoint(root / "sd1.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(root / "inpaint.safetensors", "sd1-inpaint", "tiny", seed=4, in_channels=9)
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=3))


def picture(width: int = 64, height: int = 64) -> Image.Image:
    """A gradient with a dark square and a light disc."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    image = Image.fromarray(np.stack([x, y, np.full_like(x, 96)], axis=2).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, width // 3, height // 3), fill=(20, 30, 40))
    draw.ellipse((width // 2, height // 2, width - 6, height - 6), fill=(230, 220, 200))
    return image


def outpaint_request(method: str = EASEL, source: Image.Image | None = None, window: int = 256, **changes) -> OutpaintRequest:
    base = dict(prompt="a wide landscape", negative_prompt="blurry", sampler_name="Euler", steps=3, width=window, height=window,
                seed=7, init_images=[source if source is not None else picture()], denoising_strength=0.7, preview_every=0)
    base.update(changes.pop("base", {}))
    changes.setdefault("mask_blur", SMALL_BLUR[method])
    return OutpaintRequest(Img2ImgRequest(**base), method=method, **changes)


def kept_exactly(output: Image.Image, source: Image.Image, box: tuple[int, int, int, int], band: int, sides: tuple[str, ...]) -> bool:
    """Whether the source is unchanged in the output, except `band` pixels in from each grown side."""
    x1, y1, x2, y2 = box
    inset = {side: (band if side in sides else 0) for side in DIRECTIONS}
    kept = output.crop((x1 + inset["left"], y1 + inset["up"], x2 - inset["right"], y2 - inset["down"]))
    expected = source.crop((inset["left"], inset["up"], source.width - inset["right"], source.height - inset["down"]))
    return np.array_equal(np.asarray(kept), np.asarray(expected))


def border_lines(values: np.ndarray, box: tuple[int, int, int, int], side: str) -> tuple[np.ndarray, np.ndarray]:
    """The picture's outermost line on `side` and the first new line beyond it."""
    x1, y1, x2, y2 = box
    if side == "left":
        return values[y1:y2, x1], values[y1:y2, x1 - 1]
    if side == "right":
        return values[y1:y2, x2 - 1], values[y1:y2, x2]
    if side == "up":
        return values[y1, x1:x2], values[y1 - 1, x1:x2]
    return values[y2 - 1, x1:x2], values[y2, x1:x2]


def check_result(request: OutpaintRequest, result, source: Image.Image) -> None:
    """Size = source + each chosen side's (rounded) growth; the source kept outside the seam band."""
    settings = resolve(request, source.size)
    grown = settings.expansion
    assert {side for side, _ in grown.sides()} == set(request.chosen_directions)
    assert all(pixels >= request.pixels for _, pixels in grown.sides())
    assert result.images[0].size == grown.size(source.size)
    band = settings.method.seam_band(settings.mask_blur)
    assert kept_exactly(result.images[0], source, grown.box(source.size), band, request.chosen_directions)


@pytest.mark.parametrize("directions", ALL_COMBINATIONS, ids=lambda d: "+".join(d))
def test_easel_fill_runs_every_direction_combination_and_keeps_the_picture(models, directions):
    model = models.switch_checkpoint("sd1")
    source = picture(64, 56)
    request = outpaint_request(EASEL, source, directions=directions, pixels=16, base=dict(steps=2))
    result = outpaint(model, request)
    check_result(request, result, source)
    grown = resolve(request, source.size).expansion
    assert grown == Expansion(**{side: 16 for side in directions})  # whole latent cells already: no rounding
    out = np.asarray(result.images[0], dtype=np.float32)
    for side in directions:  # the first new line continues the picture: the model paints noise of +-100 levels, the seam steps < 10
        inner, outer = border_lines(out, grown.box(source.size), side)
        assert np.abs(inner - outer).mean() < 10


@pytest.mark.parametrize("method", [MK2, POOR])
@pytest.mark.parametrize("directions", [("left",), ("up", "down"), ("right", "down"), ("left", "right", "up"), DIRECTIONS],
                         ids=lambda d: "+".join(d))
def test_a1111_methods_make_the_rounded_size_and_keep_the_picture_outside_the_band(models, method, directions):
    model = models.switch_checkpoint("sd1")
    source = picture()
    request = outpaint_request(method, source, directions=directions, pixels=32, base=dict(steps=2))
    result = outpaint(model, request)
    check_result(request, result, source)
    width, height = result.images[0].size
    assert (width % 64, height % 64) == (0, 0)  # A1111's scripts round to 64
    x1, y1, x2, y2 = resolve(request, source.size).expansion.box(source.size)
    edge = {"left": (x1, y1, x1 + 2, y2), "right": (x2 - 2, y1, x2, y2), "up": (x1, y1, x2, y1 + 2), "down": (x1, y2 - 2, x2, y2)}
    for side in directions:  # and the seam band was really repainted
        changed = np.abs(np.asarray(result.images[0].crop(edge[side]), dtype=int) - np.asarray(source.crop(
            (edge[side][0] - x1, edge[side][1] - y1, edge[side][2] - x1, edge[side][3] - y1)), dtype=int))
        assert changed.mean() > 1


def test_odd_sizes_are_padded_to_latent_cells_and_cut_back(models):
    model = models.switch_checkpoint("sd1")
    source = picture(70, 50)
    for method in OUTPAINT_METHODS:
        request = outpaint_request(method, source, directions=("left", "right"), pixels=16, base=dict(steps=2))
        result = outpaint(model, request)
        check_result(request, result, source)
        assert result.images[0].height == 50
    assert resolve(outpaint_request(EASEL, source, directions=("left", "right"), pixels=16), source.size).expansion == Expansion(17, 17)


def test_poor_mans_tiles_only_the_border(models):
    model = models.switch_checkpoint("sd1")
    source = picture()
    request = outpaint_request(POOR, source, window=64, directions=("right",), pixels=32, base=dict(steps=2))
    seen = []
    result = outpaint(model, request, on_step=lambda e: seen.append((e.step, e.steps)))
    check_result(request, result, source)
    # 128x64 canvas, 64x64 tiles overlapping by 32: x = 0, 32, 64; the first lies in the picture
    assert result.images[0].size == (128, 64)
    assert seen[-1] == (4, 4) and [s for s, _ in seen] == [1, 2, 3, 4]  # two tiles x 2 steps


def test_mk2_counts_steps_across_its_sides(models):
    model = models.switch_checkpoint("sd1")
    request = outpaint_request(MK2, directions=("left", "up"), pixels=16, base=dict(steps=4, denoising_strength=0.5))
    seen = []
    outpaint(model, request, on_step=lambda e: seen.append((e.image_index, e.step, e.steps)))
    assert seen == [(0, step, 6) for step in range(1, 7)]  # two sides x (int(0.5 * 4) + 1)


def test_outpainting_the_result_again_grows_it_again(models):
    model = models.switch_checkpoint("sd1")
    source = picture()
    first = outpaint(model, outpaint_request(EASEL, source, directions=("right",), pixels=24, base=dict(steps=2))).images[0]
    assert first.size == (88, 64)
    again_request = outpaint_request(EASEL, first, directions=("down", "left"), pixels=8, base=dict(steps=2))
    again = outpaint(model, again_request)
    check_result(again_request, again, first)
    assert again.images[0].size == (96, 72)
    assert np.array_equal(np.asarray(again.images[0].crop((8, 0, 72, 64))), np.asarray(source))  # still the first picture
    params = again.extra_parameters
    assert (params["Outpaint method"], params["Outpaint directions"], params["Outpaint pixels"], params["Size"]) == (EASEL, "left down", 8, "96x72")


@pytest.mark.parametrize("method", list(OUTPAINT_METHODS))
def test_the_inpainting_model_outpaints(models, method):
    model = models.switch_checkpoint("inpaint")
    assert model.unet.config.in_channels == 9
    source = picture()
    request = outpaint_request(method, source, directions=("left", "down"), pixels=16, base=dict(steps=2))
    result = outpaint(model, request)
    check_result(request, result, source)


def test_seeds_and_batches(models):
    model = models.switch_checkpoint("sd1")
    request = outpaint_request(EASEL, directions=("up",), pixels=16, base=dict(batch_size=2, seed=40, steps=2))
    result = outpaint(model, request)
    assert result.image_seeds == [40, 41] and len(result.images) == 2
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))
    same = outpaint(model, outpaint_request(EASEL, directions=("up",), pixels=16, base=dict(seed=40, steps=2)))
    assert np.array_equal(np.asarray(same.images[0]), np.asarray(result.images[0]))


def test_interrupt_keeps_the_picture_so_far_and_skip_drops_the_image(models):
    model = models.switch_checkpoint("sd1")

    def interrupt(event):
        if event.step == 2:
            raise Interrupted()

    result = outpaint(model, outpaint_request(MK2, directions=("left", "right"), pixels=16, base=dict(n_iter=2)), on_step=interrupt)
    assert result.interrupted and len(result.images) == 1
    assert result.images[0].size == (96, 64)  # mk2 stopped during its first side: the left one only

    skipped = []

    def skip_first(event):
        if event.image_index == 0 and not skipped:
            skipped.append(event)
            raise Skipped()

    result = outpaint(model, outpaint_request(EASEL, directions=("left",), pixels=16, base=dict(n_iter=2, seed=5, steps=2)), on_step=skip_first)
    assert not result.interrupted and result.image_seeds == [6]


@pytest.mark.parametrize("changes, words", [
    (dict(directions=()), "Choose at least one direction"),
    (dict(pixels=4), "Pixels to expand must be between 8 and 512"),
    (dict(pixels=1024), "Pixels to expand must be between 8 and 512"),
])
def test_bad_input_is_refused_before_any_work(models, changes, words):
    model = models.switch_checkpoint("sd1")
    with pytest.raises(UserError, match=words):
        outpaint(model, outpaint_request(EASEL, **changes))


def test_check_inputs_refuses_a_result_over_the_size_limit():
    request = outpaint_request(EASEL, picture(), pixels=512)
    check_inputs(request, max_megapixels=4)
    with pytest.raises(UserError, match="1088x1088"):
        check_inputs(request, max_megapixels=1)
    with pytest.raises(UserError, match="upload one"):
        check_inputs(OutpaintRequest(Img2ImgRequest(prompt="x")), max_megapixels=4)
