"""Merging checkpoints tensor by tensor, so the peak memory stays near one tensor, not one model.

The inputs are read one tensor at a time (`.safetensors` streamed without mmap; a `.ckpt` is loaded
whole through the restricted unpickler, so merging one costs its size in memory), each output
tensor is computed in float32 and written straight to the output file, whose header is planned
from A's keys first (`write_safetensors_streamed`). Keys follow A: a key B (or C) lacks is A's as
it is; an inpainting A (9 input channels) merges its first 4 with a normal B's, as A1111 does; any
other shape difference is refused by name. A and B (and C) must be the same family (SD1, SD2,
SDXL, SDXL refiner): a clear error otherwise. A baked-in VAE (any layout Easel reads) replaces A's
VAE weights, converted to A's key layout.

The output carries A1111's metadata: `sd_merge_recipe` (the recipe, with the inputs' hashes) and
`sd_merge_models` (each input's hash -> name, legacy hash and its own recipe, inputs' histories
merged), and `format: pt`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from modules.checkpoints.architecture import detect_family, spec_from_ldm
from modules.checkpoints.ldm_keys import UNET_PREFIX, VAE_PREFIX, vae_prefix_map, vae_source
from modules.checkpoints.tensor_files import TensorFile, open_tensor_file, write_safetensors_streamed
from modules.checkpoints.weights import read_vae_file
from modules.errors import ModelLoadError
from modules.merger.recipe import ADD_DIFFERENCE, NO_INTERPOLATION, WEIGHTED_SUM, MergeError, MergeRecipe

CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"


@dataclass(frozen=True)
class MergeInput:
    """One input checkpoint: its file, the name the list shows, and its hashes (for the metadata)."""

    path: Path
    name: str
    sha256: str | None = None
    legacy_hash: str | None = None


@dataclass(frozen=True)
class MergeProgress:
    done: int  # tensors written
    total: int
    key: str


def _dtypes(file: TensorFile) -> dict[str, torch.dtype]:
    dtypes = getattr(file, "dtypes", None)
    return dtypes() if dtypes is not None else {key: file.read(key).dtype for key in file.shapes()}


def _lineage(file: TensorFile, name: str) -> str:
    try:
        family, _ = detect_family(file.shapes())
    except ModelLoadError as error:
        raise MergeError(f"{name} cannot be merged: {error}") from error
    return family.text_layout  # sd1 and its inpainting variant are one lineage


def _baked_vae(vae_path: Path, a: TensorFile) -> dict[str, torch.Tensor]:
    """The VAE file's weights under A's keys (LDM `first_stage_model.*`)."""
    spec = spec_from_ldm(a.shapes())
    component = spec.components["vae"]
    vae = open_tensor_file(vae_path)
    try:
        tensors = read_vae_file(vae, component, torch.float32)
    except ModelLoadError as error:
        vae_name, model = vae_path.name, a.path.name
        raise MergeError(f"The VAE {vae_name} does not fit {model}: {error}") from error
    finally:
        vae.close()
    rows = vae_prefix_map(component.config, VAE_PREFIX)
    baked: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        source = vae_source(key, component.config, rows, VAE_PREFIX)
        baked[source.key] = tensor.reshape(*tensor.shape, 1, 1) if source.transform == "reshape" else tensor
    return baked


def merge_checkpoints(recipe: MergeRecipe, inputs: list[MergeInput], output: Path, vae: Path | None = None,
                      on_progress: Callable[[MergeProgress], None] | None = None) -> Path:
    """Writes the merge of `inputs` (A, B, C as the method needs) to `output` (refused if it exists).
    `on_progress` is called after each tensor and may raise to stop (the file is then not written)."""
    recipe.check()
    if output.exists():
        taken, folder = output.name, output.parent.name
        raise MergeError(f"{taken} already exists in {folder}/: choose another name (nothing was overwritten).")
    needed = {NO_INTERPOLATION: 1, WEIGHTED_SUM: 2, ADD_DIFFERENCE: 3}[recipe.method]
    files: list[TensorFile] = []
    try:
        for item in inputs[:needed]:
            try:
                files.append(open_tensor_file(item.path))
            except ModelLoadError as error:
                raise MergeError(f"Cannot read {item.name}: {error}") from error
        lineages = [_lineage(f, item.name) for f, item in zip(files, inputs)]
        if len(set(lineages)) > 1:
            described = ", ".join(f"{item.name} is {lineage.upper().replace('_', ' ')}" for item, lineage in zip(inputs, lineages))
            raise MergeError(f"These checkpoints are different model families and cannot be merged: {described}.")
        a = files[0]
        baked = _baked_vae(vae, a) if vae is not None else {}
        discard = re.compile(recipe.discard_weights) if recipe.discard_weights.strip() else None
        shapes = {key: shape for key, shape in a.shapes().items() if discard is None or not discard.search(key)}
        dtypes = _dtypes(a)
        half = torch.float16
        plan = []
        for key, shape in shapes.items():
            if key in baked and tuple(baked[key].shape) != tuple(shape):
                model, in_vae, in_model = inputs[0].name, tuple(baked[key].shape), tuple(shape)
                raise MergeError(f"The VAE does not fit {model}: {key} is {in_vae} in the VAE, {in_model} in the checkpoint.")
            dtype = dtypes[key]
            plan.append((key, half if recipe.save_as_half and dtype.is_floating_point else dtype, tuple(shape)))
        _check_shapes(files, inputs, recipe.method)
        planned = {key: dtype for key, dtype, _ in plan}
        total = len(plan)
        count = 0

        keys = [set(f.shapes()) for f in files]

        def produce(key: str) -> torch.Tensor:
            nonlocal count
            result = baked[key] if key in baked else _merged(key, files, keys, recipe)
            count += 1
            if on_progress is not None:
                on_progress(MergeProgress(count, total, key))
            return result.to(planned[key])

        metadata = _metadata(recipe, inputs[:needed], files)
        write_safetensors_streamed(output, plan, produce, metadata)
        return output
    finally:
        for file in files:
            file.close()


def _check_shapes(files: list[TensorFile], inputs: list[MergeInput], method: str) -> None:
    if method == NO_INTERPOLATION:
        return
    a = files[0].shapes()
    for file, item in zip(files[1:], inputs[1:]):
        for key, shape in file.shapes().items():
            if key not in a or tuple(a[key]) == tuple(shape):
                continue
            if key == CONV_IN and a[key][1] == 9 and shape[1] == 4:
                continue  # an inpainting A takes a normal model's first 4 channels
            if key == CONV_IN and a[key][1] == 4 and shape[1] == 9:
                normal, inpainting = inputs[0].name, item.name
                raise MergeError(f"{normal} is a normal model and {inpainting} an inpainting one: put the inpainting model in A.")
            first, other, in_first, in_other = inputs[0].name, item.name, tuple(a[key]), tuple(shape)
            raise MergeError(f"{key} is {in_first} in {first} but {in_other} in {other}: these models do not fit together.")


def _merged(key: str, files: list[TensorFile], keys: list[set[str]], recipe: MergeRecipe) -> torch.Tensor:
    a = files[0].read(key)
    if recipe.method == NO_INTERPOLATION or not a.is_floating_point():
        return a
    others = files[1:]
    if any(key not in found for found in keys[1:]):
        return a
    m = float(recipe.multiplier)
    theta0 = a.float()
    b = others[0].read(key).float()
    channels = b.shape[1] if key == CONV_IN and b.shape != theta0.shape else None
    target = theta0[:, :channels] if channels is not None else theta0
    if recipe.method == WEIGHTED_SUM:
        merged = target * (1 - m) + b * m
    else:
        c = others[1].read(key).float()
        merged = target + (b - c) * m
    if channels is not None:
        theta0 = theta0.clone()
        theta0[:, :channels] = merged
        return theta0
    return merged


def _metadata(recipe: MergeRecipe, inputs: list[MergeInput], files: list[TensorFile]) -> dict[str, str]:
    hashes = [item.sha256[:10] if item.sha256 else None for item in inputs]
    recipe_json = recipe.a1111_recipe(hashes)
    models: dict[str, object] = {}
    for item, file in zip(inputs, files):
        earlier = _json(file.metadata.get("sd_merge_models"))
        if isinstance(earlier, dict):
            models.update(earlier)
        if item.sha256:
            models[item.sha256] = {"name": item.name, "legacy_hash": item.legacy_hash, "sd_merge_recipe": _json(file.metadata.get("sd_merge_recipe"))}
    return {"format": "pt", "sd_merge_recipe": json.dumps(recipe_json), "sd_merge_models": json.dumps(models)}


def _json(text: str | None) -> object:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
