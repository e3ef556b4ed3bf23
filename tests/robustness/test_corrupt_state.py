"""A damaged settings file or history database never stops Easel: the file is moved aside with a
warning (earlier damaged copies kept), a fresh one is started, and a bad value in a good file
falls back to its default. What tests/unit already covers (not JSON, wrong types and ranges, a
history file of random bytes or truncated mid-page, a newer schema) is not repeated here."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from modules.config import Settings, SettingsStore
from modules.history import HistoryEntry, HistoryStore

PAGE = 4096


@pytest.mark.parametrize("content", [
    b"",  # a crash before the first byte (not written through save(), which renames a whole file)
    b"[1, 2, 3]",  # JSON, but not an object
    b"null",
    b'{"samples_format": "png", "sd_vae": "\xff\xfe broken utf-8"}',
], ids=["empty", "a list", "null", "not utf-8"])
def test_an_unusable_settings_file_is_moved_aside_with_a_warning(tmp_path: Path, caplog, content: bytes):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="modules.config"):
        store = SettingsStore(path)
    assert store.settings == Settings()
    assert not path.exists() and (tmp_path / "config.json.corrupt").read_bytes() == content
    assert "moved it to" in caplog.text and "config.json.corrupt" in caplog.text
    store.update({"samples_format": "webp"})  # a fresh file is started
    assert json.loads(path.read_text())["samples_format"] == "webp"


def test_a_second_damaged_settings_file_does_not_overwrite_the_first(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text("{first")
    SettingsStore(path)
    path.write_text("{second")
    SettingsStore(path)
    assert (tmp_path / "config.json.corrupt").read_text() == "{first"
    assert (tmp_path / "config.json.corrupt.1").read_text() == "{second"  # modules/files.move_aside's numbering


def test_valid_json_with_wrong_types_and_non_finite_numbers_falls_back_per_setting(tmp_path: Path, caplog):
    path = tmp_path / "config.json"
    path.write_text('{"max_input_megapixels": NaN, "show_progress_every_n_steps": Infinity, "samples_save": "yes", '
                    '"sd_checkpoint_cache": 1.5, "grid_save": 1, "samples_format": ["png"], "max_queued_jobs": null, '
                    '"save_txt": true, "unknown_extension.key": {"kept": true}}')
    with caplog.at_level(logging.WARNING, logger="modules.config"):
        store = SettingsStore(path)
    settings, defaults = store.settings, Settings()
    for name in ("max_input_megapixels", "show_progress_every_n_steps", "samples_save", "sd_checkpoint_cache",
                 "grid_save", "samples_format", "max_queued_jobs"):
        assert getattr(settings, name) == getattr(defaults, name), name
    assert settings.save_txt is True  # the good value in the same file is kept
    assert "max_input_megapixels must be a finite number, not nan" in caplog.text
    assert "samples_save must be true or false, not 'yes'" in caplog.text
    assert path.exists()  # a readable file with bad values is not moved aside
    store.save()
    assert json.loads(path.read_text())["unknown_extension.key"] == {"kept": True}
    assert json.loads(path.read_text())["max_input_megapixels"] == defaults.max_input_megapixels


def test_saving_settings_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path):
    path = tmp_path / "config.json"
    store = SettingsStore(path)
    store.update({"samples_format": "jpg"})
    store.extra["unserialisable"] = object()  # json.dump fails half-way through the file, as ENOSPC would
    with pytest.raises(TypeError):
        store.save()
    assert json.loads(path.read_text())["samples_format"] == "jpg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def _filled_history(path: Path, rows: int = 300) -> None:
    with HistoryStore(path) as history:
        for i in range(rows):
            history.record(HistoryEntry("txt2img", 1.0 + i, 0.1, "a long prompt " * 20, "", "Steps: 4", i, "m", None, None, 64, 64, "Euler"))


@pytest.mark.parametrize("damage", ["zeroed page", "garbage page", "cut inside the header page"])
def test_a_history_database_damaged_inside_is_moved_aside_and_a_fresh_one_started(tmp_path: Path, caplog, damage: str):
    path = tmp_path / "history.sqlite3"
    _filled_history(path)
    size = path.stat().st_size
    assert size > 6 * PAGE
    with open(path, "r+b") as handle:
        if damage == "cut inside the header page":
            handle.truncate(PAGE // 2 + 7)
        else:
            handle.seek(3 * PAGE)  # a b-tree page in the middle of the table
            handle.write(bytes(PAGE) if damage == "zeroed page" else os.urandom(PAGE))
    damaged = path.read_bytes()

    with caplog.at_level(logging.WARNING, logger="modules.history"):
        history = HistoryStore(path)
    with history:
        assert history.count() == 0
        new = history.record(HistoryEntry("txt2img", 2.0, 0.1, "after", "", "Steps: 4", 1, "m", None, None, 64, 64, "Euler"))
        assert history.get(new).prompt == "after"
    asides = list(tmp_path.glob("history.sqlite3.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == damaged
    assert "damaged" in caplog.text and asides[0].name in caplog.text
