"""Third-party readers read the files Easel writes (REFERENCE.md section 1, "Readers need").

PNG, JPEG and WebP files are written by ``image_bytes_with_infotext`` with text from
``create_infotext`` and read back, unmodified, by two readers people use on A1111 images:

- sd-parsers (``requirements-dev.txt``; installs normally, needs only Pillow), through its
  ``ParserManager``;
- sd-prompt-reader (``requirements-test-nodeps.txt``, installed with ``--no-deps``: its
  dependencies are GUI toolkits). Only ``sd_prompt_reader.image_data_reader`` is imported: it and
  the ``format`` parsers it uses need Pillow and piexif only (``utility`` tolerates the missing
  customtkinter / pyperclip).

Both are test-only. Without them the tests are skipped on a developer's machine and fail when
``CI`` is set, so the compatibility claim can never pass by not running.

A hand-built A1111 file (REFERENCE.md's first example, saved the way A1111's ``images.py`` saves
it) checks the other direction: our reader gets exactly the documented fields, and both
third-party readers see the same thing in it as in the file Easel writes for the same image.
"""

from __future__ import annotations

import importlib
import io
import os
from pathlib import Path
from types import ModuleType

import piexif
import piexif.helper
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.generation.request import GenerationRequest
from modules.infotext import create_infotext, image_bytes_with_infotext, parse_infotext, read_infotext

NODEPS_HINT = ".venv/bin/pip install --no-deps -r requirements-test-nodeps.txt"
DEV_HINT = ".venv/bin/pip install -r requirements-dev.txt"
PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}

# Everything a real prompt holds that a naive reader could trip on: commas, colons, quotes,
# emphasis weights, an escaped bracket, a LoRA tag, a second line, non-Latin text and emoji (the
# PNG text then goes in an iTXt chunk). No character whose UTF-16 code unit ends in 0xD8-0xDF:
# see test_sd_prompt_reader_cannot_read_some_latin_letters_in_jpeg_and_webp.
PROMPT = (
    'a "quoted" photo of a cat: sitting, (masterpiece:1.2), [detailed], \\(literal\\) <lora:detail:0.8>\n'
    "second line, 猫の写真, кошка, café, 🎨✨"
)
NEGATIVE = 'blurry, lowres, (worst quality:1.4), text: "watermark", 低品質 😡'
MODEL = "dreamshaper_8"
MODEL_SHA256 = "879db523c30d3b9017143d56705015e15a2cb5628762c11d086fed9538abd7fd"
MODEL_HASH = MODEL_SHA256[:10]
SUBSEED = 987654321
# One seed per format, so that no reader can pass a test with the text of an earlier file.
SEEDS = {"png": 3000000101, "jpg": 3000000102, "webp": 3000000103}
# A quoted value holding ", " and ": " as A1111 writes it, to show the readers' naive splitting of
# the parameters line does not spill into the keys checked here.
EXTRA = {"Lora hashes": "detail: 0123456789ab"}

# REFERENCE.md section 1, first example (a real A1111 1.10.1 line, prompts replaced), exactly.
A1111_EXAMPLE = (
    "a photo of a corgi, (masterpiece:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1170634956, Size: 640x896, "
    "Model hash: 92970aa785, Model: dreamlike-photoreal-2.0, Version: 1.10.1"
)
A1111_EXAMPLE_REQUEST = GenerationRequest(
    prompt="a photo of a corgi, (masterpiece:1.2)", negative_prompt="blurry, lowres", steps=25, width=640, height=896
)
A1111_EXAMPLE_PARSED = {
    "Prompt": "a photo of a corgi, (masterpiece:1.2)",
    "Negative prompt": "blurry, lowres",
    "Steps": "25",
    "Sampler": "DPM++ 2M",
    "Schedule type": "Karras",
    "CFG scale": "7",
    "Seed": "1170634956",
    "Size-1": "640",
    "Size-2": "896",
    "Model hash": "92970aa785",
    "Model": "dreamlike-photoreal-2.0",
    "Version": "1.10.1",
    # Keys A1111 fills in when they are missing (REFERENCE.md, "Parsing back" step 4).
    "Clip skip": "1",
    "RNG": "GPU",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "Emphasis": "Original",
}


# --- the readers ------------------------------------------------------------------------------


def _require(module: str, install: str) -> ModuleType:
    """The module, or a skip (a fail when CI is set) that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f"{module} is not installed ({error}); install it with: {install}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


# sd-parsers caches the Exif text of the last image it read by id(image): a new image that gets a
# freed image's id would be given the old text. Every image handed to it is kept open here until
# the module ends, so ids are never reused (and each format's file has its own seed anyway).
_OPENED: list[Image.Image] = []


def _sd_parsers_read(data: bytes):
    sd_parsers = _require("sd_parsers", DEV_HINT)
    image = Image.open(io.BytesIO(data))
    _OPENED.append(image)
    return sd_parsers.ParserManager().parse(image)


def _sd_prompt_reader_read(data: bytes):
    reader_module = _require("sd_prompt_reader.image_data_reader", NODEPS_HINT)
    return reader_module.ImageDataReader(io.BytesIO(data)), reader_module.BaseFormat.Status


@pytest.fixture(scope="module", autouse=True)
def _close_opened():
    yield
    while _OPENED:
        _OPENED.pop().close()


# --- the files --------------------------------------------------------------------------------


def _request(seed: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        sampler_name="DPM++ 2M",
        scheduler="Automatic",
        steps=28,
        cfg_scale=7.5,
        width=512,
        height=768,
        seed=seed,
        subseed=SUBSEED,
        subseed_strength=0.35,
        clip_skip=2,
    )


def _easel_file(fmt: str, *, mode: str = "RGB", prompt: str | None = None) -> tuple[str, bytes]:
    """(infotext, file bytes) as Easel writes them for ``fmt``."""
    seed = SEEDS[fmt]
    text = create_infotext(
        _request(seed), seed, SUBSEED, model_name=MODEL, model_hash=MODEL_SHA256, extra=EXTRA, prompt=prompt
    )
    image = Image.new(mode, (512, 768), (180, 120, 90, 128)[: len(mode)])
    return text, image_bytes_with_infotext(image, text, fmt)


@pytest.fixture(scope="module")
def easel_files() -> dict[str, tuple[str, bytes]]:
    return {fmt: _easel_file(fmt) for fmt in PIL_FORMATS}


def test_the_files_hold_what_create_infotext_wrote(easel_files):
    """The premise of the reader tests below: the text they read is the full infotext."""
    for fmt, (text, data) in easel_files.items():
        assert text.endswith(
            f"Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: {SEEDS[fmt]}, Size: 512x768, "
            f"Model hash: {MODEL_HASH}, Model: {MODEL}, Variation seed: {SUBSEED}, Variation seed strength: 0.35, "
            'Clip skip: 2, Lora hashes: "detail: 0123456789ab", Version: v1.10.1'
        )
        assert read_infotext(data) == text
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == PIL_FORMATS[fmt]
            # sd-prompt-reader json.loads an IFD0 Model tag (0x0110) and crashes on plain text.
            assert 0x0110 not in image.getexif()


# --- sd-parsers -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", PIL_FORMATS)
def test_sd_parsers_reads_easel_files(easel_files, fmt):
    text, data = easel_files[fmt]
    info = _sd_parsers_read(data)

    assert info is not None, f"sd-parsers found no parameters in Easel's {fmt}"
    assert info.generator.name == "AUTOMATIC1111"
    assert info.raw_parameters["parameters"] == text
    (sampler,) = info.samplers
    assert sampler.name == "DPM++ 2M"
    # sd-parsers keeps values as the text it split out, with its own lower-case keys.
    assert sampler.parameters == {"scheduler": "Karras", "cfg_scale": "7.5", "seed": str(SEEDS[fmt]), "steps": "28"}
    assert (sampler.model.name, sampler.model.hash) == (MODEL, MODEL_HASH)
    assert [p.value for p in sampler.prompts] == [PROMPT]
    assert [p.value for p in sampler.negative_prompts] == [NEGATIVE]
    assert info.metadata["Size"] == "512x768"
    assert info.metadata["Variation seed"] == str(SUBSEED)
    assert info.metadata["Variation seed strength"] == "0.35"
    assert info.metadata["Clip skip"] == "2"
    assert info.metadata["Version"] == "v1.10.1"


# --- sd-prompt-reader -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", PIL_FORMATS)
def test_sd_prompt_reader_reads_easel_files(easel_files, fmt):
    text, data = easel_files[fmt]
    reader, status = _sd_prompt_reader_read(data)

    assert reader.status == status.READ_SUCCESS
    assert reader.tool == "A1111 webUI"
    assert reader.format == PIL_FORMATS[fmt]
    assert reader.positive == PROMPT
    assert reader.negative == NEGATIVE
    # It cuts the text at the first "\nSteps:", so the whole parameters line is its "setting".
    assert reader.setting == text.splitlines()[-1]
    assert reader.parameter == {
        "model": MODEL,
        "sampler": "DPM++ 2M",  # its summary has no schedule; "Schedule type" stays in `setting`
        "seed": str(SEEDS[fmt]),
        "cfg": "7.5",
        "steps": "28",
        "size": "512x768",
    }
    assert (reader.width, reader.height) == ("512", "768")


@pytest.mark.parametrize("fmt", PIL_FORMATS)
def test_sd_prompt_reader_cannot_read_some_latin_letters_in_jpeg_and_webp(fmt):
    """A reader bug, not ours (A1111 writes the same bytes). For JPEG and WebP sd-prompt-reader
    1.3.5 first decodes the UserComment with ``user_comment[8:].decode("utf-16")``, only to look
    for SwarmUI's "sui_image_params". Without a byte-order mark Python's "utf-16" is little-endian,
    so the UTF-16BE text is read byte-swapped, and a character whose code unit ends in 0xD8-0xDF
    (ß U+00DF, Ø U+00D8, Ü U+00DC, katakana ヘ-ミ U+30D8-U+30DF as in "ミク") becomes a lone
    surrogate: the decode raises, its broad ``except`` turns that into FORMAT_ERROR, and the file
    reads as empty. PNG is unaffected, and sd-parsers reads all three formats."""
    prompt = "Straße in Øresund, Übergröße, 初音ミク"
    text, data = _easel_file(fmt, prompt=prompt)
    if fmt != "png":
        with Image.open(io.BytesIO(data)) as image:
            user_comment = piexif.load(image.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
        assert user_comment == b"UNICODE\x00" + text.encode("utf-16-be")  # exactly A1111's bytes

    reader, status = _sd_prompt_reader_read(data)
    if fmt == "png":
        assert (reader.status, reader.positive) == (status.READ_SUCCESS, prompt)
    else:
        assert (reader.status, reader.positive) == (status.FORMAT_ERROR, "")

    info = _sd_parsers_read(data)
    assert info is not None and [p.value for p in info.prompts] == [prompt]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # sd-prompt-reader's NovelAI path on Pillow 12
def test_sd_prompt_reader_reads_webp_saved_from_an_rgba_image():
    text, data = _easel_file("webp", mode="RGBA")
    info = _sd_parsers_read(data)  # sd-parsers reads it either way
    assert info is not None and info.raw_parameters["parameters"] == text

    reader, status = _sd_prompt_reader_read(data)
    assert reader.status == status.READ_SUCCESS
    assert reader.positive == PROMPT


# --- a file A1111 wrote -----------------------------------------------------------------------


def _a1111_file(tmp_path: Path, fmt: str, text: str) -> Path:
    """``text`` saved the way A1111 1.10.1's ``images.save_image_with_geninfo`` saves it."""
    path = tmp_path / f"a1111.{fmt}"
    image = Image.new("RGB", (640, 896), (90, 120, 180))
    if fmt == "png":
        info = PngInfo()
        info.add_text("parameters", text)
        image.save(path, format="PNG", pnginfo=info)
    else:
        image.save(path, format=PIL_FORMATS[fmt], quality=80, lossless=False)
        comment = piexif.helper.UserComment.dump(text, encoding="unicode")
        piexif.insert(piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}}), str(path))
    return path


def test_parse_infotext_reads_the_documented_a1111_example_exactly():
    assert parse_infotext(A1111_EXAMPLE) == A1111_EXAMPLE_PARSED


@pytest.mark.parametrize("fmt", PIL_FORMATS)
def test_a1111_file_reads_as_documented_and_as_easels_own(tmp_path, fmt):
    path = _a1111_file(tmp_path, fmt, A1111_EXAMPLE)
    assert read_infotext(path) == A1111_EXAMPLE
    assert parse_infotext(read_infotext(path)) == A1111_EXAMPLE_PARSED

    # Easel writes the same text for the same image, so the readers cannot tell the files apart.
    easel_text = create_infotext(
        A1111_EXAMPLE_REQUEST,
        1170634956,
        0,
        model_name="dreamlike-photoreal-2.0",
        model_hash="92970aa785",
        version="1.10.1",
    )
    assert easel_text == A1111_EXAMPLE
    easel_data = image_bytes_with_infotext(Image.new("RGB", (640, 896), (90, 120, 180)), easel_text, fmt)
    a1111_data = path.read_bytes()

    a1111_info, easel_info = _sd_parsers_read(a1111_data), _sd_parsers_read(easel_data)
    assert a1111_info is not None and easel_info is not None
    assert easel_info.samplers == a1111_info.samplers
    assert easel_info.metadata == a1111_info.metadata
    (sampler,) = a1111_info.samplers
    assert sampler.parameters == {"scheduler": "Karras", "cfg_scale": "7", "seed": "1170634956", "steps": "25"}
    assert [p.value for p in sampler.prompts] == ["a photo of a corgi, (masterpiece:1.2)"]

    (a1111_reader, status), (easel_reader, _) = _sd_prompt_reader_read(a1111_data), _sd_prompt_reader_read(easel_data)
    assert a1111_reader.status == easel_reader.status == status.READ_SUCCESS
    for field in ("tool", "positive", "negative", "setting", "parameter", "width", "height"):
        assert getattr(easel_reader, field) == getattr(a1111_reader, field), field
    assert a1111_reader.parameter == {
        "model": "dreamlike-photoreal-2.0",
        "sampler": "DPM++ 2M",
        "seed": "1170634956",
        "cfg": "7",
        "steps": "25",
        "size": "640x896",
    }
