"""Other tools' metadata: ComfyUI, InvokeAI (1.x-5.x), NovelAI, Fooocus and A1111 images, built
here from the structures those tools write (REFERENCE.md section 1), read into A1111's terms."""

from __future__ import annotations

import copy
import io
import json

import piexif
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.errors import UserError
from modules.infotext.embed import UnreadableImageError, image_bytes_with_infotext
from modules.infotext.foreign import (
    NO_METADATA_NOTE,
    READERS,
    ImageParameters,
    read_image_parameters,
    read_info,
    synthesise_infotext,
)
from modules.infotext.parse import parse_infotext

A1111_TEXT = (
    "a photo of a corgi, (masterpiece:1.2)\nNegative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1170634956, Size: 640x896, "
    "Model hash: 92970aa785, Model: dreamlike-photoreal-2.0, Version: 1.10.1"
)

# ComfyUI's default graph (REFERENCE.md), as its API "prompt" chunk.
COMFY_DEFAULT = {
    "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"},
          "inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery, purple galaxy bottle", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9, "last_link_id": 9, "version": 0.4, "groups": [], "extra": {},
    "nodes": [{"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "mode": 0, "inputs": [], "outputs": [],
               "properties": {}, "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]}],
    "links": [[1, 4, 0, 3, 0, "MODEL"]],
}

INVOKE3 = {
    "app_version": "3.3.0post3", "generation_mode": "txt2img", "positive_prompt": "landscape, mountains",
    "negative_prompt": "low quality", "width": 768, "height": 432, "seed": 356120443, "rand_device": "cpu",
    "cfg_scale": 7.5, "steps": 50, "scheduler": "dpmpp_2m_sde_k", "clip_skip": 0,
    "model": {"model_name": "amixx_3Prunedfp16", "base_model": "sd-1", "model_type": "main"},
    "controlnets": [], "ipAdapters": [], "t2iAdapters": [], "loras": [],
    "vae": {"model_name": "sd-vae-ft-mse", "base_model": "sd-1"},
}
INVOKE5 = {
    "app_version": "5.4.2", "generation_mode": "sdxl_img2img", "positive_prompt": "a lighthouse at dusk",
    "negative_prompt": "", "width": 1024, "height": 1024, "seed": 42, "rand_device": "cuda", "cfg_scale": 5,
    "steps": 30, "scheduler": "euler_a", "clip_skip": 1, "strength": 0.65,
    "model": {"key": "a1b2c3", "hash": "blake3:" + "ab" * 32, "name": "juggernautXL_v9", "base": "sdxl", "type": "main"},
    "loras": [{"model": {"key": "l1", "hash": "blake3:" + "cd" * 32, "name": "detail", "base": "sdxl", "type": "lora"},
               "weight": 0.75}],
}
SD_METADATA = {
    "model": "stable diffusion", "model_weights": "deliberateForInvoke_v08",
    "model_hash": "56d1442a0feefd64836a19ac8e3527ec71c884fc962e246ddf67b03e42921272",
    "app_id": "invoke-ai/InvokeAI", "app_version": "2.3.0",
    "image": {"prompt": [{"prompt": "young woman, brunette hair [rendering, glowing eyes]", "weight": 1.0}],
              "steps": 50, "cfg_scale": 5, "threshold": 0, "perlin": 0, "height": 768, "width": 512,
              "seed": 2980747362, "seamless": False, "hires_fix": False, "type": "txt2img",
              "postprocessing": None, "sampler": "k_lms", "variations": []},
}
DREAM = '"young woman, brunette hair [rendering, glowing eyes]" -s 50 -S 2980747362 -W 512 -H 768 -C 5.0 -A k_lms -G 0.9'

NOVELAI_COMMENT = {"steps": 28, "sampler": "k_euler_ancestral", "seed": 3316087364, "strength": 0.7, "noise": 0.2,
                   "scale": 11.0, "uc": "lowres, bad anatomy", "uc_preset": 0}

FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e6897a1e58b10494bd989d001e3d4bc9b634633cd7b559838f612c2867",
    "full_negative_prompt": ["unrealistic"], "full_prompt": ["a red fox in snow, highly detailed"],
    "guidance_scale": 4.0, "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "negative_prompt": "unrealistic", "performance": "Speed", "prompt": "a red fox in snow",
    "prompt_expansion": "a red fox in snow, highly detailed", "refiner_model": "None", "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "2154741126", "sharpness": 2.0,
    "steps": 30, "styles": "['Fooocus V2']", "vae": "Default (model)", "version": "Fooocus v2.5.5",
}


def png(chunks: dict[str, str], size: tuple[int, int] = (64, 48)) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def exif_image(fmt: str, tags: dict[int, str]) -> bytes:
    """A JPEG/WebP whose IFD0 carries ``tags`` as PIL writes them (how ComfyUI and Fooocus do)."""
    image = Image.new("RGB", (64, 48), (90, 140, 200))
    exif = image.getexif()
    for tag, value in tags.items():
        exif[tag] = value
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


def core(found: ImageParameters) -> dict[str, str]:
    keys = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size-1", "Size-2", "Model", "Model hash")
    return {key: found.params[key] for key in keys if key in found.params}


def assert_infotext_round_trips(found: ImageParameters) -> None:
    """Send to txt2img goes through A1111's parser: it must give back the same fields."""
    parsed = parse_infotext(found.infotext)
    assert parsed["Prompt"] == found.prompt and parsed["Negative prompt"] == found.negative_prompt
    assert {key: parsed[key] for key in found.params} == found.params


# --- A1111 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_a1111_infotext_in_png_chunk_or_exif_comment(fmt):
    found = read_image_parameters(image_bytes_with_infotext(Image.new("RGB", (64, 48)), A1111_TEXT, fmt))
    assert found.source == "A1111"
    assert found.prompt == "a photo of a corgi, (masterpiece:1.2)"
    assert found.negative_prompt == "blurry, lowres"
    assert core(found) == {"Steps": "25", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7",
                           "Seed": "1170634956", "Size-1": "640", "Size-2": "896", "Model": "dreamlike-photoreal-2.0",
                           "Model hash": "92970aa785"}
    assert found.params["Version"] == "1.10.1"
    assert "Clip skip" not in found.params and "Prompt" not in found.params  # defaults the text did not write
    assert found.infotext == A1111_TEXT
    assert found.raw["parameters"] == A1111_TEXT


def test_a1111_old_combined_sampler_name_is_split():
    found = read_image_parameters(png({"parameters": "cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1"}))
    assert (found.params["Sampler"], found.params["Schedule type"]) == ("DPM++ 2M", "Karras")


# --- ComfyUI ---------------------------------------------------------------------------------------


def test_comfyui_default_graph():
    found = read_image_parameters(png({"prompt": json.dumps(COMFY_DEFAULT), "workflow": json.dumps(COMFY_WORKFLOW)}))
    assert found.source == "ComfyUI"
    assert found.prompt == "beautiful scenery, purple galaxy bottle"
    assert found.negative_prompt == "text, watermark"
    assert core(found) == {"Steps": "20", "Sampler": "Euler", "Schedule type": "Normal", "CFG scale": "8",
                           "Seed": "156680208700286", "Size-1": "512", "Size-2": "768", "Model": "v1-5-pruned-emaonly"}
    assert "Denoising strength" not in found.params  # denoise 1 is txt2img
    assert json.loads(found.raw["workflow"]) == COMFY_WORKFLOW  # kept raw, not interpreted
    assert found.infotext.startswith("beautiful scenery, purple galaxy bottle\nNegative prompt: text, watermark\nSteps: 20,")
    assert_infotext_round_trips(found)


def test_comfyui_inputs_linked_through_primitives_reroutes_and_conditioning_nodes():
    graph = {
        # a refiner pass with a lower id than the base pass: the base (empty latent) one is read
        "2": {"class_type": "KSamplerAdvanced",
              "inputs": {"noise_seed": 1, "steps": 30, "cfg": 3, "sampler_name": "euler", "scheduler": "simple",
                         "positive": ["30", 0], "negative": ["30", 0], "latent_image": ["10", 0], "model": ["20", 0]}},
        "10": {"class_type": "KSamplerAdvanced",
               "inputs": {"add_noise": "enable", "noise_seed": ["11", 0], "steps": ["12", 0], "cfg": 6.5,
                          "sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "karras", "start_at_step": 0, "end_at_step": 25,
                          "model": ["15", 0], "positive": ["16", 0], "negative": ["16", 1], "latent_image": ["13", 0]}},
        "11": {"class_type": "PrimitiveInt", "inputs": {"value": 987654321}},
        "12": {"class_type": "Reroute", "inputs": {"input": ["14", 0]}},
        "14": {"class_type": "PrimitiveInt", "inputs": {"value": 25}},
        "13": {"class_type": "EmptyLatentImage", "inputs": {"width": ["17", 0], "height": 1216, "batch_size": 1}},
        "17": {"class_type": "PrimitiveInt", "inputs": {"value": 832}},
        "15": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "strength_model": 0.8,
                                                       "strength_clip": 0.8, "model": ["18", 0], "clip": ["18", 1]}},
        "18": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL\\juggernautXL_v9.safetensors"}},
        "16": {"class_type": "ControlNetApplyAdvanced",
               "inputs": {"positive": ["21", 0], "negative": ["22", 0], "control_net": ["23", 0], "image": ["24", 0],
                          "strength": 0.6}},
        "21": {"class_type": "CLIPTextEncode", "inputs": {"text": ["25", 0], "clip": ["26", 0]}},
        "25": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "portrait of an astronaut\nstudio light"}},
        "22": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["27", 0], "conditioning_2": ["28", 0]}},
        "27": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["26", 0]}},
        "28": {"class_type": "CLIPTextEncode", "inputs": {"text": "other", "clip": ["26", 0]}},
        "26": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["15", 1]}},
        "30": {"class_type": "CLIPTextEncode", "inputs": {"text": "refiner text", "clip": ["26", 0]}},
        "20": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "refiner.safetensors"}},
    }
    found = read_image_parameters(png({"prompt": json.dumps(graph)}))
    assert found.prompt == "portrait of an astronaut\nstudio light"
    assert found.negative_prompt == "blurry"
    assert core(found) == {"Steps": "25", "Sampler": "DPM++ 2M SDE", "Schedule type": "Karras", "CFG scale": "6.5",
                           "Seed": "987654321", "Size-1": "832", "Size-2": "1216", "Model": "juggernautXL_v9"}
    assert found.params["Clip skip"] == "2"
    assert_infotext_round_trips(found)


def test_comfyui_webp_keeps_graph_in_exif_model_and_make_tags():
    data = exif_image("WEBP", {0x0110: "prompt:" + json.dumps(COMFY_DEFAULT), 0x010F: "workflow:" + json.dumps(COMFY_WORKFLOW)})
    found = read_image_parameters(data)
    assert found.source == "ComfyUI"
    assert (found.prompt, found.params["Seed"], found.params["Size-1"]) == ("beautiful scenery, purple galaxy bottle", "156680208700286", "512")
    assert json.loads(found.raw["workflow"])["version"] == 0.4


def test_comfyui_img2img_graph_takes_size_from_the_image_and_writes_denoise():
    graph = copy.deepcopy(COMFY_DEFAULT)
    graph["5"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "in.png"}}
    graph["3"]["inputs"]["denoise"] = 0.55
    found = read_image_parameters(png({"prompt": json.dumps(graph)}, size=(96, 80)))
    assert (found.params["Size-1"], found.params["Size-2"], found.params["Denoising strength"]) == ("96", "80", "0.55")


@pytest.mark.parametrize("graph", [
    {"3": {"class_type": "KSampler", "inputs": {"positive": ["3", 0], "negative": ["99", 0], "latent_image": ["3", 0],
                                                "model": ["3", 0], "seed": ["3", 0], "steps": "many", "cfg": True}}},
    {"1": {"class_type": "KSampler", "inputs": [1, 2]}, "2": "not a node", "3": {"class_type": 5}},
    {"1": {"class_type": "KSampler", "inputs": {"positive": [None, "x"], "steps": [1, 2, 3], "seed": {"a": 1}}}},
])
def test_comfyui_odd_graphs_give_partial_data_without_raising(graph):
    found = read_image_parameters(png({"prompt": json.dumps(graph)}))
    assert found.source == "ComfyUI"
    assert found.prompt == "" and "Steps" not in found.params and "Seed" not in found.params


# --- InvokeAI --------------------------------------------------------------------------------------


def test_invokeai_3_metadata():
    found = read_image_parameters(png({"invokeai_metadata": json.dumps(INVOKE3), "invokeai_graph": "{}"}))
    assert found.source == "InvokeAI"
    assert (found.prompt, found.negative_prompt) == ("landscape, mountains", "low quality")
    assert core(found) == {"Steps": "50", "Sampler": "DPM++ 2M SDE", "Schedule type": "Karras", "CFG scale": "7.5",
                           "Seed": "356120443", "Size-1": "768", "Size-2": "432", "Model": "amixx_3Prunedfp16"}
    assert found.params["VAE"] == "sd-vae-ft-mse"
    assert found.params["RNG"] == "CPU"
    assert "Clip skip" not in found.params  # InvokeAI clip_skip 0 = A1111 Clip skip 1
    assert_infotext_round_trips(found)


def test_invokeai_4_and_5_model_identifier_keeps_the_model_name():
    found = read_image_parameters(png({"invokeai_metadata": json.dumps(INVOKE5)}))
    assert core(found) == {"Steps": "30", "Sampler": "Euler a", "CFG scale": "5", "Seed": "42", "Size-1": "1024",
                           "Size-2": "1024", "Model": "juggernautXL_v9"}  # a blake3 hash is no A1111 hash
    assert found.params["Clip skip"] == "2" and found.params["Denoising strength"] == "0.65"
    assert "RNG" not in found.params
    sha = dict(INVOKE5, model=dict(INVOKE5["model"], hash="sha256:" + "9f" * 32))
    assert read_image_parameters(png({"invokeai_metadata": json.dumps(sha)})).params["Model hash"] == "9f9f9f9f9f"


def test_invokeai_2_sd_metadata_and_1_dream_string():
    for chunks in ({"sd-metadata": json.dumps(SD_METADATA), "Dream": DREAM}, {"Dream": DREAM}):
        found = read_image_parameters(png(chunks))
        assert found.source == "InvokeAI"
        assert (found.prompt, found.negative_prompt) == ("young woman, brunette hair", "rendering, glowing eyes")
        assert {k: v for k, v in core(found).items() if k not in ("Model", "Model hash", "CFG scale")} == {
            "Steps": "50", "Sampler": "LMS", "Seed": "2980747362", "Size-1": "512", "Size-2": "768"}
        assert float(found.params["CFG scale"]) == 5.0
        assert_infotext_round_trips(found)
    found = read_image_parameters(png({"sd-metadata": json.dumps(SD_METADATA), "Dream": DREAM}))
    assert (found.params["Model"], found.params["Model hash"]) == ("deliberateForInvoke_v08", "56d1442a0f")


# --- NovelAI ---------------------------------------------------------------------------------------


def test_novelai_legacy_png_reads_as_a1111_converts_it():
    chunks = {"Title": "AI generated image", "Description": "masterpiece, 1girl, cherry blossoms", "Software": "NovelAI",
              "Source": "Stable Diffusion 1D44365E", "Comment": json.dumps(NOVELAI_COMMENT)}
    found = read_image_parameters(png(chunks, size=(64, 48)))
    assert found.source == "NovelAI"
    assert (found.prompt, found.negative_prompt) == ("masterpiece, 1girl, cherry blossoms", "lowres, bad anatomy")
    # Numbers as written ("scale": 11.0 -> "11.0"), as A1111's conversion formats the JSON values.
    assert core(found) == {"Steps": "28", "Sampler": "Euler a", "CFG scale": "11.0", "Seed": "3316087364",
                           "Size-1": "64", "Size-2": "48"}
    assert (found.params["Clip skip"], found.params["ENSD"]) == ("2", "31337")
    assert found.infotext == ("masterpiece, 1girl, cherry blossoms\nNegative prompt: lowres, bad anatomy\nSteps: 28, "
                              "Sampler: Euler a, CFG scale: 11.0, Seed: 3316087364, Size: 64x48, Clip skip: 2, ENSD: 31337")
    other = dict(NOVELAI_COMMENT, sampler="k_dpmpp_2m")
    assert read_image_parameters(png(dict(chunks, Comment=json.dumps(other)))).params["Sampler"] == "DPM++ 2M"
    unknown = dict(NOVELAI_COMMENT, sampler="nai_smea_dyn")
    assert read_image_parameters(png(dict(chunks, Comment=json.dumps(unknown)))).params["Sampler"] == "Euler a"


# --- Fooocus ---------------------------------------------------------------------------------------

FOOOCUS_CORE = {"Steps": "30", "Sampler": "DPM++ 2M SDE", "Schedule type": "Karras", "CFG scale": "4",
                "Seed": "2154741126", "Size-1": "1152", "Size-2": "896", "Model": "juggernautXL_v8Rundiffusion",
                "Model hash": "aeb7e9e689"}


def test_fooocus_png_json_scheme():
    found = read_image_parameters(png({"parameters": json.dumps(FOOOCUS, sort_keys=True), "fooocus_scheme": "fooocus"}))
    assert found.source == "Fooocus"
    assert (found.prompt, found.negative_prompt) == ("a red fox in snow", "unrealistic")
    assert core(found) == FOOOCUS_CORE
    assert found.params["Styles"] == "['Fooocus V2']" and "Refiner" not in found.params
    assert_infotext_round_trips(found)


def test_fooocus_jpeg_keeps_json_in_exif_user_comment_with_scheme_in_maker_note():
    data = exif_image("JPEG", {0x9286: json.dumps(FOOOCUS), 0x927C: "fooocus", 0x0131: "Fooocus v2.5.5"})
    found = read_image_parameters(data)
    assert found.source == "Fooocus" and core(found) == FOOOCUS_CORE
    assert found.raw["fooocus_scheme"] == "fooocus"


def test_fooocus_a1111_scheme_is_infotext_but_made_by_fooocus():
    found = read_image_parameters(png({"parameters": A1111_TEXT, "fooocus_scheme": "a1111"}))
    assert found.source == "Fooocus" and found.params["Seed"] == "1170634956" and found.infotext == A1111_TEXT


# --- fall-backs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [
    {"prompt": '{"3": {"class_type": "KSampler", "inputs": {'},
    {"prompt": "[1, 2, 3]", "workflow": "{not json"},
    {"invokeai_metadata": '{"positive_prompt": "cat", '},
    {"sd-metadata": '{"image": '},
    {"Dream": "no quotes -s 50"},
    {"Software": "NovelAI", "Description": "a dog", "Comment": "{steps: 28}"},
    {"parameters": '{"prompt": "fox", "guidance_scale": 4', "fooocus_scheme": "fooocus"},
])
def test_malformed_metadata_falls_back_to_raw(chunks):
    found = read_image_parameters(png(chunks))
    assert found.source == "unknown"
    assert found.raw == chunks
    assert (found.prompt, found.params, found.infotext) == ("", {}, None)


def test_image_without_metadata():
    for data in (png({}), image_bytes_with_infotext(Image.new("RGB", (8, 8)), "", "jpg")):
        found = read_image_parameters(data)
        assert (found.source, found.prompt, found.raw, found.params, found.infotext) == ("unknown", "", {}, {}, None)
        assert found.note == NO_METADATA_NOTE
    camera = io.BytesIO()
    Image.new("RGB", (8, 8)).save(camera, format="JPEG", exif=piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon"}}))
    assert read_image_parameters(camera.getvalue()).raw == {}


def test_unrecognised_text_chunks_are_shown_raw():
    found = read_image_parameters(png({"Author": "me", "Comment": "just a note"}))
    assert (found.source, found.raw, found.note) == ("unknown", {"Author": "me", "Comment": "just a note"}, "")


def test_truncated_or_non_image_file_is_a_user_error(tmp_path):
    data = png({"prompt": json.dumps(COMFY_DEFAULT)})
    with pytest.raises(UnreadableImageError, match="damaged or cut off") as caught:
        read_image_parameters(data[: len(data) // 2])
    assert isinstance(caught.value, UserError)
    (tmp_path / "notes.png").write_bytes(b"hello")
    with pytest.raises(UnreadableImageError, match="'notes.png' is not an image"):
        read_image_parameters(tmp_path / "notes.png")


def test_readers_table_and_direct_info():
    assert [reader.name for reader in READERS] == ["Fooocus", "A1111", "ComfyUI", "InvokeAI", "NovelAI"]
    assert read_info({"parameters": "cat\nSteps: 5, Seed: 3, CFG scale: 2"}).params == {"Steps": "5", "Seed": "3", "CFG scale": "2"}
    assert synthesise_infotext("", "", {}) is None
    assert synthesise_infotext("a", "", {"Seed": "1", "Size-2": "8", "Steps": "2", "Size-1": "4", "Extra": "x: y"}) == (
        'a\nSteps: 2, Seed: 1, Size: 4x8, Extra: "x: y"')


def test_short_parameter_lines_stay_out_of_the_synthesised_infotext():
    """A1111's parser takes a last line with under 3 "Key: value" pairs for prompt text."""
    assert synthesise_infotext("cat", "dog", {"Seed": "1", "Steps": "2"}) == "cat\nNegative prompt: dog"
    assert synthesise_infotext("", "", {"Size-1": "64", "Size-2": "48"}) is None
