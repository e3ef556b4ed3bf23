"""Saving images under outputs/: A1111 names and numbers, atomic writes, concurrent jobs."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.infotext import parse_infotext, read_infotext
from modules.outputs import FilenameFields, OutputWriter, expand_pattern, sanitize_filename_part

WHEN = datetime(2024, 5, 1, 13, 45, 9)
INFOTEXT = "a red fox, snow\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: {seed}, Size: 64x48"


def _image(shade: int = 0) -> Image.Image:
    return Image.new("RGB", (64, 48), (shade % 256, 80, 160))


def _save(writer: OutputWriter, seed: int = 1234, **kwargs) -> Path:
    options = dict(seed=seed, prompt="a red fox, snow", model_name="v1-5-pruned-emaonly", when=WHEN) | kwargs
    return writer.save(_image(seed), INFOTEXT.format(seed=seed), **options)


def test_first_images_are_numbered_from_zero_in_a_dated_task_folder(tmp_path):
    writer = OutputWriter(tmp_path)
    first = _save(writer, 1234)
    second = _save(writer, 1235)
    assert first == tmp_path / "txt2img-images" / "2024-05-01" / "00000-1234.png"
    assert second == tmp_path / "txt2img-images" / "2024-05-01" / "00001-1235.png"
    third = _save(writer, 7, task="img2img", fmt="jpg")
    assert third == tmp_path / "img2img-images" / "2024-05-01" / "00000-7.jpg"


def test_counter_continues_after_the_highest_existing_number(tmp_path):
    folder = tmp_path / "txt2img-images" / "2024-05-01"
    folder.mkdir(parents=True)
    for name in ("00003-1.png", "00041-whatever.jpg", "notes.txt", "grid-00099.png"):
        (folder / name).write_bytes(b"")
    assert _save(OutputWriter(tmp_path), 5).name == "00042-5.png"


@pytest.mark.parametrize("fmt, pil_format", [("png", "PNG"), ("jpg", "JPEG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_saved_files_carry_the_infotext(tmp_path, fmt, pil_format):
    path = _save(OutputWriter(tmp_path), 99, fmt=fmt)
    assert path.suffix == ".jpg" if fmt == "jpeg" else path.suffix == f".{fmt}"
    with Image.open(path) as image:
        assert image.format == pil_format and image.size == (64, 48)
    assert read_infotext(path) == INFOTEXT.format(seed=99)
    assert parse_infotext(read_infotext(path))["Seed"] == "99"


REQUEST = GenerationRequest(prompt="ignored", negative_prompt="ugly", steps=28, sampler_name="DPM++ 2M", cfg_scale=7.5,
                            width=768, height=512, clip_skip=2)


@pytest.mark.parametrize(
    "pattern, prompt, expected",
    [
        ("[seed]", "x", "00000-1234.png"),
        ("[seed]-[model_name]", "x", "00000-1234-v1-5 pruned.png"),
        ("[prompt_words]", "A (red:1.2) fox, in the snow! at dawn near a tall tree", "00000-A red 1 2 fox in the snow.png"),
        ("[prompt_words]", "!!! ...", "00000-empty.png"),
        ("[prompt]", 'a <b>: c/d\\e|f?g*h"', "00000-a__b___c_d_e_f_g_h_.png"),
        ("[date]_[datetime]", "x", "00000-2024-05-01_20240501134509.png"),
        ("[datetime<%Y-%m-%d %H:%M>]", "x", "00000-2024-05-01 13_45.png"),
        ("[datetime<%H><UTC>]", "x", "00000-12.png"),
        ("[steps]-[sampler]-[cfg]-[width]x[height]-[clip_skip]", "x", "00000-28-DPM++_2M-7.5-768x512-2.png"),
        ("[model_hash]", "x", "00000-6ce0161689.png"),
        ("[unknown]-[seed]", "x", "00000-[unknown]-1234.png"),
        ("[none]", "x", "00000.png"),
        ("", "x", "00000.png"),
        ("../../[seed]", "x", "00000-.._.._1234.png"),
    ],
)
def test_pattern_tags_expand_like_a1111(tmp_path, pattern, prompt, expected):
    when = WHEN.replace(tzinfo=timezone(timedelta(hours=1)))
    path = OutputWriter(tmp_path).save(
        _image(), "x", pattern=pattern, seed=1234, prompt=prompt, model_name="v1-5 pruned", when=when, request=REQUEST,
        model_hash="6ce0161689b3853acaa03779ec93eafe",
    )
    assert path.name == expected
    assert path.parent == tmp_path / "txt2img-images" / "2024-05-01"


def test_size_tags_fall_back_to_the_image_and_request_tags_stay_without_a_request(tmp_path):
    path = _save(OutputWriter(tmp_path), 1, pattern="[width]x[height]-[steps]")
    assert path.name == "00000-64x48-[steps].png"


def test_long_prompt_is_bounded_and_names_stay_safe(tmp_path):
    prompt = "猫" * 300 + "/" + "a" * 300
    path = _save(OutputWriter(tmp_path), 1, pattern="[prompt]", prompt=prompt)
    assert len(path.name.encode("utf-8")) <= 200
    assert path.name.startswith("00000-猫") and path.name.endswith(".png")
    assert path.parent == tmp_path / "txt2img-images" / "2024-05-01"
    assert sanitize_filename_part(" .a b:c. ") == "_.a_b_c._"
    assert sanitize_filename_part("  lead, trail. ", replace_spaces=False) == "lead, trail"


def test_bad_task_or_format_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a valid task name"):
        _save(OutputWriter(tmp_path), task="../escape")
    with pytest.raises(UserError, match="png, jpg or webp"):
        _save(OutputWriter(tmp_path), fmt="bmp")
    assert not any(tmp_path.rglob("*.*"))


@pytest.mark.parametrize("shared_writer", [True, False], ids=["one-writer", "two-writers"])
def test_two_jobs_saving_at_once_never_collide(tmp_path, shared_writer):
    writers = [OutputWriter(tmp_path)] * 2 if shared_writer else [OutputWriter(tmp_path), OutputWriter(tmp_path)]
    saved: list[Path] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def job(writer: OutputWriter, first_seed: int) -> None:
        start.wait()
        try:
            for seed in range(first_seed, first_seed + 20):
                saved.append(_save(writer, seed))
        except BaseException as error:  # surfaced by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=job, args=(writer, base)) for writer, base in zip(writers, (1000, 2000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    folder = tmp_path / "txt2img-images" / "2024-05-01"
    files = sorted(os.listdir(folder))
    assert len(saved) == len(set(saved)) == len(files) == 40
    assert sorted(int(name[:5]) for name in files) == list(range(40))
    assert not [name for name in files if name.endswith(".tmp")]
    for path in saved:
        seed = int(path.stem.split("-")[1])
        assert read_infotext(path) == INFOTEXT.format(seed=seed)  # complete, readable, its own text


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    writer = OutputWriter(tmp_path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        _save(writer, 1)
    monkeypatch.undo()
    folder = tmp_path / "txt2img-images" / "2024-05-01"
    assert os.listdir(folder) == []
    assert _save(writer, 2).name == "00000-2.png"


def test_expand_pattern_without_writer():
    fields = FilenameFields(seed=5, prompt="hello world", model_name=None, when=WHEN)
    assert expand_pattern("[seed]_[prompt_spaces]_[model_name]", fields) == "5_hello world_[model_name]"
