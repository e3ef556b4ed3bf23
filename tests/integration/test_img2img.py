"""img2img, inpainting and hires fix end to end on tiny real checkpoints: steps run as A1111
counts them, each resize mode's geometry, pixels outside the mask kept exactly, the masked-content
modes, inverted masks, "Only masked" crops, the 9-channel inpainting UNet, and the hires pass."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.errors import UserError
from modules.generation import masks
from modules.generation.engine import decode, encode
from modules.generation.image_ops import resize_image
from modules.generation.img2img import check_inputs, img2img, masked_content_latent, prepare
from modules.generation.request import GenerationRequest, Img2ImgRequest, MaskedContent
from modules.generation.txt2img import txt2img
from modules.sampling import noise as noise_mod
from tools.make_test_models import write_test_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("models")
    write_test_checkpoint(root / "sd1.safetensors", "sd1", "tiny", seed=1)
    write_test_checkpoint(root / "inpaint.safetensors", "sd1-inpaint", "tiny", seed=4, in_channels=9)
    registry = ModelRegistry([root], [], HashCache(root / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=3))


def picture(width: int = 64, height: int = 64) -> Image.Image:
    """A picture with structure: a gradient, a dark square and a light disc."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)), np.full((height, width, 1), 96.0)], axis=2)
    image = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, width // 3, height // 3), fill=(20, 30, 40))
    draw.ellipse((width // 2, height // 2, width - 6, height - 6), fill=(230, 220, 200))
    return image


def square_mask(size=(64, 64), box=(24, 24, 40, 40)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    return mask


def request(**changes) -> Img2ImgRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="Euler a", steps=8, width=64, height=64,
                seed=100, init_images=[picture()], denoising_strength=0.75)
    return Img2ImgRequest(**{**base, **changes})


def steps_run(model, req, **kwargs) -> tuple[list[int], object]:
    seen = []
    result = img2img(model, req, on_step=lambda e: seen.append((e.step, e.steps)), **kwargs)
    return seen, result


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_denoising_zero_is_the_vae_round_trip(models):
    model = models.switch_checkpoint("sd1")
    seen, result = steps_run(model, request(denoising_strength=0.0))
    expected = decode(model, encode(model, torch.from_numpy(np.asarray(picture(), dtype=np.float32) / 255).permute(2, 0, 1)[None]))[0]
    assert seen == []  # nothing sampled
    assert np.array_equal(pixels(result.images[0]), pixels(expected))


@pytest.mark.parametrize("steps, strength, fix, expected", [
    (20, 0.75, False, 16),  # int(0.75 * 20) + 1
    (20, 0.5, False, 11),
    (10, 1.0, False, 10),  # min(d, 0.999): int(9.99) + 1
    (20, 0.01, False, 1),
    (8, 0.3, True, 8),  # img2img_fix_steps: exactly the steps set
])
def test_steps_run_follow_a1111(models, steps, strength, fix, expected):
    model = models.switch_checkpoint("sd1")
    seen, _ = steps_run(model, request(steps=steps, denoising_strength=strength, sampler_name="Euler"), fix_steps=fix)
    assert [s for s, _ in seen] == list(range(1, expected + 1))
    assert {total for _, total in seen} == {expected}


def test_second_order_sampler_counts_steps_too(models):
    model = models.switch_checkpoint("sd1")
    seen, result = steps_run(model, request(steps=10, denoising_strength=0.5, sampler_name="DPM++ SDE"))
    assert len(seen) == 6 and len(result.images) == 1


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_resize_mode_renders_at_the_chosen_size(models, mode):
    model = models.switch_checkpoint("sd1")
    source = picture(96, 48)
    result = img2img(model, request(init_images=[source], resize_mode=mode, width=64, height=64, denoising_strength=0.0))
    assert result.images[0].size == (64, 64)
    if mode == 3:  # the latent of the 96x48 picture, resized to 8x8 cells
        latent = encode(model, torch.from_numpy(np.asarray(source, dtype=np.float32) / 255).permute(2, 0, 1)[None])
        assert latent.shape[-2:] == (6, 12)
        expected = torch.nn.functional.interpolate(latent, size=(8, 8), mode="bilinear")
        assert torch.allclose(result.latents[0], expected)
    else:  # the picture resized by the mode, then encoded
        resized = resize_image(mode, source, 64, 64)
        expected = encode(model, torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1)[None])
        assert torch.allclose(result.latents[0], expected)
    if mode in (1, 2):  # crop vs fit differ
        other = resize_image(3 - mode, source, 64, 64)
        assert not np.array_equal(np.asarray(resize_image(mode, source, 64, 64)), np.asarray(other))


def test_whole_picture_inpaint_keeps_every_pixel_outside_the_blurred_mask(models):
    model = models.switch_checkpoint("sd1")
    mask = square_mask()
    result = img2img(model, request(mask=mask, mask_blur=4, denoising_strength=0.9))
    out, original = pixels(result.images[0]), pixels(picture())
    blurred = np.asarray(masks.blur_mask(mask, 4, 4))
    outside = blurred == 0
    assert outside.sum() > 2500  # most of the picture
    assert np.array_equal(out[outside], original[outside])
    inside = np.asarray(mask) == 255
    assert np.abs(out[inside] - original[inside]).mean() > 10  # and the masked square was repainted
    assert result.extra_parameters["Mask blur"] == 4 and "Inpaint area" not in result.extra_parameters


def test_inverted_mask_repaints_the_other_part(models):
    model = models.switch_checkpoint("sd1")
    mask = square_mask(box=(16, 16, 48, 48))
    result = img2img(model, request(mask=mask, mask_blur=0, inpainting_mask_invert=1, denoising_strength=0.9))
    out, original = pixels(result.images[0]), pixels(picture())
    inside = np.asarray(mask) == 255
    assert np.array_equal(out[inside], original[inside])
    assert np.abs(out[~inside] - original[~inside]).mean() > 10
    assert result.extra_parameters["Mask mode"] == "Inpaint not masked"


def test_only_masked_changes_only_the_padded_crop(models):
    model = models.switch_checkpoint("sd1")
    source = picture(128, 128)
    mask = square_mask((128, 128), (80, 80, 96, 96))
    req = request(init_images=[source], mask=mask, mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=8,
                  width=64, height=64, denoising_strength=0.9)
    result = img2img(model, req)
    assert result.images[0].size == (128, 128)  # the original's size, as in A1111
    out, original = pixels(result.images[0]), pixels(source)
    x1, y1, x2, y2 = masks.expand_crop_region((72, 72, 104, 104), 64, 64, 128, 128)
    region = np.zeros((128, 128), bool)
    region[y1:y2, x1:x2] = True
    assert np.array_equal(out[~region], original[~region])
    inside = np.asarray(mask) == 255
    assert np.abs(out[inside] - original[inside]).mean() > 10
    assert result.extra_parameters["Inpaint area"] == "Only masked" and result.extra_parameters["Masked area padding"] == 8


def test_masked_content_modes_start_from_the_documented_latent(models):
    model = models.switch_checkpoint("sd1")
    init = torch.randn(2, 4, 8, 8)
    keep = torch.ones(2, 1, 8, 8)
    keep[:, :, 2:6, 2:6] = 0
    nothing = masked_content_latent(init, keep, MaskedContent.LATENT_NOTHING, [5, 6], "CPU")
    assert torch.equal(nothing[:, :, 2:6, 2:6], torch.zeros(2, 4, 4, 4)) and torch.equal(nothing[:, :, 0], init[:, :, 0])
    noised = masked_content_latent(init, keep, MaskedContent.LATENT_NOISE, [5, 6], "CPU")
    seed_noise = noise_mod.batch_noise((4, 8, 8), [5, 6], None, 0.0, None, "CPU")
    assert torch.allclose(noised[:, :, 2:6, 2:6], seed_noise[:, :, 2:6, 2:6]) and torch.equal(noised[:, :, 0], init[:, :, 0])
    assert torch.equal(masked_content_latent(init, keep, 1, [5, 6], "CPU"), init)
    # "fill" paints the hole with the surroundings before encoding; "original" leaves the picture.
    mask = square_mask()
    filled = prepare(request(mask=mask, mask_blur=0, inpainting_fill=0)).images[0].pixels
    original = prepare(request(mask=mask, mask_blur=0, inpainting_fill=1)).images[0].pixels
    hole = torch.from_numpy(np.asarray(mask) == 255)
    assert torch.equal(filled[:, ~hole], original[:, ~hole])
    assert not torch.allclose(filled[:, hole], original[:, hole], atol=0.05)
    # through the engine each mode runs and keeps the outside
    for content in range(4):
        out = img2img(model, request(mask=mask, mask_blur=0, inpainting_fill=content, denoising_strength=0.8)).images[0]
        assert np.array_equal(pixels(out)[~hole.numpy()], pixels(picture())[~hole.numpy()]), content


def test_empty_mask_runs_img2img_and_says_so(models):
    model = models.switch_checkpoint("sd1")
    result = img2img(model, request(mask=Image.new("L", (64, 64), 0)))
    assert result.images[0].size == (64, 64)
    assert any("mask is empty" in note for note in result.notes)
    assert "Mask blur" not in result.extra_parameters


def test_mask_of_another_size_is_resized_and_said(models):
    model = models.switch_checkpoint("sd1")
    result = img2img(model, request(mask=square_mask((32, 32), (12, 12, 20, 20)), mask_blur=0, denoising_strength=0.8))
    assert any("resized" in note for note in result.notes)
    out, original = pixels(result.images[0]), pixels(picture())
    assert np.array_equal(out[:16], original[:16])  # the top quarter is far from the scaled-up square


def test_odd_image_modes_are_flattened(models):
    model = models.switch_checkpoint("sd1")
    rgba = picture().convert("RGBA")
    rgba.putalpha(128)
    sixteen = Image.fromarray((np.asarray(picture().convert("L"), dtype=np.uint16) * 257)).convert("I;16")
    for image in (rgba, picture().convert("P"), sixteen, picture().convert("CMYK"), picture().convert("LA")):
        result = img2img(model, request(init_images=[image], denoising_strength=0.0))
        assert result.images[0].mode == "RGB" and result.images[0].size == (64, 64), image.mode


def test_bad_inputs_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(UserError, match="needs an image"):
        request(init_images=[]).validate()
    with pytest.raises(UserError, match="megapixels"):
        check_inputs(request(init_images=[Image.new("RGB", (3000, 3000))]), max_megapixels=4)
    broken = tmp_path / "cut.png"
    buffer = io.BytesIO()
    picture(256, 256).save(buffer, format="PNG")
    data = buffer.getvalue()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="could not be read"):
        check_inputs(request(init_images=[Image.open(broken)]), max_megapixels=4)
    with pytest.raises(UserError, match="denoising_strength"):
        request(denoising_strength=1.5).validate()
    with pytest.raises(UserError, match="multiple of 8"):
        request(width=63).validate()


def test_inpainting_unet_gets_mask_and_masked_image(models):
    model = models.switch_checkpoint("inpaint")
    mask = square_mask()
    result = img2img(model, request(mask=mask, mask_blur=0, denoising_strength=1.0))
    hole = np.asarray(mask) == 255
    assert np.array_equal(pixels(result.images[0])[~hole], pixels(picture())[~hole])
    plain = img2img(model, request(denoising_strength=0.5))
    assert plain.images[0].size == (64, 64)


def test_batches_use_consecutive_seeds_and_cycle_init_images(models):
    model = models.switch_checkpoint("sd1")
    result = img2img(model, request(init_images=[picture(), picture().transpose(Image.FLIP_LEFT_RIGHT)], batch_size=2, n_iter=2, steps=4))
    assert result.image_seeds == [100, 101, 102, 103] and len(result.images) == 4
    single = img2img(model, request(init_images=[picture().transpose(Image.FLIP_LEFT_RIGHT)], seed=101, steps=4))
    assert torch.allclose(result.latents[0][1], single.latents[0][0], rtol=1e-4, atol=1e-3)


def hires_request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", sampler_name="Euler a", steps=4, width=64, height=64, seed=7, enable_hr=True,
                hr_scale=2.0, hr_second_pass_steps=3, denoising_strength=0.6)
    return GenerationRequest(**{**base, **changes})


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Lanczos"])
def test_hires_fix_makes_the_target_size(models, upscaler):
    model = models.switch_checkpoint("sd1")
    seen = []
    result = txt2img(model, hires_request(hr_upscaler=upscaler), on_step=lambda e: seen.append((e.step, e.steps)))
    assert result.images[0].size == (128, 128)
    assert [s for s, _ in seen] == list(range(1, 8)) and {t for _, t in seen} == {7}  # 4 + exactly 3 hires steps
    assert result.extra_parameters == {"Denoising strength": 0.6, "Hires upscale": 2.0, "Hires steps": 3, "Hires upscaler": upscaler}


def test_hires_resize_to_crops_to_the_target(models):
    model = models.switch_checkpoint("sd1")
    result = txt2img(model, hires_request(width=64, height=96, hr_resize_x=128, hr_resize_y=128))
    assert result.images[0].size == (128, 128)
    assert result.extra_parameters["Hires resize"] == "128x128" and "Hires upscale" not in result.extra_parameters
    wide = txt2img(model, hires_request(hr_resize_x=96, hr_resize_y=0, hr_sampler_name="Euler", hr_prompt="a blue square"))
    assert wide.images[0].size == (96, 96)
    assert wide.extra_parameters["Hires sampler"] == "Euler" and wide.extra_parameters["Hires prompt"] == "a blue square"


def test_hires_first_pass_is_the_plain_txt2img(models):
    """The first pass is untouched by hires: with denoising 0 the result is the plain image's latent, upscaled."""
    model = models.switch_checkpoint("sd1")
    plain = txt2img(model, hires_request(enable_hr=False))
    upscaled = txt2img(model, hires_request(denoising_strength=0.0))
    expected = torch.nn.functional.interpolate(plain.latents[0], size=(16, 16), mode="bilinear")
    assert torch.allclose(upscaled.latents[0], expected, atol=1e-5)
