"""Identify a checkpoint's model family from its keys, then its exact architecture from tensor shapes.

Only the safetensors header (names and shapes) is needed, so identification reads no weights. The
shipped config folder of the family (family_configs/) supplies what shapes cannot tell (scheduler,
activation functions, SDXL's time-embedding width); the shapes decide every size, so checkpoints of
non-standard size (our tiny test models, the demo model, BK-SDM-style distilled models) load with no
config beside them. A `<stem>.yaml` beside the file and hints written into our own files refine the
few values that shapes cannot carry: attention heads, norm groups, the VAE scaling factor, prediction.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from modules.checkpoints.ldm_keys import TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX
from modules.errors import ModelLoadError

FAMILY_CONFIGS = Path(__file__).with_name("family_configs")
HINTS_METADATA_KEY = "easel.hints"

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Family:
    """One row of the family table: how a family's files are laid out, how its models are run, and
    what it defaults to. Code asks the row (`family.size_conditioning`), never the family's name, so
    adding a family is adding a row (and its loader)."""

    name: str  # folder in family_configs/
    label: str  # what a user reads
    text_layout: str  # key of ldm_keys.TEXT_ENCODER_PREFIXES
    heads_per_block: int | None  # fixed attention heads (SD1), or None: channels / 64
    default_clip_skip: int = 1
    latent_space: str = "sd"  # whose VAE latents: "sd" (SD1, SD2) or "sdxl" (preview decoders and factors, Align Your Steps table)
    text_plan: str = "clip"  # "clip": one CLIP-style encoder (clip skip; SD2's OpenCLIP told by its text source); "sdxl": the penultimate layer of every encoder, no final norm
    size_conditioning: bool = False  # SDXL's added time ids (original size, crop, target size)
    refiner: bool = False  # SDXL refiner: aesthetic scores in the time ids instead of a target size
    inpainting: bool = False  # a 9-channel UNet that takes the mask and the masked picture
    latent_channels: int = 4
    vae_scale: int = 8  # pixels per latent cell along each side

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(channels, height, width) of the latent of a `width` x `height` picture."""
        return (self.latent_channels, height // self.vae_scale, width // self.vae_scale)


_SDXL = dict(latent_space="sdxl", text_plan="sdxl", size_conditioning=True)
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd1", "SD1.x", "sd1", heads_per_block=8),
        Family("sd1-inpaint", "SD1.x inpainting", "sd1", heads_per_block=8, inpainting=True),
        Family("sd2", "SD2.x", "sd2", heads_per_block=None),
        Family("sd2-v", "SD2.x v-prediction", "sd2", heads_per_block=None),
        Family("sdxl-base", "SDXL", "sdxl", heads_per_block=None, **_SDXL),  # type: ignore[arg-type]
        Family("sdxl-refiner", "SDXL refiner", "sdxl_refiner", heads_per_block=None, refiner=True, **_SDXL),  # type: ignore[arg-type]
    )
}


@dataclass(frozen=True)
class ComponentSpec:
    """A module to build: its class name and the full config it is built from."""

    class_name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a checkpoint's modules and to read its tensors."""

    family: Family
    components: dict[str, ComponentSpec]
    prediction_type: str  # "epsilon" | "v_prediction" | "auto" (SD2: decided by a test forward)
    scheduler_config: dict[str, Any]
    variant: str = ""  # "", "inpaint", "instruct-pix2pix"
    text_sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # component -> (layout, LDM prefix)
    # Top text-encoder layers the family never uses: SD2 single files keep all 24 OpenCLIP layers
    # (exact round trip) but SD2 conditions on the penultimate one; diffusers folders drop it.
    text_layers_unused: int = 0

    def signature(self) -> str:
        """Two specs with the same signature have interchangeable weights (same modules, same shapes)."""
        return json.dumps(
            {name: [c.class_name, c.config] for name, c in sorted(self.components.items())}, sort_keys=True, default=str
        )


@lru_cache(maxsize=64)
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def family_config(family: str, component: str) -> dict[str, Any]:
    """A copy of a component's config from the shipped folder of the family."""
    folder = FAMILY_CONFIGS / family / component
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return copy.deepcopy(_read_json(folder / name))


def detect_family(shapes: Shapes) -> tuple[Family, str]:
    """The family and variant ("", "inpaint", "instruct-pix2pix") of an LDM single-file checkpoint."""
    keys = shapes.keys()
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None:
        if any(k.startswith(("encoder.", VAE_PREFIX + "encoder.")) for k in keys) and not any(
            k.startswith("model.") for k in keys
        ):
            raise ModelLoadError("This file holds only a VAE, not a full checkpoint: put it in models/VAE.")
        if any("lora_" in k for k in keys):
            raise ModelLoadError("This file is a LoRA, not a checkpoint: put it in models/Lora.")
        raise ModelLoadError("This is not a Stable Diffusion checkpoint: it has no UNet weights (model.diffusion_model.*).")
    variant = {9: "inpaint", 8: "instruct-pix2pix"}.get(conv_in[1], "")
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return FAMILIES["sdxl-base"], variant
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        return FAMILIES["sdxl-refiner"], variant
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return FAMILIES["sd2"], variant
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return FAMILIES["sd1-inpaint" if variant == "inpaint" else "sd1"], variant
    raise ModelLoadError("This checkpoint has a UNet but no text encoder weights this version of Easel recognises.")


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes for m in [regex.match(k)] if m})


@dataclass
class _Level:
    channels: int
    resnets: int = 0
    attention_depth: int = 0  # transformer blocks per attention, 0 = no attention
    linear_projection: bool = False
    cross_attention_dim: int | None = None


def _attention_info(shapes: Shapes, prefix: str) -> tuple[int, bool, int | None]:
    depth = len(_indices(shapes, re.escape(prefix) + r"transformer_blocks\.(\d+)\."))
    proj = shapes.get(prefix + "proj_in.weight")
    context = shapes.get(prefix + "transformer_blocks.0.attn2.to_k.weight")
    return depth, proj is not None and len(proj) == 2, context[1] if context else None


def _heads(channels: int, level: int, family: Family, hints: Mapping[str, Any], yaml_unet: Mapping[str, Any]) -> int:
    head_channels = int(yaml_unet.get("num_head_channels", -1) or -1)
    if head_channels > 0:
        return max(1, channels // head_channels)
    if int(yaml_unet.get("num_heads", -1) or -1) > 0:
        return int(yaml_unet["num_heads"])
    if "unet_head_channels" in hints:
        return max(1, channels // int(hints["unet_head_channels"]))
    if "unet_heads" in hints:
        heads = hints["unet_heads"]
        return int(heads[level] if isinstance(heads, list) else heads)
    return family.heads_per_block or max(1, channels // 64)


def infer_unet_config(shapes: Shapes, family: Family, hints: Mapping[str, Any], yaml_unet: Mapping[str, Any]) -> dict[str, Any]:
    """A UNet2DConditionModel config whose parameter shapes equal the checkpoint's."""
    p = UNET_PREFIX
    config = family_config(family.name, "unet")
    levels: list[_Level] = []
    current: _Level | None = None
    for index in _indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\.")[1:]:
        block = f"{p}input_blocks.{index}."
        if block + "0.op.weight" in shapes:
            if current is None:
                raise ModelLoadError(f"Unexpected UNet layout: downsampler at input block {index} opens a level.")
            levels.append(current)
            current = None
            continue
        conv = shapes.get(block + "0.in_layers.2.weight")
        if conv is None:
            raise ModelLoadError(f"Unexpected UNet layout: input block {index} is neither a resnet nor a downsampler.")
        if current is None:
            current = _Level(channels=conv[0])
        current.resnets += 1
        depth, linear, context = _attention_info(shapes, block + "1.")
        if depth:
            current.attention_depth, current.linear_projection = depth, linear
            current.cross_attention_dim = current.cross_attention_dim or context
    if current is None:
        raise ModelLoadError("Unexpected UNet layout: the last level ends in a downsampler.")
    levels.append(current)

    expected_outputs = sum(level.resnets + 1 for level in levels)
    outputs = _indices(shapes, re.escape(p) + r"output_blocks\.(\d+)\.")
    if len(outputs) != expected_outputs:
        raise ModelLoadError(
            f"Unsupported UNet layout: {len(outputs)} output blocks where {expected_outputs} were expected "
            "from the input blocks."
        )
    mid_depth, mid_linear, mid_context = _attention_info(shapes, p + "middle_block.1.")
    has_mid = p + "middle_block.0.in_layers.2.weight" in shapes
    attention_levels = [lv for lv in levels if lv.attention_depth]
    if not attention_levels and not mid_depth:
        raise ModelLoadError("Unsupported UNet: it has no cross-attention layers.")
    reference = attention_levels[0] if attention_levels else None

    config["in_channels"] = shapes[p + "input_blocks.0.0.weight"][1]
    config["out_channels"] = shapes[p + "out.2.weight"][0]
    config["block_out_channels"] = [lv.channels for lv in levels]
    resnets = [lv.resnets for lv in levels]
    config["layers_per_block"] = resnets[0] if len(set(resnets)) == 1 else resnets
    config["down_block_types"] = ["CrossAttnDownBlock2D" if lv.attention_depth else "DownBlock2D" for lv in levels]
    config["up_block_types"] = ["CrossAttnUpBlock2D" if lv.attention_depth else "UpBlock2D" for lv in reversed(levels)]
    depths = [lv.attention_depth or 1 for lv in levels]
    if not levels[-1].attention_depth and mid_depth:
        depths[-1] = mid_depth
    elif mid_depth and mid_depth != depths[-1]:
        raise ModelLoadError("Unsupported UNet: the middle block's transformer depth differs from the last level's.")
    config["transformer_layers_per_block"] = depths[0] if len(set(depths)) == 1 else depths
    config.pop("reverse_transformer_layers_per_block", None)
    config["mid_block_type"] = "UNetMidBlock2DCrossAttn" if has_mid else None
    config["cross_attention_dim"] = (reference.cross_attention_dim if reference else mid_context) or config["cross_attention_dim"]
    config["use_linear_projection"] = reference.linear_projection if reference else mid_linear
    heads = [_heads(lv.channels, i, family, hints, yaml_unet) for i, lv in enumerate(levels)]
    # SD1 configs give one head count; SD2/SDXL configs list one per level (channels / 64).
    config["attention_head_dim"] = heads[0] if family.heads_per_block and len(set(heads)) == 1 else heads
    config["num_attention_heads"] = None
    time_dim = shapes[p + "time_embed.0.weight"][0]
    config["time_embedding_dim"] = None if time_dim == 4 * levels[0].channels else time_dim
    if p + "label_emb.0.0.weight" in shapes:
        config["projection_class_embeddings_input_dim"] = shapes[p + "label_emb.0.0.weight"][1]
    if "addition_time_embed_dim" in hints and config.get("addition_embed_type") == "text_time":
        config["addition_time_embed_dim"] = int(hints["addition_time_embed_dim"])
    if "norm_num_groups" in hints:
        config["norm_num_groups"] = int(hints["norm_num_groups"])
    if "sample_size" in hints:
        config["sample_size"] = int(hints["sample_size"])
    for channels in config["block_out_channels"]:
        if channels % config.get("norm_num_groups", 32):
            raise ModelLoadError(
                f"UNet width {channels} is not a multiple of {config.get('norm_num_groups', 32)} norm groups."
            )
    return config


def infer_vae_config(shapes: Shapes, prefix: str, base: dict[str, Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """An AutoencoderKL config whose parameter shapes equal the file's (LDM names under `prefix`)."""
    config = copy.deepcopy(base)
    levels = _indices(shapes, re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    if not levels:
        raise ModelLoadError("The VAE weights are missing or not in the LDM layout (encoder.down.*).")
    config["block_out_channels"] = [shapes[f"{prefix}encoder.down.{i}.block.0.conv1.weight"][0] for i in levels]
    config["layers_per_block"] = len(_indices(shapes, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\."))
    config["down_block_types"] = ["DownEncoderBlock2D"] * len(levels)
    config["up_block_types"] = ["UpDecoderBlock2D"] * len(levels)
    config["in_channels"] = shapes[prefix + "encoder.conv_in.weight"][1]
    config["out_channels"] = shapes[prefix + "decoder.conv_out.weight"][0]
    config["latent_channels"] = shapes[prefix + "encoder.conv_out.weight"][0] // 2
    config["use_quant_conv"] = prefix + "quant_conv.weight" in shapes
    config["use_post_quant_conv"] = prefix + "post_quant_conv.weight" in shapes
    config["mid_block_add_attention"] = prefix + "encoder.mid.attn_1.q.weight" in shapes
    for key in ("norm_num_groups", "sample_size"):
        if f"vae_{key}" in hints:
            config[key] = int(hints[f"vae_{key}"])
    if "vae_scaling_factor" in hints:
        config["scaling_factor"] = float(hints["vae_scaling_factor"])
    return config


def infer_text_config(shapes: Shapes, layout: str, prefix: str, base: dict[str, Any], hints: Mapping[str, Any], hint_prefix: str) -> dict[str, Any]:
    """A CLIPTextConfig dict whose parameter shapes equal the file's."""
    config = copy.deepcopy(base)
    if layout == "hf_clip":
        token = shapes.get(prefix + "embeddings.token_embedding.weight")
        position = shapes.get(prefix + "embeddings.position_embedding.weight")
        layers = _indices(shapes, re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
        fc1 = shapes.get(prefix + "encoder.layers.0.mlp.fc1.weight")
    else:
        token = shapes.get(prefix + "token_embedding.weight")
        position = shapes.get(prefix + "positional_embedding")
        layers = _indices(shapes, re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
        fc1 = shapes.get(prefix + "transformer.resblocks.0.mlp.c_fc.weight")
        projection = shapes.get(prefix + "text_projection")
        if projection is not None and "projection_dim" in config:
            config["projection_dim"] = projection[1]
    if token is None or position is None or not layers or fc1 is None:
        raise ModelLoadError(f"The text encoder weights ({prefix}*) are missing or incomplete.")
    config["vocab_size"], config["hidden_size"] = token
    config["max_position_embeddings"] = position[0]
    config["num_hidden_layers"] = len(layers)
    config["intermediate_size"] = fc1[0]
    heads = hints.get(f"{hint_prefix}heads")
    config["num_attention_heads"] = int(heads) if heads else max(1, config["hidden_size"] // 64)
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ModelLoadError(f"Text encoder width {config['hidden_size']} does not split into {config['num_attention_heads']} heads.")
    return config


_TEXT_CLASSES = {"text_encoder": "CLIPTextModel", "text_encoder_2": "CLIPTextModelWithProjection"}


def spec_from_ldm(
    shapes: Shapes,
    hints: Mapping[str, Any] | None = None,
    yaml_config: Mapping[str, Any] | None = None,
    prediction_setting: str = "auto",
) -> ModelSpec:
    """The ModelSpec of an LDM single-file checkpoint, from its shapes (and optional yaml/hints)."""
    hints = dict(hints or {})
    yaml_params = dict(((yaml_config or {}).get("model") or {}).get("params") or {})
    yaml_unet = dict((yaml_params.get("unet_config") or {}).get("params") or {})
    family, variant = detect_family(shapes)
    if family.name == "sd2" and (
        yaml_params.get("parameterization") == "v" or hints.get("prediction_type") == "v_prediction"
        or prediction_setting == "v_prediction"
    ):
        family = FAMILIES["sd2-v"]
    text_sources: dict[str, tuple[str, str]] = {}
    components: dict[str, ComponentSpec] = {
        "unet": ComponentSpec("UNet2DConditionModel", infer_unet_config(shapes, family, hints, yaml_unet)),
    }
    vae_base = family_config(family.name, "vae")
    if "scale_factor" in yaml_params:
        vae_base["scaling_factor"] = float(yaml_params["scale_factor"])
    components["vae"] = ComponentSpec("AutoencoderKL", infer_vae_config(shapes, VAE_PREFIX, vae_base, hints))
    for name, (layout, prefix) in TEXT_ENCODER_PREFIXES[family.text_layout].items():
        if layout == "hf_clip" and prefix + "embeddings.token_embedding.weight" not in shapes:
            prefix = prefix.removesuffix("text_model.")  # very old SD1 files lack "text_model."
        base = family_config(family.name, name)
        text_sources[name] = (layout, prefix)
        hint_prefix = "text_" if name == "text_encoder" else "text2_"
        components[name] = ComponentSpec(_TEXT_CLASSES[name], infer_text_config(shapes, layout, prefix, base, hints, hint_prefix))
    scheduler = family_config(family.name, "scheduler")
    if family.name == "sd2":
        prediction = {"epsilon": "epsilon", "v_prediction": "v_prediction"}.get(
            str(hints.get("prediction_type", prediction_setting)), "auto"
        )
        if yaml_params and "parameterization" not in yaml_params:
            prediction = "epsilon"
    else:
        prediction = scheduler.get("prediction_type", "epsilon")
    return ModelSpec(
        family=family, components=components, prediction_type=prediction, scheduler_config=scheduler, variant=variant,
        text_sources=text_sources,
        text_layers_unused=1 if family.text_layout == "sd2" else 0,
    )

