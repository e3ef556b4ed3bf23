"""Infotext: exact A1111 text, parsing back, and storage in PNG / JPEG / WebP."""

from __future__ import annotations

import io
from dataclasses import asdict, fields

import piexif
import pytest
from PIL import Image

from modules.errors import UserError
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.infotext import (
    A1111_VERSION,
    ImageSaveError,
    UnreadableImageError,
    create_infotext,
    image_bytes_with_infotext,
    parse_infotext,
    read_infotext,
    restore_request,
)
from modules.infotext.create import sampler_and_schedule

EVERY_FIELD = {f.name for f in fields(Img2ImgRequest)}


def request_fields(params: dict) -> dict:
    """What restoring `params` sets when every request field is there to take it."""
    return restore_request(params, EVERY_FIELD).fields


SD15 = dict(model_name="v1-5-pruned-emaonly", model_hash="6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa")

# --- building ---------------------------------------------------------------------------------

EXACT_CASES = [
    pytest.param(
        GenerationRequest(
            prompt="a photo of a corgi, (masterpiece:1.2)", negative_prompt="blurry, lowres", steps=25, width=640, height=896
        ),
        (1170634956, 0),
        dict(model_name="dreamlike-photoreal-2.0", model_hash="92970aa785", version="1.10.1"),
        "a photo of a corgi, (masterpiece:1.2)\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1170634956, Size: 640x896, "
        "Model hash: 92970aa785, Model: dreamlike-photoreal-2.0, Version: 1.10.1",
        id="reference-example-1",
    ),
    pytest.param(
        GenerationRequest(
            prompt="1girl, red hair <lora:detail:0.8>", negative_prompt="EasyNegative, lowres", sampler_name="Euler a",
            width=512, height=768, clip_skip=2,
        ),
        (42, 43),
        dict(
            **SD15, vae_name="vae-ft-mse-840000-ema-pruned.safetensors", vae_hash="735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75",
            extra={"Denoising strength": 0.7, "Hires upscale": 2.0, "Hires steps": 10, "Hires upscaler": "Latent",
                   "Lora hashes": "detail: 0123456789ab", "TI hashes": "EasyNegative: c74b4e810b03"},
        ),
        "1girl, red hair <lora:detail:0.8>\n"
        "Negative prompt: EasyNegative, lowres\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
        "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.7, Clip skip: 2, Hires upscale: 2, "
        'Hires steps: 10, Hires upscaler: Latent, Lora hashes: "detail: 0123456789ab", '
        'TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1',
        id="reference-example-2-core-key-from-extra-goes-to-its-place",
    ),
    pytest.param(
        GenerationRequest(prompt="a red hat", seed=1234),
        (1234, 0),
        dict(**SD15, extra={"Denoising strength": 0.75, "Mask blur": 4, "Inpaint area": "Only masked",
                            "Masked area padding": 32, "Masked content": "fill"}),
        "a red hat\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, "
        "Inpaint area: Only masked, Masked area padding: 32, Masked content: fill, Version: v1.10.1",
        id="reference-example-3-no-negative-line",
    ),
    pytest.param(
        GenerationRequest(
            prompt="cat", sampler_name="Euler a", cfg_scale=7.5, subseed_strength=0.25, seed_resize_from_w=768,
            seed_resize_from_h=512, eta_noise_seed_delta=31337, rng_source="CPU", tiling=True,
        ),
        (5, 99),
        dict(**SD15, extra={"User": "alice", "Emphasis": "No norm"}),
        "cat\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 5, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 99, Variation seed strength: 0.25, "
        "Seed resize from: 768x512, ENSD: 31337, RNG: CPU, Tiling: True, Emphasis: No norm, Version: v1.10.1, User: alice",
        id="every-optional-key-and-user-after-version",
    ),
    pytest.param(
        GenerationRequest(prompt="", sampler_name="DPM++ 2M", eta_noise_seed_delta=31337, clip_skip=1, subseed_strength=0.0,
                          seed_resize_from_w=512, seed_resize_from_h=0),
        (7, 8),
        dict(model_name=None, model_hash=None, version=None),
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 7, Size: 512x512",
        id="defaults-left-out-and-empty-prompt-stripped",
    ),
    pytest.param(
        GenerationRequest(prompt="x", sampler_name="DPM++ 2M SDE Karras", scheduler="Automatic", cfg_scale=4.25),
        (1, 2),
        dict(**SD15, extra={"Note": "line one\nline two", "Hires prompt": 'say "hi": now', "Flag": "Flag"}, version="v1.10.1"),
        "x\n"
        "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 4.25, Seed: 1, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
        r'Note: "line one\nline two", Hires prompt: "say \"hi\": now", Flag, Version: v1.10.1',
        id="schedule-in-sampler-name-and-quoting",
    ),
]


@pytest.mark.parametrize("request_, seeds, kwargs, expected", EXACT_CASES)
def test_create_infotext_matches_a1111_text_exactly(request_, seeds, kwargs, expected):
    assert create_infotext(request_, *seeds, **kwargs) == expected


@pytest.mark.parametrize(
    "sampler, scheduler, expected",
    [
        ("DPM++ 2M", "Automatic", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE", "automatic", ("DPM++ 2M SDE", "Exponential")),
        ("Euler a", "Automatic", ("Euler a", "Automatic")),
        ("DDIM", "Automatic", ("DDIM", "Automatic")),
        ("Euler", "exponential", ("Euler", "Exponential")),
        ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Karras", "Exponential", ("DPM++ 2M", "Karras")),  # the name's schedule wins, as in A1111
        ("k_euler_a", "sgm_uniform", ("Euler a", "SGM Uniform")),
    ],
)
def test_sampler_and_schedule_type_labels(sampler, scheduler, expected):
    assert sampler_and_schedule(sampler, scheduler) == expected


def test_unknown_sampler_is_a_user_error():
    with pytest.raises(UserError, match="Unknown sampler"):
        create_infotext(GenerationRequest(sampler_name="Nope"), 1, 1, **SD15)


def test_default_version_is_a1111_release_tag():
    assert A1111_VERSION == "v1.10.1"
    assert create_infotext(GenerationRequest(prompt="a"), 1, 1, **SD15).endswith(", Version: v1.10.1")


# --- parsing ----------------------------------------------------------------------------------


def test_parse_reference_example_2():
    text = EXACT_CASES[1].values[3]
    params = parse_infotext(text)
    assert params["Prompt"] == "1girl, red hair <lora:detail:0.8>"
    assert params["Negative prompt"] == "EasyNegative, lowres"
    assert {k: params[k] for k in ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size-1", "Size-2")} == {
        "Steps": "20", "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": "7", "Seed": "42",
        "Size-1": "512", "Size-2": "768",
    }
    assert params["Lora hashes"] == "detail: 0123456789ab"
    assert params["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert params["VAE"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert params["Clip skip"] == "2"
    assert params["Version"] == "v1.10.1"
    assert "Size" not in params


@pytest.mark.parametrize(
    "text, expected",
    [
        # Fewer than 3 "Key: value" matches: the last line belongs to the prompt.
        ("a cat\nSteps: 20, big", {"Prompt": "a cat\nSteps: 20, big", "Negative prompt": ""}),
        ("Steps: 20, Sampler: Euler, Seed: 3", {"Prompt": "", "Steps": "20", "Sampler": "Euler", "Seed": "3"}),
        (
            "line 1\n  line 2  \nNegative prompt: bad\nworse\nSteps: 20, Sampler: Euler, Seed: 3",
            {"Prompt": "line 1\nline 2", "Negative prompt": "bad\nworse"},
        ),
        ("p\nSteps: 20, Sampler: DPM++ 2M Karras, Seed: 3", {"Sampler": "DPM++ 2M", "Schedule type": "Karras"}),
        ("p\nSteps: 20, Sampler: DPM++ SDE Exponential, Seed: 3", {"Sampler": "DPM++ SDE", "Schedule type": "Exponential"}),
        ("p\nSteps: 20, Sampler: Fancy Karras, Seed: 3", {"Sampler": "Fancy Karras", "Schedule type": "Automatic"}),
        ("p\nSteps: 20, Seed resize from: 768x512, Hires resize: 1024x1024", {
            "Seed resize from-1": "768", "Seed resize from-2": "512", "Hires resize-1": "1024", "Hires resize-2": "1024"}),
        ('p\nSteps: 20, Seed: 1, Broken: "not json\\q"', {"Broken": '"not json\\q"'}),
        (
            "p\nSteps: 20, Seed: 1, Sampler: Euler",
            {"Clip skip": "1", "Schedule type": "Automatic", "RNG": "GPU", "Mask mode": "Inpaint masked",
             "Masked content": "original", "Inpaint area": "Whole picture", "Masked area padding": "32",
             "Hires sampler": "Use same sampler", "Hires schedule type": "Use same scheduler",
             "Hires checkpoint": "Use same checkpoint", "Hires prompt": "", "Hires negative prompt": "",
             "VAE Encoder": "Full", "VAE Decoder": "Full", "Emphasis": "Original"},
        ),
    ],
)
def test_parse_infotext_rules(text, expected):
    params = parse_infotext(text)
    assert {k: params.get(k) for k in expected} == expected


def test_request_fields_converts_types_and_skips_bad_values():
    params = parse_infotext(
        "p\nNegative prompt: n\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: 12.5, Size: 640x448, Clip skip: 2, "
        "Variation seed: 9, Variation seed strength: 0.3, Seed resize from: 320x256, ENSD: 31337, RNG: XYZ, "
        "Tiling: True, Schedule type: Exponential"
    )
    assert request_fields(params) == {
        "prompt": "p", "negative_prompt": "n", "sampler_name": "Euler", "scheduler": "Exponential", "cfg_scale": 7.0,
        "width": 640, "height": 448, "subseed": 9, "subseed_strength": 0.3, "seed_resize_from_w": 320,
        "seed_resize_from_h": 256, "clip_skip": 2, "eta_noise_seed_delta": 31337, "tiling": True,
        **DEFAULT_TASK_FIELDS,
    }
    assert isinstance(request_fields(params)["cfg_scale"], float)
    assert request_fields(parse_infotext("p\nSteps: 20.0, Seed: 4294967295, CFG scale: nan, RNG: NV")) == {
        "prompt": "p", "negative_prompt": "", "steps": 20, "seed": 4294967295, "clip_skip": 1,
        "scheduler": "Automatic", "rng_source": "NV", **DEFAULT_TASK_FIELDS,
    }


# What an infotext without img2img/hires keys sets (A1111's missing-key defaults): pasting a
# txt2img image turns hires off and puts the inpaint controls back to their defaults.
DEFAULT_TASK_FIELDS = {
    "enable_hr": False, "inpainting_mask_invert": 0, "inpainting_fill": 1, "inpaint_full_res": False,
    "inpaint_full_res_padding": 32, "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "", "hr_negative_prompt": "",
}


def test_request_fields_reads_img2img_and_hires_keys():
    params = parse_infotext(
        "a red hat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Denoising strength: 0.75, Mask blur: 4, Mask mode: Inpaint not masked, Inpaint area: Only masked, "
        "Masked area padding: 16, Masked content: latent noise, Noise multiplier: 0.9, Hires resize: 1024x768, "
        "Hires steps: 10, Hires upscaler: Latent (bicubic), Hires sampler: Euler a, Hires prompt: \"a blue hat\", Version: v1.10.1"
    )
    fields = request_fields(params)
    assert {k: fields[k] for k in (
        "denoising_strength", "mask_blur", "inpainting_mask_invert", "inpaint_full_res", "inpaint_full_res_padding",
        "inpainting_fill", "initial_noise_multiplier", "enable_hr", "hr_resize_x", "hr_resize_y", "hr_second_pass_steps",
        "hr_upscaler", "hr_sampler_name", "hr_scheduler", "hr_prompt",
    )} == {
        "denoising_strength": 0.75, "mask_blur": 4, "inpainting_mask_invert": 1, "inpaint_full_res": True,
        "inpaint_full_res_padding": 16, "inpainting_fill": 2, "initial_noise_multiplier": 0.9, "enable_hr": True,
        "hr_resize_x": 1024, "hr_resize_y": 768, "hr_second_pass_steps": 10, "hr_upscaler": "Latent (bicubic)",
        "hr_sampler_name": "Euler a", "hr_scheduler": None, "hr_prompt": "a blue hat",
    }
    # An upscaler Easel does not have (an ESRGAN model) is left at the user's choice, not guessed (and
    # the user is told: tests/unit/test_restore.py).
    assert "hr_upscaler" not in request_fields(parse_infotext("p\nSteps: 20, Seed: 1, Sampler: Euler, Hires upscaler: 4x-UltraSharp"))


# --- storing in images and reading back ---------------------------------------------------------

PROMPTS = [
    pytest.param("a cat, sitting: on a mat", "blurry, lowres", id="commas-colons"),
    pytest.param('she said "hello", (quoted:1.1)\nsecond line', 'no "quotes"\nalso this', id="quotes-newlines"),
    pytest.param("猫が座っている, Кошка, γάτα, قطة", "низкое качество", id="non-latin"),
    pytest.param("🐱 cat 🚀, 👩‍🚀 astronaut", "😡", id="emoji"),
    pytest.param("café crème, naïve", "", id="latin1-no-negative"),
]
REQUEST = GenerationRequest(
    sampler_name="DPM2 a", scheduler="Exponential", steps=31, cfg_scale=6.5, width=640, height=384,
    subseed_strength=0.4, seed_resize_from_w=512, seed_resize_from_h=256, clip_skip=2, eta_noise_seed_delta=31337,
    rng_source="NV", tiling=True,
)


def _request_with(prompt: str, negative: str) -> GenerationRequest:
    return GenerationRequest(**{**asdict(REQUEST), "prompt": prompt, "negative_prompt": negative})


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
@pytest.mark.parametrize("prompt, negative", PROMPTS)
def test_round_trip_through_image_keeps_every_field(fmt, prompt, negative, tmp_path):
    request = _request_with(prompt, negative)
    extra = {"Lora hashes": 'détail: 0123456789ab, "x": ✓', "Note": "ü\nß"}
    text = create_infotext(request, 123456789, 987654321, **SD15, extra=extra)
    data = image_bytes_with_infotext(Image.new("RGB", (32, 24), (200, 10, 30)), text, fmt)
    path = tmp_path / f"image.{fmt}"
    path.write_bytes(data)

    assert read_infotext(data) == text
    assert read_infotext(path) == text
    with open(path, "rb") as file:
        assert read_infotext(file) == text
    with Image.open(path) as image:
        assert image.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt]
        assert read_infotext(image) == text

    params = parse_infotext(read_infotext(path))
    assert params["Lora hashes"] == extra["Lora hashes"]
    assert params["Note"] == extra["Note"]
    assert params["Model hash"] == "6ce0161689"
    assert params["Model"] == "v1-5-pruned-emaonly"
    restored = GenerationRequest.from_dict(request_fields(params))
    expected = asdict(request) | {"seed": 123456789, "subseed": 987654321}
    assert asdict(restored) == expected


def test_png_uses_text_chunk_for_latin1_and_itxt_otherwise():
    image = Image.new("RGB", (8, 8))
    assert b"tEXtparameters\x00caf\xe9" in image_bytes_with_infotext(image, "café\nSteps: 1, Seed: 1, Sampler: Euler", "png")
    data = image_bytes_with_infotext(image, "猫\nSteps: 1, Seed: 1, Sampler: Euler", "PNG")
    assert b"iTXtparameters" in data and b"tEXtparameters" not in data
    assert Image.open(io.BytesIO(data)).info["parameters"] == "猫\nSteps: 1, Seed: 1, Sampler: Euler"


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_exif_user_comment_is_unicode_prefixed_utf16be(fmt):
    text = "猫 🐱\nSteps: 1, Seed: 1, Sampler: Euler"
    data = image_bytes_with_infotext(Image.new("RGBA", (8, 8), (1, 2, 3, 128)), text, fmt)
    exif = Image.open(io.BytesIO(data)).info["exif"]
    if not exif.startswith(b"Exif"):
        exif = b"Exif\x00\x00" + exif
    comment = piexif.load(exif)["Exif"][piexif.ExifIFD.UserComment]
    assert comment == b"UNICODE\x00" + text.encode("utf-16-be")
    assert "Model" not in str(piexif.load(exif)["0th"])  # no IFD0 Model tag (sd-prompt-reader chokes on it)


def test_image_without_infotext_reads_none(tmp_path):
    for fmt in ("png", "jpg", "webp"):
        assert read_infotext(image_bytes_with_infotext(Image.new("RGB", (8, 8)), "", fmt)) is None
    camera = io.BytesIO()
    Image.new("RGB", (8, 8)).save(camera, format="JPEG", exif=piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam"}}))
    assert read_infotext(camera.getvalue()) is None


def test_unknown_format_and_oversized_jpeg_text_are_user_errors():
    with pytest.raises(ImageSaveError, match="png, jpg or webp"):
        image_bytes_with_infotext(Image.new("RGB", (8, 8)), "x", "gif")
    with pytest.raises(ImageSaveError, match="too long to fit in a JPEG"):
        image_bytes_with_infotext(Image.new("RGB", (8, 8)), "x" * 40000, "jpg")
    assert read_infotext(image_bytes_with_infotext(Image.new("RGB", (8, 8)), "x" * 40000, "webp")) == "x" * 40000


def _valid_png() -> bytes:
    return image_bytes_with_infotext(Image.effect_noise((64, 64), 40).convert("RGB"), "a\nSteps: 1, Seed: 1, Sampler: Euler", "png")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.txt", b"just some text, not an image\n", "'notes.txt' is not an image"),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, "'fake.png'"),
        ("empty.png", b"", "'empty.png' is not an image"),
        ("cut.png", _valid_png()[:300], "'cut.png' is damaged or cut off"),
    ],
)
def test_corrupt_or_non_image_files_give_a_clear_user_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError, match=message) as caught:
        read_infotext(path)
    assert isinstance(caught.value, UserError)
    with pytest.raises(UnreadableImageError):
        read_infotext(content)


def test_missing_file_and_folder_are_user_errors(tmp_path):
    with pytest.raises(UnreadableImageError, match="There is no file"):
        read_infotext(tmp_path / "missing.png")
    with pytest.raises(UnreadableImageError):
        read_infotext(tmp_path)
