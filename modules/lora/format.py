"""kohya-ss / A1111 LoRA state dicts -> weight deltas for the parameters of our loaded modules.

A kohya LoRA names each adapted layer by the module's path with "." replaced by "_", under a prefix
per component: `lora_unet_`, `lora_te_` (SD1/SD2 text encoder), `lora_te1_`/`lora_te2_` (SDXL's
two). Each layer has `.lora_down.weight` (rank x in[,kh,kw]), `.lora_up.weight` (out x rank[,1,1]),
optionally `.alpha` (scale = alpha / rank; 1 without it) and, for LoCon's CP decomposition,
`.lora_mid.weight`. The UNet part comes in two namings: diffusers module paths
(`down_blocks_0_attentions_0_proj_in`, kohya's SD1/SD2 files) and the LDM layout
(`input_blocks_1_1_proj_in`, kohya's SDXL files and older SD1 ones).

Since "_" is also inside module names, a key cannot be split back into a path; instead we name every
Linear/Conv2d of our modules the way kohya would (both namings for the UNet) and look keys up in that
index, as A1111 does. The delta of a layer is `up @ down * scale`, computed in float32 (for 3x3
convs `einsum(up[o,r], down[r,i,h,w])`, as kohya merges them), reshaped to the target when only the
layout differs (a linear LoRA on a 1x1-conv `proj_in`), then cast to the parameter's dtype and device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

from modules.checkpoints.ldm_keys import UNET_PREFIX, unet_prefix_map, unet_source
from modules.checkpoints.weights import unet_in

# Module-name prefix (kohya) -> component of LoadedModel.modules.
COMPONENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "unet": ("lora_unet_",),
    "text_encoder": ("lora_te_", "lora_te1_"),
    "text_encoder_2": ("lora_te2_",),
}
TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")
_PARTS = {"lora_down.weight": "down", "lora_up.weight": "up", "lora_mid.weight": "mid", "alpha": "alpha", "scale": "scale"}

Index = dict[str, tuple[str, str]]  # kohya layer name -> (component, parameter name)
Deltas = dict[str, dict[str, torch.Tensor]]  # component -> parameter name -> delta


@dataclass
class LoraLayer:
    """One adapted layer of a LoRA file."""

    name: str
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    mid: torch.Tensor | None = None
    alpha: float | None = None
    scale: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0]) if self.down is not None else 0

    @property
    def factor(self) -> float:
        """A1111's `calc_scale`: an explicit `scale`, else alpha / rank, else 1."""
        if self.scale is not None:
            return self.scale
        if self.alpha is not None and self.rank:
            return self.alpha / self.rank
        return 1.0


@dataclass
class LoraNetwork:
    """The layers of a LoRA file, and the keys that are not (kohya) LoRA layers."""

    layers: dict[str, LoraLayer] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def parse_lora(tensors: Mapping[str, torch.Tensor]) -> LoraNetwork:
    """Groups a kohya/A1111 state dict by layer. Keys of other kinds (LoHa, LoKr, DoRA scales,
    diffusers/PEFT names, embeddings bundled in the file) are listed in `unknown`."""
    network = LoraNetwork()
    for key, tensor in tensors.items():
        base, _, part = key.partition(".")
        role = _PARTS.get(part)
        if role is None or not base.startswith("lora_"):
            network.unknown.append(key)
            continue
        layer = network.layers.setdefault(base, LoraLayer(base))
        if role in ("alpha", "scale"):
            setattr(layer, role, float(tensor.float().item()))
        else:
            setattr(layer, role, tensor)
    for name, layer in list(network.layers.items()):
        if layer.down is None or layer.up is None:
            network.unknown.append(name + " (lora_up or lora_down missing)")
            del network.layers[name]
    return network


def _adaptable(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and isinstance(getattr(module, "weight", None), torch.Tensor)


def _kohya(prefix: str, path: str) -> str:
    return prefix + path.replace(".", "_")


def build_index(modules: Mapping[str, torch.nn.Module]) -> Index:
    """Every kohya layer name our modules answer to -> (component, weight parameter name)."""
    index: Index = {}
    for component, prefixes in COMPONENT_PREFIXES.items():
        module = modules.get(component)
        if module is None:
            continue
        rows = unet_prefix_map(dict(unet_in(modules).config)) if component == "unet" else None
        for path, child in module.named_modules():
            if not path or not _adaptable(child):
                continue
            param = path + ".weight"
            names = [path]
            if component in TEXT_COMPONENTS:
                # transformers names CLIPTextModel's modules without `text_model.`; kohya always has it.
                names = ["text_model." + path if not path.startswith("text_model.") else path]
            elif rows is not None:
                try:
                    ldm = unet_source(param, {}, rows).key
                    names.append(ldm[len(UNET_PREFIX):-len(".weight")])
                except KeyError:
                    pass
            for prefix in prefixes:
                for name in names:
                    index.setdefault(_kohya(prefix, name), (component, param))
    return index


def layer_delta(layer: LoraLayer, target_shape: torch.Size, device: torch.device) -> torch.Tensor:
    """`up @ down * scale` in float32 on `device`, shaped like the target weight.

    Raises ValueError when the LoRA's shapes cannot fit the target (a LoRA for another model size)."""
    assert layer.up is not None and layer.down is not None  # parse_lora drops layers without both
    up = layer.up.to(device=device, dtype=torch.float32)
    down = layer.down.to(device=device, dtype=torch.float32)
    rank = down.shape[0]
    up_flat = up.reshape(up.shape[0], -1)
    if up_flat.shape[1] != rank:
        raise ValueError(f"{layer.name}: lora_up has {up_flat.shape[1]} columns for rank {rank}")
    if layer.mid is not None:
        # LoCon CP decomposition (A1111's rebuild_cp_decomposition): mid is rank x rank x kh x kw.
        mid = layer.mid.to(device=device, dtype=torch.float32)
        delta = torch.einsum("n m k l, i n, m j -> i j k l", mid, up_flat, down.reshape(rank, -1))
    else:
        delta = (up_flat @ down.reshape(rank, -1)).reshape(up.shape[0], *down.shape[1:])
    if delta.shape != target_shape:
        if delta.numel() != torch.Size(target_shape).numel():
            raise ValueError(f"{layer.name}: the LoRA makes a {tuple(delta.shape)} delta for a {tuple(target_shape)} weight")
        delta = delta.reshape(target_shape)
    return delta * layer.factor


@dataclass
class NetworkDeltas:
    """A LoRA's unscaled deltas for one loaded model (the multiplier is applied when patching)."""

    deltas: Deltas
    unmatched: list[str]  # layers or keys of the file that fit nothing in the model, with why

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for params in self.deltas.values() for t in params.values())

    def components(self) -> set[str]:
        return {name for name, params in self.deltas.items() if params}


def network_deltas(network: LoraNetwork, modules: Mapping[str, torch.nn.Module], index: Index) -> NetworkDeltas:
    """The deltas of every layer of `network` that maps to a parameter of `modules`: computed in
    float32 where the parameter lives, then cast to its dtype. What does not map is reported."""
    deltas: Deltas = {}
    unmatched = list(network.unknown)
    for name, layer in network.layers.items():
        target = index.get(name)
        if target is None:
            unmatched.append(name + " (no such layer in this model)")
            continue
        component, param_name = target
        param = modules[component].get_parameter(param_name)
        try:
            delta = layer_delta(layer, param.shape, param.device)
        except ValueError as error:
            unmatched.append(str(error))
            continue
        params = deltas.setdefault(component, {})
        if param_name in params:
            delta = params[param_name].float() + delta
        params[param_name] = delta.to(dtype=param.dtype)
    return NetworkDeltas(deltas, unmatched)
