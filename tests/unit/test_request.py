"""Requests are validated before any model work, with sentences that say what to fix."""

from __future__ import annotations

import pytest

from modules.generation.request import GenerationRequest, RequestError


def test_defaults_are_valid():
    assert GenerationRequest().validate().steps == 20


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"width": 7}, "width 7 is not a multiple of 8: use 8 or 16"),
        ({"height": 513}, "height 513 is not a multiple of 8: use 512 or 520"),
        ({"width": 8}, "width must be between 64 and 4096, not 8"),
        ({"steps": 0}, "steps must be between 1 and 500, not 0"),
        ({"cfg_scale": "7"}, "cfg_scale must be a number"),
        ({"subseed_strength": 1.5}, "subseed_strength must be between 0 and 1"),
        ({"seed": -5}, "seed must be -1 (random)"),
        ({"rng_source": "TPU"}, "rng_source must be one of GPU, CPU, NV"),
        ({"batch_size": True}, "batch_size must be a number"),
        ({"seed_resize_from_w": 100_000}, "seed_resize_from_w must be between 0 and 4096, not 100000"),
        ({"seed_resize_from_h": -1}, "seed_resize_from_h must be between 0 and 4096, not -1"),
    ],
)
def test_bad_fields_are_named_with_a_fix(changes, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerationRequest(**changes).validate()


def test_from_dict_ignores_unknown_keys_and_nulls():
    request = GenerationRequest.from_dict({"prompt": "a cat", "steps": 5, "sampler_index": "Euler", "hr_checkpoint_name": None, "seed": None})
    assert request.prompt == "a cat" and request.steps == 5 and request.seed == -1
