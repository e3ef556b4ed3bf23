"""The demo model as Easel uses it: loaded on a fresh install, out of the way once a user has a
checkpoint, off with --no-demo-model; its live previews use the shipped latent->RGB factors."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from modules.services import build_services
from modules.demo_model import first_checkpoint
from modules.checkpoints.registry import ModelFile
from modules.cmd_args import DEMO_CHECKPOINT, parse_args
from modules.errors import UserError
from modules.generation.previews import (
    FULL_DECODE_VAES, PREVIEW_APPROX, FullVaePreview, LinearPreview, PreviewChooser, fit_linear_factors, vae_fingerprint,
)
from modules.generation.request import GenerationRequest
from modules.generation.txt2img import txt2img
from tests.semantic.colours import read
from tests.semantic.conftest import request
from tools.make_test_models import write_test_checkpoint


def services_for(root, *flags: str, load_now: bool = False):
    (root / "models" / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    args = parse_args(["--nowebui", "--models-dir", str(root / "models"), "--data-dir", str(root / "data"), "--device", "cpu", *flags])
    return build_services(args, load_now=load_now)


def test_a_fresh_install_loads_the_demo_and_draws_the_prompt(tmp_path):
    services = services_for(tmp_path, load_now=True)
    try:
        assert [entry.path for entry in services.registry.checkpoints] == [DEMO_CHECKPOINT]
        assert services.manager.loaded is not None and services.manager.loaded.checkpoint.path == DEMO_CHECKPOINT
        defaults = services.models.generation_defaults()  # what the tabs open with: the demo's size and CFG
        assert (defaults.width, defaults.height, defaults.cfg_scale) == (64, 64, 2.5) and "demo" in defaults.note
        job = services.generation.submit_txt2img(GenerationRequest(
            prompt="a yellow square on a blue background", seed=3, batch_size=3, steps=20, width=defaults.width, height=defaults.height,
            cfg_scale=defaults.cfg_scale, sampler_name="Euler a", save_samples=False,
        ))
        readings = [(r.foreground, r.background) for r in map(read, job.result(timeout=120).images)]
        assert readings.count(("yellow", "blue")) >= 2, readings
    finally:
        services.close()


def test_a_user_checkpoint_replaces_the_demo(tmp_path):
    write_test_checkpoint(tmp_path / "models" / "Stable-diffusion" / "mine.safetensors", seed=1)
    services = services_for(tmp_path)
    try:
        assert [entry.name for entry in services.registry.checkpoints] == ["mine.safetensors"]
        assert services.models.startup_name() == "mine.safetensors"
        defaults = services.models.generation_defaults()  # A1111's, for any model of the user's
        assert (defaults.width, defaults.height, defaults.cfg_scale, defaults.note, defaults.outpaint_pixels) == (512, 512, 7.0, "", 128)
    finally:
        services.close()


def test_the_user_checkpoint_is_chosen_before_a_listed_demo(tmp_path):
    # models/ is the default folder: the demo lies beside the user's checkpoints and stays listed
    extra = tmp_path / "extra"
    extra.mkdir()
    os.symlink(DEMO_CHECKPOINT, extra / DEMO_CHECKPOINT.name)
    write_test_checkpoint(extra / "zzz.safetensors", seed=1)
    services = services_for(tmp_path, "--ckpt-dir", str(extra))
    try:
        assert [entry.name for entry in services.registry.checkpoints] == [DEMO_CHECKPOINT.name, "zzz.safetensors"]
        assert services.models.startup_name() == "zzz.safetensors"
    finally:
        services.close()
    demo_only = [ModelFile("checkpoint", DEMO_CHECKPOINT, DEMO_CHECKPOINT.name)]
    assert first_checkpoint(demo_only) == demo_only[0]


def test_no_demo_model_flag_leaves_a_fresh_install_without_a_model(tmp_path):
    services = services_for(tmp_path, "--no-demo-model", load_now=True)
    try:
        assert services.registry.checkpoints == [] and services.manager.loaded is None
        with pytest.raises(UserError, match="No checkpoint found"):
            services.models.ensure_model()
    finally:
        services.close()


def test_cheap_live_previews_of_the_demo_decode_in_full_and_show_the_final_colours(demo):
    # its latents do not code colour linearly (see FULL_DECODE_VAES): a fitted 4x3 map gets the
    # colours wrong, so "Approx cheap" decodes the demo's tiny VAE instead
    assert FULL_DECODE_VAES[vae_fingerprint(demo.vae_module)] == DEMO_CHECKPOINT.name
    preview = PreviewChooser(None).choose(PREVIEW_APPROX, demo.vae_module, sdxl=False)
    assert isinstance(preview, FullVaePreview)
    result = txt2img(demo, request("a white circle on a red background", seed=5, batch_size=2))
    for final, shown in zip(result.images, preview(result.latents[0])):
        assert shown.size == final.size
        assert (read(shown).background, read(shown).foreground) == (read(final).background, read(final).foreground) == ("red", "white")
    linear = LinearPreview(*fit_linear_factors(demo.vae_module))
    assert [read(small.resize((64, 64))).background for small in linear(result.latents[0])] != ["red", "red"]


def test_the_generation_tabs_open_at_the_demos_size_cfg_and_outpaint_pixels(tmp_path):
    from modules.ui.app import build_ui

    services = services_for(tmp_path)
    try:
        blocks = build_ui(services).blocks.values()
        values = {block.elem_id: block.value for block in blocks if str(getattr(block, "elem_id", "")).endswith(("-width", "-height", "-cfg", "-pixels"))
                  and not str(block.elem_id).startswith("extras-")  # Extras' "scale to" size is a target, not a generation size
                  and "-detailer-" not in str(block.elem_id)}  # ADetailer's own size and CFG keep its defaults (used only when ticked)
        assert values == {**{f"{tab}-{name}": value for tab in ("txt2img", "img2img", "outpaint")
                             for name, value in (("width", 64), ("height", 64), ("cfg", 2.5))}, "outpaint-pixels": 32}
    finally:
        services.close()
