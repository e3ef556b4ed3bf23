"""Reads a checkpoint from disk into a WeightSet: single files (LDM layout) and diffusers folders.

Offline by construction: configs come from the shipped family folders, the file's own shapes, a
`<stem>.yaml` beside it, or a diffusers folder's own config files. Nothing is fetched.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from modules.checkpoints import ldm_keys
from modules.checkpoints.architecture import FAMILIES, HINTS_METADATA_KEY, ComponentSpec, ModelSpec, family_config, spec_from_ldm
from modules.checkpoints.registry import ModelFile
from modules.checkpoints.tensor_files import SafetensorsFile, load_pickle_checkpoint, open_tensor_file
from modules.checkpoints.weights import WeightSet, normalize_component, normalize_spec, read_component
from modules.errors import ModelLoadError
from modules.i18n import N_

# A diffusers folder's components as its messages name them.
COMPONENT_WORDS = {"unet": N_("unet"), "vae": N_("vae"), "text_encoder": N_("text encoder"), "text_encoder_2": N_("text encoder 2")}

log = logging.getLogger(__name__)


def _yaml_beside(path: Path) -> dict[str, Any] | None:
    candidate = path.with_suffix(".yaml")
    if not candidate.is_file():
        return None
    try:
        data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ModelLoadError(f"{candidate.name} beside the checkpoint is not valid YAML: {error}") from error
    return data if isinstance(data, dict) else None


def _hints(metadata: dict[str, str]) -> dict[str, Any]:
    raw = metadata.get(HINTS_METADATA_KEY)
    if not raw:
        return {}
    try:
        hints = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("Ignoring unreadable %s metadata.", HINTS_METADATA_KEY)
        return {}
    return hints if isinstance(hints, dict) else {}


def read_single_file(path: Path, dtype: torch.dtype, prediction_setting: str = "auto") -> WeightSet:
    """Reads an A1111/LDM `.safetensors` or `.ckpt` checkpoint."""
    from modules.checkpoints.weights import read_ldm_checkpoint

    path = Path(path)
    file = open_tensor_file(path)
    try:
        spec = spec_from_ldm(file.shapes(), _hints(file.metadata), _yaml_beside(path), prediction_setting)
        return read_ldm_checkpoint(file, spec, dtype)
    finally:
        file.close()


_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def _component_file(folder: Path):
    for name in _WEIGHT_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return SafetensorsFile(candidate) if candidate.suffix == ".safetensors" else load_pickle_checkpoint(candidate)
    raise ModelLoadError(f"{folder.parent.name}/{folder.name} has no weights file (expected one of {', '.join(_WEIGHT_NAMES[:2])}).")


def _folder_family(index: dict[str, Any], configs: dict[str, dict[str, Any]], scheduler: dict[str, Any]) -> str:
    present = {name for name, value in index.items() if isinstance(value, list) and value[0] is not None}
    if "text_encoder_2" in present:
        return "sdxl-base" if "text_encoder" in present else "sdxl-refiner"
    if configs.get("text_encoder", {}).get("hidden_act") == "gelu":
        return "sd2-v" if scheduler.get("prediction_type") == "v_prediction" else "sd2"
    return "sd1-inpaint" if configs["unet"].get("in_channels") == 9 else "sd1"


def read_diffusers_folder(path: Path, dtype: torch.dtype) -> WeightSet:
    """Reads a diffusers-format folder (model_index.json and one folder per component)."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path.name}/model_index.json is missing or invalid: {error}") from error
    configs: dict[str, dict[str, Any]] = {}
    classes: dict[str, str] = {}
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        entry = index.get(name)
        if not (isinstance(entry, list) and entry[0] is not None):
            continue
        try:
            configs[name] = json.loads((path / name / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{path.name}/{name}/config.json is missing or invalid: {error}") from error
        classes[name] = entry[1]
    if "unet" not in configs or "vae" not in configs:
        raise ModelLoadError(f"{path.name} is not a Stable Diffusion folder: it needs unet/ and vae/.")
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    family_name = _folder_family(index, configs, json.loads(scheduler_file.read_text()) if scheduler_file.is_file() else {})
    family = FAMILIES[family_name]
    scheduler = family_config(family_name, "scheduler")
    components = {name: ComponentSpec(classes[name], config) for name, config in configs.items()}
    spec = ModelSpec(
        family=family,
        components=components,
        prediction_type=scheduler.get("prediction_type", "epsilon"),
        scheduler_config=scheduler,
        variant="inpaint" if configs["unet"].get("in_channels") == 9 else "",
        text_sources=dict(ldm_keys.TEXT_ENCODER_PREFIXES[family.text_layout]),
    )
    spec = normalize_spec(spec)
    tensors = {}
    for name, component in spec.components.items():
        _, expected = normalize_component(component)
        file = _component_file(path / name)
        try:
            available = file.shapes()
            sources = {}
            for key in expected:
                for candidate in (key, "text_model." + key, ldm_keys.strip_text_model(key)):
                    if candidate in available:
                        sources[key] = ldm_keys.Source(candidate)
                        break
                else:
                    sources[key] = ldm_keys.Source(key)
            tensors[name] = read_component(file, sources, expected, dtype, COMPONENT_WORDS.get(name, name))
        finally:
            file.close()
    return WeightSet(spec, tensors, str(path))


def read_checkpoint(entry: ModelFile, dtype: torch.dtype, prediction_setting: str = "auto") -> WeightSet:
    """Reads any listed checkpoint into a WeightSet of `dtype` tensors."""
    if not entry.path.exists():
        raise ModelLoadError(f"{entry.name} no longer exists in the models folder. Press refresh.")
    if entry.is_folder:
        return read_diffusers_folder(entry.path, dtype)
    return read_single_file(entry.path, dtype, prediction_setting)
