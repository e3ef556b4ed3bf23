"""The shipped diffusers config folders build the published architectures, offline.

Every model is built on the meta device (no memory, no weights), so the exact parameter counts of
the reference models can be checked in well under a second each.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from modules.checkpoints.tokenizer import (  # noqa: E402
    OPENCLIP_PAD_TOKEN,
    SD1_PAD_TOKEN,
    ensure_tokenizer_files,
    tokenizer_config,
)

ROOT = Path(__file__).resolve().parents[2] / "modules" / "checkpoints" / "family_configs"
FAMILIES = ["sd1", "sd1-inpaint", "sd2", "sd2-v", "sdxl-base", "sdxl-refiner"]
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
CONFIG_FILES = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json"}

SD15_UNET = 859_520_964
SD_VAE = 83_653_863
CLIP_L = 123_060_480
OPENCLIP_H_23_LAYERS = 340_387_840
SD2_UNET = 865_910_724
SDXL_UNET = 2_567_463_684
# 2.26 B params: the fp16 refiner UNet file is 4.52 GB.
SDXL_REFINER_UNET = 2_259_526_660
OPENCLIP_BIGG_WITH_PROJECTION = 694_659_840

PARAMETER_COUNTS = [
    ("sd1", "unet", SD15_UNET),
    ("sd1", "vae", SD_VAE),
    ("sd1", "text_encoder", CLIP_L),
    ("sd1-inpaint", "unet", SD15_UNET + 5 * 320 * 3 * 3),  # conv_in takes 5 more channels
    ("sd1-inpaint", "vae", SD_VAE),
    ("sd1-inpaint", "text_encoder", CLIP_L),
    ("sd2", "unet", SD2_UNET),
    ("sd2", "vae", SD_VAE),
    ("sd2", "text_encoder", OPENCLIP_H_23_LAYERS),
    ("sd2-v", "unet", SD2_UNET),
    ("sd2-v", "vae", SD_VAE),
    ("sd2-v", "text_encoder", OPENCLIP_H_23_LAYERS),
    ("sdxl-base", "unet", SDXL_UNET),
    ("sdxl-base", "vae", SD_VAE),
    ("sdxl-base", "text_encoder", CLIP_L),
    ("sdxl-base", "text_encoder_2", OPENCLIP_BIGG_WITH_PROJECTION),
    ("sdxl-refiner", "unet", SDXL_REFINER_UNET),
    ("sdxl-refiner", "vae", SD_VAE),
    ("sdxl-refiner", "text_encoder_2", OPENCLIP_BIGG_WITH_PROJECTION),
]


def model_index(family: str) -> dict[str, Any]:
    return json.loads((ROOT / family / "model_index.json").read_text())


def components(family: str) -> dict[str, tuple[str, str]]:
    """Non-null components of a family's model_index.json: name -> (library, class name)."""
    return {
        name: (value[0], value[1])
        for name, value in model_index(family).items()
        if not name.startswith("_") and isinstance(value, list) and value[0] is not None
    }


def build_on_meta(family: str, name: str) -> torch.nn.Module:
    """The component's module, built from the shipped config with the class model_index.json names."""
    library, class_name = components(family)[name]
    folder = ROOT / family / name
    if library == "diffusers":
        cls = getattr(diffusers, class_name)
        config = cls.load_config(folder)
        with torch.device("meta"):
            return cls.from_config(config)
    assert library == "transformers"
    cls = getattr(transformers, class_name)
    config = cls.config_class.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        return cls(config)


@pytest.mark.parametrize("family, component, expected", PARAMETER_COUNTS)
def test_parameter_counts_equal_the_published_models(family: str, component: str, expected: int) -> None:
    module = build_on_meta(family, component)
    assert sum(p.numel() for p in module.parameters()) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_model_index_names_a_pipeline_whose_components_all_load(family: str) -> None:
    index = model_index(family)
    pipeline_class = getattr(diffusers, index["_class_name"])
    assert pipeline_class.load_config(ROOT / family)["_class_name"] == index["_class_name"]
    accepted = set(inspect.signature(pipeline_class.__init__).parameters)
    listed = {k for k, v in index.items() if isinstance(v, list)}
    assert listed <= accepted

    present = components(family)
    folders = {p.name for p in (ROOT / family).iterdir() if p.is_dir()}
    assert folders == set(present), "one folder per non-null component, none for the others"
    for name, (library, class_name) in present.items():
        cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
        if name in MODEL_COMPONENTS:
            assert json.loads((ROOT / family / name / "config.json").read_text()).get(
                "_class_name", class_name
            ) == class_name
        elif name == "scheduler":
            scheduler = cls.from_pretrained(ROOT / family, subfolder="scheduler", local_files_only=True)
            assert type(scheduler).__name__ == class_name
        else:
            assert class_name == "CLIPTokenizer"
        assert (ROOT / family / name / CONFIG_FILES.get(name, "config.json")).is_file()


def test_pipeline_kinds() -> None:
    assert {f: model_index(f)["_class_name"] for f in FAMILIES} == {
        "sd1": "StableDiffusionPipeline",
        "sd1-inpaint": "StableDiffusionInpaintPipeline",
        "sd2": "StableDiffusionPipeline",
        "sd2-v": "StableDiffusionPipeline",
        "sdxl-base": "StableDiffusionXLPipeline",
        "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
    }
    assert set(components("sdxl-refiner")) == {"unet", "vae", "scheduler", "text_encoder_2", "tokenizer_2"}


def _config(family: str, component: str) -> dict[str, Any]:
    return json.loads((ROOT / family / component / CONFIG_FILES.get(component, "config.json")).read_text())


@pytest.mark.parametrize(
    "family, prediction, sample_size, upcast, in_channels, scaling",
    [
        ("sd1", "epsilon", 64, False, 4, 0.18215),
        ("sd1-inpaint", "epsilon", 64, False, 9, 0.18215),
        ("sd2", "epsilon", 64, False, 4, 0.18215),
        ("sd2-v", "v_prediction", 96, True, 4, 0.18215),
        ("sdxl-base", "epsilon", 128, False, 4, 0.13025),
        ("sdxl-refiner", "epsilon", 128, False, 4, 0.13025),
    ],
)
def test_values_that_parameter_counts_cannot_see(
    family: str, prediction: str, sample_size: int, upcast: bool, in_channels: int, scaling: float
) -> None:
    unet, vae, scheduler = _config(family, "unet"), _config(family, "vae"), _config(family, "scheduler")
    assert scheduler["prediction_type"] == prediction
    assert (unet["sample_size"], unet["upcast_attention"], unet["in_channels"]) == (sample_size, upcast, in_channels)
    assert vae["scaling_factor"] == scaling
    assert vae["sample_size"] == sample_size * 8
    training = {k: scheduler[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "steps_offset", "clip_sample")}
    assert training == {
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False,
    }
    if family.startswith("sdxl"):
        assert scheduler["_class_name"] == "EulerDiscreteScheduler" and scheduler["timestep_spacing"] == "leading"
        assert unet["addition_embed_type"] == "text_time" and unet["addition_time_embed_dim"] == 256
    else:
        assert scheduler["_class_name"] == "PNDMScheduler"
        assert scheduler["skip_prk_steps"] is True and scheduler["set_alpha_to_one"] is False
    texts = {name: _config(family, name) for name in ("text_encoder", "text_encoder_2") if name in components(family)}
    assert {c["hidden_act"] for c in texts.values() if c["hidden_size"] == 768} <= {"quick_gelu"}
    assert {c["hidden_act"] for c in texts.values() if c["hidden_size"] != 768} <= {"gelu"}


TOKENIZER_PADS = [
    ("sd1", "tokenizer", SD1_PAD_TOKEN),
    ("sd1-inpaint", "tokenizer", SD1_PAD_TOKEN),
    ("sd2", "tokenizer", OPENCLIP_PAD_TOKEN),
    ("sd2-v", "tokenizer", OPENCLIP_PAD_TOKEN),
    ("sdxl-base", "tokenizer", SD1_PAD_TOKEN),
    ("sdxl-base", "tokenizer_2", OPENCLIP_PAD_TOKEN),
    ("sdxl-refiner", "tokenizer_2", OPENCLIP_PAD_TOKEN),
]


@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tokenizer_files(tmp_path_factory.mktemp("tokenizers"), SD1_PAD_TOKEN)


@pytest.mark.parametrize("family, folder, pad", TOKENIZER_PADS)
def test_shipped_tokenizer_configs_load_with_the_right_pad(
    family: str, folder: str, pad: str, vocab_files: Path, tmp_path: Path
) -> None:
    shipped = ROOT / family / folder
    assert sorted(p.name for p in shipped.iterdir()) == ["tokenizer_config.json"], "vocab files are built at run time"
    assert _config(family, folder) == tokenizer_config(pad)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(vocab_files / name, tmp_path / name)
    shutil.copy(shipped / "tokenizer_config.json", tmp_path / "tokenizer_config.json")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert tokenizer.pad_token_id == (0 if pad == OPENCLIP_PAD_TOKEN else 49407)
    assert tokenizer("hello!").input_ids == [49406, 3306, 256, 49407]


def test_each_family_row_states_how_its_models_run():
    from modules.checkpoints.architecture import FAMILIES

    sdxl = {name for name, f in FAMILIES.items() if f.size_conditioning}
    assert sdxl == {"sdxl-base", "sdxl-refiner"} == {name for name, f in FAMILIES.items() if f.text_plan == "sdxl" and f.latent_space == "sdxl"}
    assert [name for name, f in FAMILIES.items() if f.refiner] == ["sdxl-refiner"]
    assert [name for name, f in FAMILIES.items() if f.inpainting] == ["sd1-inpaint"]
    assert {f.latent_shape(512, 768) for f in FAMILIES.values()} == {(4, 96, 64)}
