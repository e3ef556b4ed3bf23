"""Extensions through the real start-up path: discovery and manifests, every hook in order with its
documented arguments, a per-step hook that changes the picture, failures contained and named, a
selectable script job, enabling/disabling for the next start.

The extensions are in tests/fixtures/extensions/: `recorder` uses every hook, `broken-hooks`
raises in every hook, `broken-import` fails to import, `newer-api` asks for API 99,
`off-by-default` is disabled by its manifest (and raises if loaded anyway).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modules.cmd_args import parse_args
from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from modules.services import build_services
from tools.make_test_models import write_test_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


def make_services(root: Path, *flags: str, extensions: Path = FIXTURES):
    models = root / "models"
    (models / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    for name, seed in (("alpha", 1), ("beta", 2)):
        path = models / "Stable-diffusion" / f"{name}.safetensors"
        if not path.exists():
            write_test_checkpoint(path, "sd1", "tiny", seed=seed)
    args = parse_args(["--models-dir", str(models), "--data-dir", str(root / "data"), "--device", "cpu",
                       "--extensions-dir", str(extensions), "--ckpt", str(models / "Stable-diffusion" / "alpha.safetensors"), *flags])
    return build_services(args)


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    built = make_services(tmp_path_factory.mktemp("extensions"))
    yield built
    built.queue.close()


@pytest.fixture
def calls(services):
    recorded = sys.modules["easel_extension_recorder"].CALLS
    recorded.clear()
    return recorded


def request(**changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt="a red circle", steps=4, width=64, height=64, seed=11, sampler_name="Euler", preview_every=0), **changes})


def test_discovery_loads_the_good_ones_and_says_why_the_others_are_out(services):
    status = {e.name: e.status for e in services.extensions.extensions}
    assert status["recorder"] == "loaded" and status["broken-hooks"] == "loaded"
    assert status["broken-import"] == "failed: ImportError: this extension needs a package that is not installed"
    assert status["newer-api"] == "failed: needs extension API 99; this Easel has 1"
    assert status["off-by-default"] == "disabled"
    assert [s.title for s in services.extensions.scripts("txt2img", always_on=True)] == ["Recorder"]
    assert services.extensions.find_script("seed walk", "img2img").title == "Seed walk"
    assert "rebeccapurple" in services.extensions.css()
    assert [(name, tab.title) for name, tab in services.extensions.tabs()] == [("recorder", "Recorder")]
    assert services.extensions.javascript() == [("recorder", "window.__recorderLoaded = true;\n")]


def test_every_hook_fires_in_order_with_its_arguments(services, calls):
    result = services.generation.submit_txt2img(request(batch_size=2, n_iter=2, save_samples=True)).result(timeout=120)
    order = [name for name, _ in calls if name != "on_step"]
    assert order == ["before_job", "before_batch", "before_batch", *["after_image"] * 4, *["on_image_saved"] * 4, "after_job"]
    start = calls[0][1]
    assert (start.task, start.request.prompt, start.request.batch_size) == ("txt2img", "a red circle", 2)
    batches = [arg for name, arg in calls if name == "before_batch"]
    assert [(b.batch_index, b.seeds) for b in batches] == [(0, [11, 12]), (1, [13, 14])]
    steps = [arg for name, arg in calls if name == "on_step"]
    assert len(steps) == 2 * 4  # Euler: one model call a step, 4 steps, 2 batches
    assert [s[0] for s in steps[:4]] == [0, 1, 2, 3] and {s[1] for s in steps} == {4} and steps[0][2] == (2, 4, 8, 8)
    assert steps[0][3] > steps[1][3] > steps[3][3]  # sigma falls step by step
    images = [arg for name, arg in calls if name == "after_image"]
    assert [i.seed for i in images] == [11, 12, 13, 14] and images[0].task == "txt2img"
    saved = [arg for name, arg in calls if name == "on_image_saved"]
    assert [s.path for s in saved] == result.paths and saved[0].infotext == result.infotexts[0]
    assert calls[-1][1].result is result
    assert parse_infotext(result.infotexts[2])["Recorder"] == "seed 13"  # after_image added an infotext key


def test_the_step_hook_changes_the_picture_and_before_job_the_request(services, calls):
    plain = services.generation.submit_txt2img(request()).result(timeout=120)
    scaled = services.generation.submit_txt2img(request(script_values={"recorder": {"latent_scale": 0.5}})).result(timeout=120)
    difference = np.abs(np.asarray(plain.images[0], dtype=int) - np.asarray(scaled.images[0], dtype=int)).mean()
    assert difference > 5
    again = services.generation.submit_txt2img(request(script_values={"recorder": {"latent_scale": 0.5}})).result(timeout=120)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(scaled.images[0]))  # deterministic
    shouted = services.generation.submit_txt2img(request(script_values={"recorder": {"shout": True}})).result(timeout=120)
    assert parse_infotext(shouted.infotexts[0])["Prompt"] == "A RED CIRCLE"
    # The step hook may swap the conditioning: guided by the negative prompt alone, the picture is
    # the one an empty prompt makes.
    dropped = services.generation.submit_txt2img(request(script_values={"recorder": {"drop_prompt": True}})).result(timeout=120)
    empty = services.generation.submit_txt2img(request(prompt="")).result(timeout=120)
    assert np.array_equal(np.asarray(dropped.images[0]), np.asarray(empty.images[0]))
    assert not np.array_equal(np.asarray(dropped.images[0]), np.asarray(plain.images[0]))


def test_a_failing_extension_is_named_once_and_the_job_goes_on(tmp_path, tokenizer_cache):
    import shutil

    shutil.copytree(FIXTURES / "broken-hooks", tmp_path / "extensions" / "broken-hooks")
    own = make_services(tmp_path, extensions=tmp_path / "extensions")
    try:
        result = own.generation.submit_txt2img(request()).result(timeout=120)
        assert len(result.images) == 1 and len(result.infotexts) == 1
        failed = [n for n in result.notes if "broken-hooks" in n]
        assert [n.split(" failed in ")[1].split(" (")[0] for n in failed] == [
            "on_model_loaded", "before_job", "before_batch", "on_step", "after_image", "on_image_saved", "after_job"]
        assert "(RuntimeError: broken in on_step); the job went on without it" in failed[3]
        again = own.generation.submit_txt2img(request()).result(timeout=120)
        assert len(again.images) == 1 and not again.notes  # shown once; still logged every time
    finally:
        own.queue.close()


def test_model_loaded_hook_and_a_selectable_script_job(services, calls):
    services.models.switch_checkpoint("beta")
    loaded = [arg for name, arg in calls if name == "on_model_loaded"]
    assert [(m.name, m.family) for m in loaded] == [("beta", "sd1")]
    services.models.switch_checkpoint("alpha")
    script = services.extensions.find_script("Seed walk", "txt2img")
    values = script.values_from([3])
    assert values == {"count": 3, "mood": "calm"}
    job = services.generation.submit_script(request(seed=40), script, values)
    result = job.result(timeout=120)
    assert result.image_seeds == [40, 41, 42] and len(result.infotexts) == 3
    assert [parse_infotext(t)["Seed"] for t in result.infotexts] == ["40", "41", "42"]
    with pytest.raises(ValueError, match="Mood must be one of calm, wild"):
        script.values_from([2, "angry"])
    with pytest.raises(ValueError, match="at most 2 arguments"):
        script.values_from([1, "calm", 3])


def test_enabling_and_disabling_takes_effect_at_the_next_start(services):
    changed = services.config.set_extensions_enabled({"recorder": False, "off-by-default": False})
    assert changed == ["recorder"]
    with pytest.raises(UserError, match="no extension named 'nope'"):
        services.config.set_extensions_enabled({"nope": True})
    services.config.set_extension_setting("recorder", "greeting", "hi")
    with pytest.raises(UserError, match="Greeting must be one of hello, hi"):
        services.config.set_extension_setting("recorder", "greeting", "yo")
    assert services.extensions.get("recorder").api.setting("greeting") == "hi"
    root = services.paths.data_dir.parent
    restarted = make_services(root)  # the same data dir: the next start
    try:
        assert restarted.extensions.get("recorder").status == "disabled"
        assert restarted.extensions.scripts("txt2img") == []
    finally:
        restarted.queue.close()
    services.config.set_extensions_enabled({"recorder": True})
    restarted = make_services(root)
    try:
        assert restarted.extensions.get("recorder").status == "loaded"
        assert restarted.extensions.get("recorder").api.setting("greeting") == "hi"
    finally:
        restarted.queue.close()


def test_the_api_reaches_extension_scripts_and_routes(services, calls):
    """As A1111 clients send them: script_name + script_args for a selectable script,
    alwayson_scripts {name: {"args": [...]}} for an always-on one; routes under /ext/<name>."""
    import base64
    import io
    import json
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from PIL import Image

    from webui import create_app

    client = TestClient(create_app(services, replace(services.args, api=True, nowebui=True)), raise_server_exceptions=False)
    body = {"prompt": "a kite", "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 7}
    walked = client.post("/sdapi/v1/txt2img", json={**body, "script_name": "Seed walk", "script_args": [2, "wild"]})
    info = json.loads(walked.json()["info"])
    assert len(walked.json()["images"]) == 2 and info["all_seeds"] == [7, 8]
    assert [parse_infotext(t)["Seed"] for t in info["infotexts"]] == ["7", "8"]
    bad = client.post("/sdapi/v1/txt2img", json={**body, "script_name": "seed walk", "script_args": [2, "angry"]})
    assert bad.status_code == 422 and "Mood must be one of calm, wild" in bad.json()["detail"]

    calls.clear()
    shouted = client.post("/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"Recorder": {"args": [1.0, True]}, "ControlNet": {"args": []}}})
    assert parse_infotext(json.loads(shouted.json()["info"])["infotexts"][0])["Prompt"] == "A KITE"
    image = Image.open(io.BytesIO(base64.b64decode(shouted.json()["images"][0])))
    assert image.size == (64, 64)

    scripts = client.get("/sdapi/v1/scripts").json()
    assert "seed walk" in scripts["txt2img"] and "seed walk" in scripts["img2img"]
    info = {(s["name"], s["is_img2img"]): s for s in client.get("/sdapi/v1/script-info").json()}
    assert info[("recorder", False)]["is_alwayson"] is True
    assert [a["label"] for a in info[("seed walk", False)]["args"]] == ["Images", "Mood"]
    assert client.get("/ext/recorder/greeting").json() == {"greeting": services.extensions.get("recorder").api.setting("greeting")}


def test_the_readme_example_works_as_documented(tmp_path, tokenizer_cache):
    """extensions/README.md's minimal example, copied out of the README, loaded and used."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "extensions" / "README.md").read_text()
    code = re.search(r"```python\n# extensions/warm-tint/extension.py\n(.*?)```", readme, re.S).group(1)
    folder = tmp_path / "extensions" / "warm-tint"
    folder.mkdir(parents=True)
    (folder / "extension.json").write_text('{"name": "warm-tint", "version": "1.0", "api_version": 1}')
    (folder / "extension.py").write_text(code)
    own = make_services(tmp_path, extensions=tmp_path / "extensions")
    try:
        plain = own.generation.submit_txt2img(request()).result(timeout=120)
        warm = own.generation.submit_txt2img(request(script_values={"warm tint": {"amount": 0.5}})).result(timeout=120)
        red = lambda result: np.asarray(result.images[0].convert("RGB"), dtype=float)[..., 0].mean()  # noqa: E731
        assert red(warm) > red(plain) * 1.2
        assert parse_infotext(warm.infotexts[0])["Warm tint"] == "0.5" and "Warm tint" not in plain.infotexts[0]
        assert not warm.notes
    finally:
        own.queue.close()


def test_an_extensions_own_translations_are_used_and_the_users_files_win(tmp_path, tokenizer_cache):
    """recorder/localizations/zh-CN.json translates its texts; a user's localizations/ file wins."""
    user = tmp_path / "localizations"
    user.mkdir()
    (user / "zh_CN.json").write_text(json.dumps({"Mood": "情绪"}, ensure_ascii=False), encoding="utf-8")
    own = make_services(tmp_path, "--localizations-dir", str(user))
    try:
        say = own.translations.text
        assert say("Uses every hook and records each call (for tests).", "zh-CN") == "使用每个钩子并记录每次调用（测试用）。"
        assert say("Shout the prompt", "zh-CN") == "大声喊出提示词"
        assert say("Mood", "zh-CN") == "情绪"
        assert say("Sampling steps", "zh-CN") == "迭代步数"  # Easel's own table still there
    finally:
        own.queue.close()
