"""The built-in X/Y/Z plot and Prompt matrix extensions (extensions/), loaded by the real start-up
path and run as script jobs on tiny checkpoints: cells, their infotexts, the labelled grid, a
checkpoint axis switching and restoring the model, value syntax, bad values refused before any
image, and the API as A1111 clients call it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from tests.integration.test_extensions import make_services

EXTENSIONS = Path(__file__).resolve().parents[2] / "extensions"


def load_axes():
    spec = importlib.util.spec_from_file_location("xyz_axes_under_test", EXTENSIONS / "xyz-plot" / "axes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    built = make_services(tmp_path_factory.mktemp("xyz"), extensions=EXTENSIONS)
    yield built
    built.queue.close()


def request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red circle", steps=3, width=64, height=64, seed=21, sampler_name="Euler", preview_every=0), **changes})


def plot(services, **values):
    script = services.extensions.find_script("X/Y/Z plot", "txt2img")
    return services.generation.submit_script(request(), script, script.values_from(values)).result(timeout=300)


@pytest.mark.parametrize("text, whole, expected", [
    ("1-5", True, [1, 2, 3, 4, 5]),
    ("1-10 (+3)", True, [1, 4, 7, 10]),
    ("10-1 (-4)", True, [10, 6, 2]),
    ("1-10 [4]", True, [1, 4, 7, 10]),
    ("5, 7.5, 10", False, [5.0, 7.5, 10.0]),
    ("5-8 (+1.5)", False, [5.0, 6.5, 8.0]),
    ("0.2-0.8 [4]", False, [0.2, 0.4, 0.6, 0.8]),
    ("3, 1-2, 9", True, [3, 1, 2, 9]),
])
def test_value_syntax_as_a1111(text, whole, expected):
    assert load_axes().expand_numbers(text, whole) == expected


def test_value_syntax_errors_and_quoted_values():
    axes = load_axes()
    with pytest.raises(ValueError, match="'seven' is not a number"):
        axes.expand_numbers("5, seven", True)
    with pytest.raises(ValueError, match="never reaches its end"):
        axes.expand_numbers("1-10 (-1)", True)
    assert axes.split_values('cat, "red, round hat", dog') == ["cat", "red, round hat", "dog"]


def test_a_3x2_plot_over_cfg_and_sampler(services):
    result = plot(services, x_type="CFG Scale", x_values="5, 7, 9", y_type="Sampler", y_values="Euler, dpm++ 2m")
    assert len(result.images) == 6 and len(result.infotexts) == 6 and result.image_seeds == [21] * 6
    seen = [(p["CFG scale"], p["Sampler"]) for p in map(parse_infotext, result.infotexts)]
    assert seen == [("5", "Euler"), ("7", "Euler"), ("9", "Euler"), ("5", "DPM++ 2M"), ("7", "DPM++ 2M"), ("9", "DPM++ 2M")]
    grid = np.asarray(result.grid.convert("RGB"))
    label_width = 64  # the row labels take one cell's width
    top = grid.shape[0] - 2 * 64
    assert grid.shape[1] == label_width + 3 * 64 and top > 8
    for row in range(2):
        for col in range(3):
            cell = grid[top + row * 64 : top + (row + 1) * 64, label_width + col * 64 : label_width + (col + 1) * 64]
            assert np.array_equal(cell, np.asarray(result.images[row * 3 + col].convert("RGB")))
    column_band, row_band = grid[:top, label_width:], grid[top:, :label_width]
    assert (column_band < 128).any() and (row_band < 128).any()  # labels drawn in black on white
    assert (column_band == 255).mean() > 0.6
    assert result.paths[0] is not None and result.grid_path is not None and result.grid_path.parent.parent.name == "txt2img-grids"


def test_a_checkpoint_axis_switches_models_and_puts_the_original_back(services):
    assert services.manager.loaded.checkpoint.model_name == "alpha"
    result = plot(services, x_type="Checkpoint name", x_values="beta, alpha", y_type="Seed", y_values="3-4")
    assert [parse_infotext(t)["Model"] for t in result.infotexts] == ["beta", "alpha", "beta", "alpha"]
    assert [parse_infotext(t)["Seed"] for t in result.infotexts] == ["3", "3", "4", "4"]
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))
    assert services.manager.loaded.checkpoint.model_name == "alpha"


def test_bad_values_are_refused_before_any_image(services):
    before = services.history.count()
    with pytest.raises(UserError, match=r"X/Y/Z plot: X axis \(CFG Scale\): 'seven' is not a number"):
        plot(services, x_type="CFG Scale", x_values="5, seven")
    with pytest.raises(UserError, match=r"Y axis \(Sampler\): Unknown sampler 'Eulr'"):
        plot(services, x_type="Steps", x_values="2-3", y_type="Sampler", y_values="Euler, Eulr")
    with pytest.raises(UserError, match=r"X axis \(Prompt S/R\): 'square' \(the first value, the one replaced\) is not in the prompt"):
        plot(services, x_type="Prompt S/R", x_values="square, triangle")
    assert services.history.count() == before


def test_prompt_s_r_and_z_axis(services):
    result = plot(services, x_type="Prompt S/R", x_values="circle, square", z_type="Steps", z_values="2, 3")
    prompts = [(parse_infotext(t)["Prompt"], parse_infotext(t)["Steps"]) for t in result.infotexts]
    assert prompts == [("a red circle", "2"), ("a red square", "2"), ("a red circle", "3"), ("a red square", "3")]
    assert result.grid.width > 2 * 2 * 64  # two sub-grids side by side


def test_prompt_matrix_makes_every_combination(services):
    script = services.extensions.find_script("Prompt matrix", "txt2img")
    result = services.generation.submit_script(request(prompt="a house|snow|night"), script, script.values_from([])).result(timeout=300)
    prompts = [parse_infotext(t)["Prompt"] for t in result.infotexts]
    assert prompts == ["a house", "a house, snow", "a house, night", "a house, snow, night"]
    assert result.grid.size == (64 + 2 * 64, result.grid.height) and result.grid.height > 2 * 64
    with pytest.raises(UserError, match='separated by "|"'):
        services.generation.submit_script(request(prompt="a house"), script, script.values_from([])).result(timeout=60)


def test_the_api_runs_the_plot_as_a1111_clients_send_it(services):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from webui import create_app

    client = TestClient(create_app(services, replace(services.args, api=True, nowebui=True)), raise_server_exceptions=False)
    body = {"prompt": "a kite", "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 5,
            "script_name": "x/y/z plot", "script_args": ["Steps", "2, 3", "CFG Scale", "4, 6"]}
    answer = client.post("/sdapi/v1/txt2img", json=body)
    info = json.loads(answer.json()["info"])
    assert len(answer.json()["images"]) == 4 and len(info["infotexts"]) == 4
    assert [(parse_infotext(t)["Steps"], parse_infotext(t)["CFG scale"]) for t in info["infotexts"]] == [
        ("2", "4"), ("3", "4"), ("2", "6"), ("3", "6")]
    bad = client.post("/sdapi/v1/txt2img", json={**body, "script_args": ["Steps", "two"]})
    assert bad.status_code == 400 and "X axis (Steps): 'two' is not a number" in bad.json()["detail"]


def test_img2img_plot_over_denoising(services):
    from PIL import Image

    from modules.generation.request import Img2ImgRequest

    script = services.extensions.find_script("X/Y/Z plot", "img2img")
    base = Img2ImgRequest(prompt="a lake", steps=4, width=64, height=64, seed=3, sampler_name="Euler", preview_every=0,
                          init_images=[Image.new("RGB", (64, 64), (20, 160, 60))])
    result = services.generation.submit_script(base, script, script.values_from(["Denoising", "0, 0.5, 1"])).result(timeout=300)
    assert [parse_infotext(t)["Denoising strength"] for t in result.infotexts] == ["0", "0.5", "1"]
    kept = np.asarray(result.images[0].convert("RGB"), dtype=int)
    assert np.abs(kept - (20, 160, 60)).mean() < np.abs(np.asarray(result.images[2].convert("RGB"), dtype=int) - (20, 160, 60)).mean()
    assert result.paths[0].parent.parent.name == "img2img-images"
