"""POST /sdapi/v1/txt2img through the real app on tiny checkpoints: images, seeds, infotext and
info as A1111 gives them, request handling as A1111 clients expect, errors with a sentence."""

from __future__ import annotations

import numpy as np
import pytest

from tests.api.api_helpers import API, INFO_KEYS, TINY, decode, info_of, infotext_params

# What webuiapi 0.9.17 sends for txt2img (every key, nulls and legacy keys included).
WEBUIAPI_PAYLOAD = {
    "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0,
    "hr_checkpoint_name": None, "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "", "hr_negative_prompt": "",
    "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0, "prompt": "a red ball", "styles": [], "seed": 77,
    "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1,
    "steps": 3, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": False, "tiling": False,
    "do_not_save_samples": False, "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0,
    "s_tmin": 0, "s_noise": 1, "override_settings": {}, "override_settings_restore_afterwards": True,
    "sampler_name": "Euler a", "scheduler": "automatic", "sampler_index": "Euler a", "script_name": None, "script_args": [],
    "send_images": True, "save_images": False, "alwayson_scripts": {"ControlNet": {"args": []}, "ADetailer": {"args": [False]}},
    "a_key_from_the_future": {"x": 1},
}


def txt2img(client, **fields):
    return client.post(f"{API}/txt2img", json={**TINY, **fields})


def pixels(text: str) -> np.ndarray:
    return np.asarray(decode(text).convert("RGB"), dtype=np.int16)


def test_seed_and_batch_give_sized_images_with_their_own_seeds_and_infotext(api):
    client, _ = api
    response = txt2img(client, prompt="a cat", negative_prompt="blurry", seed=1234, batch_size=2, sampler_name="Euler")
    info = info_of(response)
    images = response.json()["images"]
    assert len(images) == 2
    assert [decode(image).size for image in images] == [(64, 64), (64, 64)]
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["all_prompts"] == ["a cat", "a cat"] and info["all_negative_prompts"] == ["blurry", "blurry"]
    assert info["sd_model_name"] == "alpha" and len(info["sd_model_hash"]) == 10
    assert info["sampler_name"] == "Euler" and info["steps"] == 3 and info["batch_size"] == 2
    assert info["version"] == "v1.10.1" and info["index_of_first_image"] == 0 and info["clip_skip"] == 1
    assert len(info["job_timestamp"]) == 14 and info["job_timestamp"].isdigit()
    for image, seed, text in zip(images, (1234, 1235), info["infotexts"]):
        embedded = decode(image).info["parameters"]
        assert embedded == text  # each image carries its own infotext
        params = infotext_params(text)
        assert params["Seed"] == str(seed) and params["Prompt"] == "a cat" and params["Negative prompt"] == "blurry"
        assert params["Steps"] == "3" and params["Sampler"] == "Euler" and params["Size-1"] == "64"
        assert params["Model"] == "alpha" and params["Model hash"] == info["sd_model_hash"]
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))
    again = txt2img(client, prompt="a cat", negative_prompt="blurry", seed=1235, sampler_name="Euler")
    # a seed gives the same image alone as in a batch (up to float rounding of the batched UNet)
    assert np.abs(pixels(again.json()["images"][0]) - pixels(images[1])).max() <= 2
    assert response.json()["parameters"]["seed"] == 1234 and response.json()["parameters"]["batch_size"] == 2


def test_a_webuiapi_payload_with_nulls_legacy_and_unknown_keys_works(api):
    client, _ = api
    response = client.post(f"{API}/txt2img", json=WEBUIAPI_PAYLOAD)
    info = info_of(response)
    assert info["all_seeds"] == [77] and info["sampler_name"] == "Euler a"
    params = infotext_params(info["infotexts"][0])
    assert params["Sampler"] == "Euler a" and params["Schedule type"] == "Automatic"
    assert "a_key_from_the_future" not in response.json()["parameters"]
    assert response.json()["parameters"]["sampler_index"] == "Euler a"


def test_sampler_name_wins_over_sampler_index_and_index_is_the_fallback(api):
    client, _ = api
    both = info_of(txt2img(client, seed=1, sampler_name="Heun", sampler_index="Euler a"))
    assert both["sampler_name"] == "Heun"
    index_only = info_of(txt2img(client, seed=1, sampler_index="k_lms"))  # an old alias
    assert index_only["sampler_name"] == "LMS"
    default = info_of(txt2img(client, seed=1, sampler_index=None, sampler_name=None))
    assert default["sampler_name"] == "Euler"  # A1111's API default


def test_combined_sampler_names_and_lower_case_scheduler_ids(api):
    client, _ = api
    combined = info_of(txt2img(client, seed=2, sampler_name="DPM++ 2M Karras"))
    params = infotext_params(combined["infotexts"][0])
    assert combined["sampler_name"] == "DPM++ 2M"
    assert (params["Sampler"], params["Schedule type"]) == ("DPM++ 2M", "Karras")
    lower = info_of(txt2img(client, seed=2, sampler_name="Euler", scheduler="sgm_uniform"))
    assert infotext_params(lower["infotexts"][0])["Schedule type"] == "SGM Uniform"


def test_override_settings_apply_to_the_request_and_are_restored(api):
    client, services = api
    response = txt2img(client, seed=5, override_settings={"sd_model_checkpoint": "beta", "CLIP_stop_at_last_layers": 2})
    info = info_of(response)
    assert info["sd_model_name"] == "beta" and info["clip_skip"] == 2
    params = infotext_params(info["infotexts"][0])
    assert params["Model"] == "beta" and params["Clip skip"] == "2"
    options = client.get(f"{API}/options").json()
    assert options["sd_model_checkpoint"].startswith("alpha.safetensors") and options["CLIP_stop_at_last_layers"] == 1
    assert services.manager.loaded.checkpoint.name == "alpha.safetensors"


def test_override_settings_kept_when_not_restored_afterwards(api):
    client, services = api
    try:
        response = txt2img(client, seed=5, override_settings={"sd_model_checkpoint": "beta", "CLIP_stop_at_last_layers": 2},
                           override_settings_restore_afterwards=False)
        assert info_of(response)["sd_model_name"] == "beta"
        options = client.get(f"{API}/options").json()
        assert options["sd_model_checkpoint"].startswith("beta.safetensors [") and options["CLIP_stop_at_last_layers"] == 2
        later = info_of(txt2img(client, seed=5))
        assert later["sd_model_name"] == "beta" and later["clip_skip"] == 2
    finally:
        assert client.post(f"{API}/options", json={"sd_model_checkpoint": "alpha", "CLIP_stop_at_last_layers": 1}).status_code == 200
    assert services.manager.loaded.checkpoint.name == "alpha.safetensors"


def test_infotext_fills_the_fields_the_request_leaves_out(api):
    client, _ = api
    infotext = "a lighthouse\nNegative prompt: fog\nSteps: 4, Sampler: Heun, Schedule type: Karras, CFG scale: 5.5, Seed: 4242, Size: 64x64, Clip skip: 2"
    response = client.post(f"{API}/txt2img", json={"infotext": infotext, "prompt": "a harbour", "width": 64})
    info = info_of(response)
    params = infotext_params(info["infotexts"][0])
    assert params["Prompt"] == "a harbour"  # given: kept
    assert params["Negative prompt"] == "fog" and params["Steps"] == "4" and params["Seed"] == "4242"
    assert (params["Sampler"], params["Schedule type"], params["CFG scale"]) == ("Heun", "Karras", "5.5")
    assert params["Clip skip"] == "2" and info["height"] == 64


UNAPPLIABLE = ("a lighthouse\nSteps: 3, Sampler: Euler A Turbo, Schedule type: Kerras, CFG scale: 5, Seed: 1, Size: 64x64, "
               "Model hash: 0123456789, Model: sdxl-unicorn, Denoising strength: 0.5, Hires upscale: 2, Hires upscaler: 4x-UltraSharp, "
               "ADetailer model: face_yolov8n.pt, RP Active: True, Version: v1.10.1")


def test_infotext_settings_easel_cannot_apply_are_a_422_naming_each(api):
    client, services = api
    response = client.post(f"{API}/txt2img", json={"infotext": UNAPPLIABLE})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "ApiInputError"
    for named in ("Model: sdxl-unicorn [0123456789] (not among your checkpoints)",
                  "Sampler: Euler A Turbo (unknown sampler 'Euler A Turbo')",
                  "Schedule type: Kerras (unknown schedule type 'Kerras')",
                  "Hires upscaler: 4x-UltraSharp (no upscaler named 4x-UltraSharp here; Easel has Latent",
                  "ADetailer model: face_yolov8n.pt (not among your detectors (models/adetailer))"):
        assert named in body["detail"], named
    assert "Version" not in body["detail"] and "RP Active" not in body["detail"]  # the regional settings are restored


def test_the_requests_own_fields_win_over_an_infotext_setting_easel_lacks(api):
    client, services = api
    text = UNAPPLIABLE.replace(", ADetailer model: face_yolov8n.pt, RP Active: True", "")
    response = client.post(f"{API}/txt2img", json={
        "infotext": text, "sampler_name": "Euler", "scheduler": "Karras", "hr_upscaler": "Latent", "hr_second_pass_steps": 1,
        "override_settings": {"sd_model_checkpoint": "alpha"}})
    assert response.status_code == 200, response.text
    params = infotext_params(info_of(response)["infotexts"][0])
    assert (params["Sampler"], params["Schedule type"], params["Hires upscaler"], params["Model"]) == ("Euler", "Karras", "Latent", "alpha")
    assert params["Hires upscale"] == "2" and params["Seed"] == "1"  # the rest came from the infotext


def test_the_checkpoint_an_infotext_names_is_used_for_that_request(api):
    client, services = api
    text = "a lighthouse\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 8, Size: 64x64, Model: beta, Version: v1.10.1"
    info = info_of(client.post(f"{API}/txt2img", json={"infotext": text}))
    assert info["sd_model_name"] == "beta"
    assert services.manager.loaded.checkpoint.name == "alpha.safetensors"  # put back after the job, as override_settings


def test_send_images_false_and_save_images_with_grid(api):
    client, services = api
    written = lambda: sorted(services.paths.outputs_dir.rglob("*.png"))  # noqa: E731
    before = written()
    services.settings.api_save_images = False  # as A1111: nothing saved unless save_images is true
    try:
        quiet = txt2img(client, seed=3, send_images=False)
    finally:
        services.settings.api_save_images = True
    assert quiet.json()["images"] == [] and info_of(quiet)["all_seeds"] == [3]
    assert written() == before
    txt2img(client, seed=5)  # Easel's default: saved anyway, so it is in History
    assert len(written()) == len(before) + 1
    before = written()
    saved = txt2img(client, seed=3, batch_size=2, save_images=True)
    new = [path for path in written() if path not in before]
    assert sorted(path.parent.parent.name for path in new) == ["txt2img-grids", "txt2img-images", "txt2img-images"]
    info = info_of(saved)
    images = saved.json()["images"]
    assert len(images) == 3 and info["index_of_first_image"] == 1  # the grid first, as A1111's return_grid
    assert decode(images[0]).size == (128, 64) and decode(images[1]).size == (64, 64)
    assert len(info["infotexts"]) == 3
    rows = services.history.search(text="")
    assert any(row.seed == 4 and row.width == 64 for row in rows)  # API images are in the history too


def test_force_task_id_names_the_job(api):
    client, services = api
    info = info_of(txt2img(client, seed=9, force_task_id="task(my-own-id)"))
    assert info["task_id"] == "task(my-own-id)"
    assert services.queue.get("task(my-own-id)") is not None


def test_styles_are_applied_and_listed_in_info(api):
    client, _ = api
    info = info_of(txt2img(client, prompt="a boat", seed=1, styles=["vivid"]))
    assert info["prompt"] == "a boat, vivid colours" and info["negative_prompt"] == "dull" and info["styles"] == ["vivid"]
    assert infotext_params(info["infotexts"][0])["Prompt"] == "a boat, vivid colours"


def test_samples_format_jpg_returns_jpeg_with_exif_infotext(api):
    from modules.infotext.embed import read_infotext
    import base64

    client, _ = api
    response = txt2img(client, seed=11, override_settings={"samples_format": "jpg", "jpeg_quality": 90})
    data = base64.b64decode(response.json()["images"][0])
    assert data[:3] == b"\xff\xd8\xff"
    assert read_infotext(data) == info_of(response)["infotexts"][0]


def test_hires_fix_doubles_the_size(api):
    client, _ = api
    info = info_of(txt2img(client, seed=6, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2,
                           denoising_strength=0.5, hr_sampler_name="Use same sampler", hr_checkpoint_name="Use same checkpoint"))
    params = infotext_params(info["infotexts"][0])
    assert params["Hires upscale"] == "2" and params["Hires upscaler"] == "Latent" and params["Denoising strength"] == "0.5"


@pytest.mark.parametrize(
    "fields, status, error, words",
    [
        ({"sampler_name": "Euler b"}, 400, "UserError", ["Unknown sampler 'Euler b'", "DPM++ 2M"]),
        ({"width": 7, "height": 9}, 422, "RequestError", ["width 7 is not a multiple of 8"]),
        ({"override_settings": {"sd_model_checkpoint": "no-such-model"}}, 404, "ModelNotFoundError", ["no-such-model", "alpha.safetensors"]),
        ({"scheduler": "sometimes"}, 400, "UserError", ["Unknown schedule type 'sometimes'"]),
        ({"steps": 0}, 422, "RequestError", ["steps must be between 1 and 500"]),
        ({"seed": 2**40}, 422, "RequestError", ["seed must be -1"]),
        ({"steps": "many"}, 422, "RequestValidationError", ["steps"]),
        ({"hr_checkpoint_name": "beta", "enable_hr": True}, 422, "ApiInputError", ["hr_checkpoint_name"]),
        ({"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+"}, 404, "UnknownUpscalerError", ["No upscaler named 'R-ESRGAN 4x+' is installed", "Lanczos", "models/RealESRGAN"]),
        ({"script_name": "loopback wave"}, 422, "ApiInputError", ["Script 'loopback wave' not found", "x/y/z plot"]),
        ({"override_settings": {"CLIP_stop_at_last_layers": 40}}, 422, "ApiInputError", ["CLIP_stop_at_last_layers must be between 1 and 12"]),
    ],
)
def test_bad_input_is_a_4xx_json_error_with_a_sentence(api, fields, status, error, words):
    client, _ = api
    response = txt2img(client, **fields)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "body", "errors"} and body["error"] == error
    for word in words:
        assert word in str(body["detail"])


def test_not_json_at_all_is_422(api):
    client, _ = api
    response = client.post(f"{API}/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "RequestValidationError"
    listed = client.post(f"{API}/txt2img", json=[1, 2])
    assert listed.status_code == 422


def test_info_keys_are_complete_even_for_an_empty_answer(api):
    client, _ = api
    info = info_of(txt2img(client, seed=1, n_iter=1, send_images=False))
    assert INFO_KEYS <= set(info)
