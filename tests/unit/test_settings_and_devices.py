"""Settings fall back safely on bad values; device/dtype choice follows the hardware and overrides."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from modules.config import Settings, SettingsStore
from modules.device.hardware import choose_device, choose_dtype
from modules.errors import UserError


def test_defaults_when_no_file(tmp_path):
    store = SettingsStore(tmp_path / "config.json")
    assert store.settings == Settings()
    assert Settings.describe()["sd_checkpoint_cache"]["description"].startswith("Checkpoints kept in RAM")


def test_bad_values_fall_back_with_a_warning_and_unknown_keys_survive(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"sd_vae": "None", "sd_checkpoint_cache": "lots", "sd2_prediction": "x", "dtype": "fp16", "ext_setting": [1, 2]}))
    with caplog.at_level(logging.WARNING):
        store = SettingsStore(path)
    assert store.settings.sd_vae == "None" and store.settings.dtype == "fp16"
    assert store.settings.sd_checkpoint_cache == 2 and store.settings.sd2_prediction == "auto"
    assert "sd_checkpoint_cache must be an integer" in caplog.text and "sd2_prediction must be one of" in caplog.text
    store.update({"sd_checkpoint_cache": 3})
    saved = json.loads(path.read_text())
    assert saved["sd_checkpoint_cache"] == 3 and saved["ext_setting"] == [1, 2]


def test_update_is_all_or_nothing(tmp_path):
    store = SettingsStore(tmp_path / "config.json")
    with pytest.raises(ValueError, match="between 1 and 16"):
        store.update({"sd_vae": "None", "sd_checkpoint_cache": 99})
    assert store.settings.sd_vae == "Automatic"


def test_corrupt_settings_file_is_moved_aside(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{half-written")
    store = SettingsStore(path)
    assert store.settings == Settings()
    assert (tmp_path / "config.json.corrupt").read_text() == "{half-written"


def test_device_and_dtype_choice():
    device = choose_device("auto")
    expected = "cuda" if torch.cuda.is_available() else device.type
    assert device.type == expected
    # "auto" on a CPU asks the CPU rule (bf16 only with AMX: tests/unit/test_performance.py); injected
    # here, so the verdict does not depend on the CPU the suite runs on.
    assert choose_dtype(torch.device("cpu"), cpu_dtype=lambda: torch.float32) == torch.float32
    assert choose_dtype(torch.device("cpu"), cpu_dtype=lambda: torch.bfloat16) == torch.bfloat16
    assert choose_dtype(torch.device("cuda")) == torch.float16
    assert choose_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(UserError, match="Unknown dtype"):
        choose_dtype(torch.device("cpu"), "fp8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="sees no CUDA GPU"):
            choose_device("cuda")
