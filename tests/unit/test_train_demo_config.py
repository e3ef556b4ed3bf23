"""tools/train_demo_model.py refuses a bad setting before it starts, naming each one."""

from __future__ import annotations

import pytest

from tools.train_demo_model import TrainConfig, config_problems, parse_args


def test_the_defaults_are_sound():
    assert config_problems(TrainConfig()) == []
    args, config = parse_args([])
    assert config == TrainConfig() and args.threads == 1


def test_bad_settings_are_refused_together_with_their_names(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--reading-steps", "0", "--context-swap", "1.5", "--vae-crop", "20", "--jitter-low", "2", "--threads", "0"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    for expected in ("--reading-steps must be at least 1 (got 0)", "--context-swap is a share: 0 to 1 (got 1.5)",
                     "--vae-crop must be a multiple of 8 from 8 to 64 (got 20)", "--jitter-low must be above 0 and at most --jitter-high (got 2.0 and 1.5)",
                     "--threads must be at least 1 (got 0)"):
        assert expected in error


def test_a_zero_length_stage_is_refused_rather_than_saving_nothing():
    # a stage of 0 steps would train nothing and write no state file, and the run would crash at
    # the summary after the earlier stages had run for an hour
    for name in ("vae_steps", "decoder_steps", "unet_steps", "reading_steps"):
        problems = config_problems(TrainConfig(**{name: 0}))
        assert problems == [f"--{name.replace('_', '-')} must be at least 1 (got 0)"]
