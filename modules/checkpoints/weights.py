"""Weight sets: a checkpoint's tensors in diffusers naming, read, built into modules, swapped, written.

A `WeightSet` is what the RAM cache keeps. Modules are built once per architecture with their
parameters pointing at a weight set's tensors (no copy on CPU); switching to another checkpoint of the
same architecture re-points the parameters (`param.data = tensor`), so the module objects, and
anything compiled against them, survive.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, cast

import torch
from accelerate import init_empty_weights

from modules.checkpoints import ldm_keys
from modules.checkpoints.architecture import HINTS_METADATA_KEY, ComponentSpec, ModelSpec
from modules.checkpoints.tensor_files import Staging, TensorFile
from modules.errors import ModelLoadError

if TYPE_CHECKING:
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import PreTrainedModel

Tensors = dict[str, torch.Tensor]
_DROPPED_CONFIG_KEYS = ("transformers_version", "dtype", "torch_dtype", "architectures", "output_attentions", "output_hidden_states", "return_dict")


def _module_class(class_name: str) -> Any:
    import diffusers
    import transformers

    for package in (diffusers, transformers):
        cls = getattr(package, class_name, None)
        if cls is not None:
            return cls
    raise ModelLoadError(f"Unknown model component class {class_name}.")


def _instantiate(class_name: str, config: Mapping[str, Any]) -> ModelMixin | PreTrainedModel:
    """A diffusers model (UNet, VAE) or a transformers one (text encoders), with empty weights."""
    cls = _module_class(class_name)
    with init_empty_weights():
        if hasattr(cls, "from_config"):
            return cls.from_config(dict(config))
        config_cls = cls.config_class
        clean = {k: v for k, v in config.items() if not k.startswith("_") and k not in _DROPPED_CONFIG_KEYS}
        return cls(config_cls(**clean))


def _full_config(module: ModelMixin | PreTrainedModel) -> dict[str, Any]:
    raw = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    return {k: v for k, v in sorted(raw.items()) if not k.startswith("_") and k not in _DROPPED_CONFIG_KEYS}


@lru_cache(maxsize=32)
def _normalized(class_name: str, config_json: str) -> tuple[str, tuple[tuple[str, tuple[int, ...]], ...]]:
    module = _instantiate(class_name, json.loads(config_json))
    shapes = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return json.dumps(_full_config(module), sort_keys=True, default=list), shapes


def normalize_component(component: ComponentSpec) -> tuple[ComponentSpec, dict[str, tuple[int, ...]]]:
    """The component with its config completed by the library's defaults, and the shapes it expects."""
    try:
        full, shapes = _normalized(component.class_name, json.dumps(component.config, sort_keys=True, default=list))
    except (ValueError, TypeError, KeyError, AssertionError) as error:
        raise ModelLoadError(f"Cannot build a {component.class_name} from this checkpoint's shapes: {error}") from error
    return ComponentSpec(component.class_name, json.loads(full)), dict(shapes)


def normalize_spec(spec: ModelSpec) -> ModelSpec:
    """A spec whose component configs are complete, so equal architectures have equal signatures."""
    return replace(spec, components={name: normalize_component(c)[0] for name, c in spec.components.items()})


@dataclass
class WeightSet:
    """One checkpoint's tensors, per component, in diffusers naming and the target dtype."""

    spec: ModelSpec
    tensors: dict[str, Tensors]
    source: str

    @property
    def nbytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for tensors in self.tensors.values():
            for t in tensors.values():
                storage = t.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
        return total


def ldm_sources(spec: ModelSpec, component: str, keys: list[str]) -> dict[str, ldm_keys.Source]:
    """For each diffusers key of a component, where it lives in the LDM layout."""
    config = spec.components[component].config
    if component == "unet":
        rows = ldm_keys.unet_prefix_map(config)
        return {k: ldm_keys.unet_source(k, config, rows) for k in keys}
    if component == "vae":
        rows = ldm_keys.vae_prefix_map(config)
        return {k: ldm_keys.vae_source(k, config, rows) for k in keys}
    layout, prefix = spec.text_sources[component]
    return {k: ldm_keys.text_source(k, layout, prefix) for k in keys}


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _stored_shape(shape: tuple[int, ...], source: ldm_keys.Source) -> tuple[int, ...]:
    """The shape a stored tensor has once `source`'s transform is applied."""
    if source.transform == "chunk":
        return (shape[0] // source.chunks, *shape[1:])
    if source.transform == "transpose":
        return tuple(reversed(shape))
    return tuple(shape)


def read_component(
    file: TensorFile,
    sources: Mapping[str, ldm_keys.Source],
    expected: Mapping[str, tuple[int, ...]],
    dtype: torch.dtype,
    what: str,
) -> Tensors:
    """Reads one component's tensors, transformed, cast, and checked against `expected`.

    Shapes are checked from the header before any data is read, so a wrong file fails at once.
    Tensors are read one at a time; a cast goes through one reused staging buffer, so the only
    allocations are the results. (Reading on two threads was measured slower on 2 cores: both
    threads fault in fresh pages and contend for the same lock.)
    """
    available = file.shapes()
    missing = [s.key for s in sources.values() if s.key not in available]
    if missing:
        raise ModelLoadError(
            f"{file.path.name} is missing {len(missing)} tensor(s) of the {what} (first: {missing[0]}); "
            "the file is incomplete or of a kind Easel does not support."
        )
    for key, source in sources.items():
        stored = _stored_shape(available[source.key], source)
        fits = math.prod(stored) == math.prod(expected[key]) if source.transform == "reshape" else stored == tuple(expected[key])
        if not fits:
            raise ModelLoadError(
                f"{file.path.name}: {source.key} has shape {tuple(available[source.key])} but the {what} needs "
                f"{tuple(expected[key])} for {key}."
            )
    staging = Staging()
    stored_tensors = {key: file.read_as(key, dtype, staging) for key in dict.fromkeys(s.key for s in sources.values())}
    out: Tensors = {}
    for key, source in sources.items():
        tensor = stored_tensors[source.key]
        if source.transform == "chunk":
            tensor = tensor.chunk(source.chunks, dim=0)[source.chunk_index]
        elif source.transform == "transpose":
            tensor = tensor.t().contiguous()
        elif source.transform == "reshape":
            tensor = tensor.reshape(expected[key])
        out[key] = tensor
    return out


def read_ldm_checkpoint(file: TensorFile, spec: ModelSpec, dtype: torch.dtype) -> WeightSet:
    """Reads every component of an LDM single-file checkpoint into a WeightSet."""
    spec = normalize_spec(spec)
    tensors: dict[str, Tensors] = {}
    for name, component in spec.components.items():
        _, expected = normalize_component(component)
        sources = ldm_sources(spec, name, list(expected))
        tensors[name] = read_component(file, sources, expected, dtype, name.replace("_", " "))
    return WeightSet(spec, tensors, str(file.path))


def build_module(component: ComponentSpec, tensors: Tensors, device: torch.device) -> torch.nn.Module:
    """Builds a module whose parameters are `tensors` (moved to `device`; shared, not copied, on CPU)."""
    module: torch.nn.Module = _instantiate(component.class_name, component.config)
    state = {k: v.to(device) for k, v in tensors.items()}
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ModelLoadError(f"The weights do not fit a {component.class_name}: {error}") from error
    module.requires_grad_(False)
    return module.to(device).eval()


def unet_in(modules: Mapping[str, torch.nn.Module]) -> UNet2DConditionModel:
    """The UNet among a model's modules. They are keyed by component name and built from the spec's
    class names (architecture.py: "unet" is a UNet2DConditionModel); a mapping can only say nn.Module."""
    return cast("UNet2DConditionModel", modules["unet"])


def swap_weights(module: torch.nn.Module, tensors: Tensors, device: torch.device) -> None:
    """Points every parameter of `module` at `tensors`, keeping the module and parameter objects.

    All shapes are checked before anything changes, so a mismatch leaves the module as it was.
    """
    params = dict(module.named_parameters())
    if params.keys() != tensors.keys():
        missing = sorted(params.keys() - tensors.keys())[:3]
        raise ModelLoadError(f"Weights do not match the loaded model (missing {missing}).")
    for name, param in params.items():
        if param.shape != tensors[name].shape:
            raise ModelLoadError(f"Weights do not match the loaded model: {name} is {tuple(tensors[name].shape)}, needs {tuple(param.shape)}.")
    with torch.no_grad():
        for name, param in params.items():
            param.data = tensors[name].to(device=device, dtype=param.dtype)


def hints_for(spec: ModelSpec) -> dict[str, Any]:
    """What a reader cannot derive from shapes, written into our own checkpoints' metadata."""
    unet = spec.components["unet"].config
    vae = spec.components["vae"].config
    hints: dict[str, Any] = {
        "norm_num_groups": unet.get("norm_num_groups", 32),
        "sample_size": unet.get("sample_size"),
        "vae_norm_num_groups": vae.get("norm_num_groups", 32),
        "vae_scaling_factor": vae.get("scaling_factor"),
        "vae_sample_size": vae.get("sample_size"),
        "prediction_type": spec.prediction_type,
        "addition_time_embed_dim": unet.get("addition_time_embed_dim"),
    }
    heads = unet.get("num_attention_heads") or unet["attention_head_dim"]
    hints["unet_heads"] = heads if isinstance(heads, int) else list(heads)
    for name, prefix in (("text_encoder", "text_"), ("text_encoder_2", "text2_")):
        if name in spec.components:
            hints[prefix + "heads"] = spec.components[name].config["num_attention_heads"]
    return {k: v for k, v in hints.items() if v is not None}


def ldm_state_dict(spec: ModelSpec, tensors: Mapping[str, Tensors]) -> Iterator[tuple[str, torch.Tensor]]:
    """The LDM-layout tensors of a checkpoint (the inverse of `read_ldm_checkpoint`)."""
    for name in spec.components:
        component_tensors = tensors[name]
        sources = ldm_sources(spec, name, list(component_tensors))
        fused: dict[str, list[torch.Tensor | None]] = {}
        for key, source in sources.items():
            t = component_tensors[key]
            if source.transform == "chunk":
                fused.setdefault(source.key, [None] * source.chunks)[source.chunk_index] = t
            elif source.transform == "transpose":
                yield source.key, t.t().contiguous()
            elif source.transform == "reshape":
                yield source.key, t.reshape(*t.shape, 1, 1)
            else:
                yield source.key, t
        for key, parts in fused.items():
            if any(p is None for p in parts):
                raise ModelLoadError(f"Cannot write {key}: q, k and v are not all present.")
            yield key, torch.cat(parts, dim=0)  # type: ignore[arg-type]


def checkpoint_metadata(spec: ModelSpec) -> dict[str, str]:
    """safetensors metadata for a checkpoint we write."""
    return {HINTS_METADATA_KEY: json.dumps(hints_for(spec), sort_keys=True), "easel.family": spec.family.name}


def write_ldm_checkpoint(path: Path, spec: ModelSpec, tensors: Mapping[str, Tensors], dtype: torch.dtype | None = None) -> None:
    """Writes an A1111/LDM single-file checkpoint (`.safetensors`, or `.ckpt` as a plain state dict)."""
    from modules.checkpoints.tensor_files import write_safetensors

    items = ((k, _cast(t, dtype) if dtype else t) for k, t in ldm_state_dict(spec, tensors))
    path = Path(path)
    if path.suffix == ".safetensors":
        write_safetensors(path, items, checkpoint_metadata(spec))
    else:
        torch.save({"state_dict": dict(items)}, path)


def read_vae_file(file: TensorFile, vae: ComponentSpec, dtype: torch.dtype) -> Tensors:
    """Reads a standalone VAE (LDM keys with or without `first_stage_model.`, or diffusers keys)."""
    component, expected = normalize_component(vae)
    shapes = file.shapes()
    if any(k.startswith(ldm_keys.VAE_PREFIX) for k in shapes):
        prefix = ldm_keys.VAE_PREFIX
    elif "encoder.down.0.block.0.conv1.weight" in shapes:
        prefix = ""
    elif "encoder.down_blocks.0.resnets.0.conv1.weight" in shapes:
        sources = {k: ldm_keys.Source(k) for k in expected}
        return read_component(file, sources, expected, dtype, "VAE")
    else:
        raise ModelLoadError(f"{file.path.name} is not a VAE: it has no encoder/decoder weights.")
    rows = ldm_keys.vae_prefix_map(component.config, prefix)
    sources = {k: ldm_keys.vae_source(k, component.config, rows, prefix) for k in expected}
    return read_component(file, sources, expected, dtype, "VAE")


def write_vae_file(path: Path, vae: ComponentSpec, tensors: Tensors) -> None:
    """Writes a standalone VAE in the layout A1111 users download (bare LDM keys)."""
    from modules.checkpoints.tensor_files import write_safetensors

    rows = ldm_keys.vae_prefix_map(vae.config, "")
    items = []
    for key, t in tensors.items():
        source = ldm_keys.vae_source(key, vae.config, rows, "")
        items.append((source.key, t.reshape(*t.shape, 1, 1) if source.transform == "reshape" else t))
    write_safetensors(Path(path), items)
