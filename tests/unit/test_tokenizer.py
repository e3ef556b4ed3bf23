"""The offline CLIP tokenizer: exact ids, both padding styles, caching and failure messages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from modules.checkpoints import tokenizer as clip_tokenizer
from modules.checkpoints.tokenizer import (
    OPENCLIP_PAD_TOKEN,
    SD1_PAD_TOKEN,
    ensure_tokenizer_files,
    load_clip_tokenizer,
)
from modules.errors import ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ASTRONAUT = "a photograph of an astronaut riding a horse"
ASTRONAUT_IDS = [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def sd1_tokenizer(cache_dir: Path):
    return load_clip_tokenizer(cache_dir)


@pytest.fixture(scope="module")
def openclip_tokenizer(cache_dir: Path):
    return load_clip_tokenizer(cache_dir, OPENCLIP_PAD_TOKEN)


@pytest.mark.parametrize("style", ["sd1", "openclip"])
def test_reference_prompt_ids(style: str, sd1_tokenizer, openclip_tokenizer) -> None:
    tokenizer = sd1_tokenizer if style == "sd1" else openclip_tokenizer
    assert tokenizer(ASTRONAUT).input_ids == ASTRONAUT_IDS
    assert len(tokenizer) == 49408
    assert tokenizer.convert_tokens_to_ids(["!", "!</w>", "<|startoftext|>", "<|endoftext|>"]) == [0, 256, BOS, EOS]
    assert tokenizer.model_max_length == 77


def test_sd1_pads_with_end_of_text(sd1_tokenizer) -> None:
    ids = sd1_tokenizer(ASTRONAUT, padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[:10] == ASTRONAUT_IDS
    assert set(ids[10:]) == {EOS}
    assert sd1_tokenizer.pad_token_id == EOS


def test_openclip_pads_with_exclamation_mark(openclip_tokenizer) -> None:
    ids = openclip_tokenizer(ASTRONAUT, padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[:10] == ASTRONAUT_IDS
    assert set(ids[10:]) == {0}
    assert openclip_tokenizer.pad_token_id == 0


@pytest.mark.parametrize("style", ["sd1", "openclip"])
def test_exclamation_marks_in_text_are_text(style: str, sd1_tokenizer, openclip_tokenizer) -> None:
    # open_clip encodes "! !! !!!" as 256, 748, 995; an "!" pad token must not capture them
    # (diffusers issue #4153).
    tokenizer = sd1_tokenizer if style == "sd1" else openclip_tokenizer
    assert tokenizer("! !! !!!").input_ids == [BOS, 256, 748, 995, EOS]
    assert tokenizer("hello!").input_ids == [BOS, 3306, 256, EOS]


def test_long_prompt_truncates_to_77_with_end_of_text_last(sd1_tokenizer, openclip_tokenizer) -> None:
    prompt = ", ".join(["a very detailed photograph of a red fox in the snow"] * 20)
    for tokenizer in (sd1_tokenizer, openclip_tokenizer):
        assert len(tokenizer(prompt).input_ids) > 77
        ids = tokenizer(prompt, truncation=True, max_length=77, padding="max_length").input_ids
        assert len(ids) == 77
        assert ids[0] == BOS and ids[-1] == EOS
        assert EOS not in ids[:-1]


def test_files_are_written_once_and_reused(tmp_path: Path) -> None:
    folder = ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN)
    names = {p.name for p in folder.iterdir()}
    assert names == {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 48894
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    assert ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    # Only the finished folder is left: no staging folder survives a successful write.
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_styles_get_separate_folders(tmp_path: Path) -> None:
    sd1 = ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN)
    openclip = ensure_tokenizer_files(tmp_path, OPENCLIP_PAD_TOKEN)
    assert sd1 != openclip and sd1.parent == openclip.parent == tmp_path
    with pytest.raises(ValueError, match="pad token"):
        ensure_tokenizer_files(tmp_path, "<pad>")


def test_incomplete_folder_is_rebuilt(tmp_path: Path) -> None:
    folder = ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN)
    (folder / "merges.txt").unlink()
    assert ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN) == folder
    assert (folder / "merges.txt").is_file()
    assert load_clip_tokenizer(tmp_path)(ASTRONAUT).input_ids == ASTRONAUT_IDS


def test_missing_open_clip_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        clip_tokenizer.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "open_clip" else real_find_spec(name, *args),
    )
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps open-clip-torch"):
        ensure_tokenizer_files(tmp_path, SD1_PAD_TOKEN)
    assert not any(tmp_path.iterdir())
