"""Names of tensors in the A1111/LDM single-file layout, computed from diffusers names.

One direction of naming is enough for both reading and writing: for every parameter a diffusers
module expects, `ldm_source` says which LDM tensor holds it and how to transform it. The reader walks
the module's own keys and fetches their sources; the writer walks the same keys and stores each tensor
under its source name (re-fusing split q/k/v). So reading what we wrote gives back the same tensors.

Prefixes of the LDM layout (REFERENCE.md §5): `model.diffusion_model.` (UNet), `first_stage_model.`
(VAE), `cond_stage_model.transformer.text_model.` (SD1 CLIP-L), `cond_stage_model.model.` (SD2
OpenCLIP), `conditioner.embedders.N.` (SDXL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

# Which text-encoder layout a component uses in the LDM file, and under which prefix.
TEXT_ENCODER_PREFIXES: dict[str, dict[str, tuple[str, str]]] = {
    # family kind -> component -> (layout, prefix)
    "sd1": {"text_encoder": ("hf_clip", "cond_stage_model.transformer.text_model.")},
    "sd2": {"text_encoder": ("open_clip", "cond_stage_model.model.")},
    "sdxl": {
        "text_encoder": ("hf_clip", "conditioner.embedders.0.transformer.text_model."),
        "text_encoder_2": ("open_clip", "conditioner.embedders.1.model."),
    },
    "sdxl_refiner": {"text_encoder_2": ("open_clip", "conditioner.embedders.0.model.")},
}

Transform = Literal["none", "reshape", "transpose", "chunk"]


@dataclass(frozen=True)
class Source:
    """Where a diffusers tensor lives in the LDM file."""

    key: str
    transform: Transform = "none"
    chunk_index: int = 0  # for "chunk": which third of a fused q/k/v tensor
    chunks: int = 1


_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _layers(value: Any, count: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * count


def unet_prefix_map(config: dict[str, Any]) -> list[tuple[str, str, dict[str, str] | None]]:
    """(diffusers prefix, LDM prefix, module renames) for every block of a UNet2DConditionModel."""
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    n = len(down_types)
    layers = _layers(config["layers_per_block"], n)
    p = UNET_PREFIX
    rows: list[tuple[str, str, dict[str, str] | None]] = [
        ("conv_in.", p + "input_blocks.0.0.", None),
        ("time_embedding.linear_1.", p + "time_embed.0.", None),
        ("time_embedding.linear_2.", p + "time_embed.2.", None),
        ("add_embedding.linear_1.", p + "label_emb.0.0.", None),
        ("add_embedding.linear_2.", p + "label_emb.0.2.", None),
        ("conv_norm_out.", p + "out.0.", None),
        ("conv_out.", p + "out.2.", None),
        ("mid_block.resnets.0.", p + "middle_block.0.", _UNET_RESNET),
        ("mid_block.attentions.0.", p + "middle_block.1.", None),
        ("mid_block.resnets.1.", p + "middle_block.2.", _UNET_RESNET),
    ]
    index = 0
    for i in range(n):
        for j in range(layers[i]):
            index += 1
            rows.append((f"down_blocks.{i}.resnets.{j}.", f"{p}input_blocks.{index}.0.", _UNET_RESNET))
            rows.append((f"down_blocks.{i}.attentions.{j}.", f"{p}input_blocks.{index}.1.", None))
        if i < n - 1:
            index += 1
            rows.append((f"down_blocks.{i}.downsamplers.0.conv.", f"{p}input_blocks.{index}.0.op.", None))
    up_layers = list(reversed(layers))
    index = 0
    for i in range(len(up_types)):
        has_attention = "CrossAttn" in up_types[i]
        count = up_layers[i] + 1
        for j in range(count):
            rows.append((f"up_blocks.{i}.resnets.{j}.", f"{p}output_blocks.{index}.0.", _UNET_RESNET))
            rows.append((f"up_blocks.{i}.attentions.{j}.", f"{p}output_blocks.{index}.1.", None))
            if j == count - 1 and i < len(up_types) - 1:
                slot = 2 if has_attention else 1
                rows.append((f"up_blocks.{i}.upsamplers.0.conv.", f"{p}output_blocks.{index}.{slot}.conv.", None))
            index += 1
    return rows


def vae_prefix_map(config: dict[str, Any], prefix: str = VAE_PREFIX) -> list[tuple[str, str, dict[str, str] | None]]:
    """(diffusers prefix, LDM prefix, module renames) for every block of an AutoencoderKL."""
    n = len(config["block_out_channels"])
    layers = int(config["layers_per_block"])
    rows: list[tuple[str, str, dict[str, str] | None]] = [
        ("quant_conv.", prefix + "quant_conv.", None),
        ("post_quant_conv.", prefix + "post_quant_conv.", None),
    ]
    for part in ("encoder", "decoder"):
        rows += [
            (f"{part}.conv_in.", f"{prefix}{part}.conv_in.", None),
            (f"{part}.conv_out.", f"{prefix}{part}.conv_out.", None),
            (f"{part}.conv_norm_out.", f"{prefix}{part}.norm_out.", None),
            (f"{part}.mid_block.resnets.0.", f"{prefix}{part}.mid.block_1.", _VAE_RESNET),
            (f"{part}.mid_block.resnets.1.", f"{prefix}{part}.mid.block_2.", _VAE_RESNET),
            (f"{part}.mid_block.attentions.0.", f"{prefix}{part}.mid.attn_1.", _VAE_ATTENTION),
        ]
    for i in range(n):
        for j in range(layers):
            rows.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"{prefix}encoder.down.{i}.block.{j}.", _VAE_RESNET))
        rows.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"{prefix}encoder.down.{i}.downsample.conv.", None))
        ldm_i = n - 1 - i
        for j in range(layers + 1):
            rows.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"{prefix}decoder.up.{ldm_i}.block.{j}.", _VAE_RESNET))
        rows.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"{prefix}decoder.up.{ldm_i}.upsample.conv.", None))
    return rows


def _apply_prefix_map(key: str, rows: list[tuple[str, str, dict[str, str] | None]]) -> str | None:
    best: tuple[str, str, dict[str, str] | None] | None = None
    for row in rows:
        if key.startswith(row[0]) and (best is None or len(row[0]) > len(best[0])):
            best = row
    if best is None:
        return None
    diff_prefix, ldm_prefix, renames = best
    rest = key[len(diff_prefix):]
    if renames:
        for old, new in renames.items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
                break
    return ldm_prefix + rest


def unet_source(key: str, config: dict[str, Any], rows: list | None = None) -> Source:
    """LDM source of a UNet2DConditionModel parameter."""
    ldm = _apply_prefix_map(key, rows if rows is not None else unet_prefix_map(config))
    if ldm is None:
        raise KeyError(f"no LDM name for UNet parameter {key}")
    return Source(ldm)


def vae_source(key: str, config: dict[str, Any], rows: list | None = None, prefix: str = VAE_PREFIX) -> Source:
    """LDM source of an AutoencoderKL parameter; mid-block attention weights are 1x1 convs in LDM."""
    ldm = _apply_prefix_map(key, rows if rows is not None else vae_prefix_map(config, prefix))
    if ldm is None:
        raise KeyError(f"no LDM name for VAE parameter {key}")
    attention = ".mid.attn_1." in ldm and ldm.endswith(".weight") and not ldm.endswith("norm.weight")
    return Source(ldm, "reshape" if attention else "none")


_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def strip_text_model(key: str) -> str:
    """transformers names CLIPTextModel weights without `text_model.`, the projection model with it."""
    return key[len("text_model."):] if key.startswith("text_model.") else key


def hf_clip_source(key: str, prefix: str) -> Source:
    """LDM source of a CLIPTextModel parameter stored in the transformers layout (SD1, SDXL CLIP-L)."""
    return Source(prefix + strip_text_model(key))


def open_clip_source(key: str, prefix: str) -> Source:
    """LDM source of a CLIP text parameter stored in the OpenCLIP layout (SD2, SDXL bigG)."""
    name = strip_text_model(key)
    if name == "embeddings.token_embedding.weight":
        return Source(prefix + "token_embedding.weight")
    if name == "embeddings.position_embedding.weight":
        return Source(prefix + "positional_embedding")
    if name.startswith("final_layer_norm."):
        return Source(prefix + "ln_final." + name.split(".", 1)[1])
    if name == "text_projection.weight":
        return Source(prefix + "text_projection", "transpose")
    match = _LAYER.match(name)
    if not match:
        raise KeyError(f"no OpenCLIP name for text-encoder parameter {key}")
    layer, rest = match.groups()
    base = f"{prefix}transformer.resblocks.{layer}."
    for qkv_index, proj in enumerate(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
        if rest.startswith(proj):
            param = rest[len(proj):]
            return Source(f"{base}attn.in_proj_{param}", "chunk", qkv_index, 3)
    for old, new in _OPEN_CLIP_LAYER.items():
        if rest.startswith(old + "."):
            return Source(base + new + rest[len(old):])
    raise KeyError(f"no OpenCLIP name for text-encoder parameter {key}")


def text_source(key: str, layout: str, prefix: str) -> Source:
    """LDM source of a text-encoder parameter in the given layout ("hf_clip" or "open_clip")."""
    return hf_clip_source(key, prefix) if layout == "hf_clip" else open_clip_source(key, prefix)
