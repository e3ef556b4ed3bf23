"""Tiny ControlNets for the tests: made from a checkpoint's UNet (`ControlNetModel.from_unet`), their
zero convolutions given random weights so they change the picture, written in diffusers layout and
in ControlNet 1.1's LDM layout (`control_model.` keys: the UNet encoder's LDM names, `zero_convs`,
`middle_block_out`, `input_hint_block`), so the real loader and diffusers' key map are exercised."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel

from modules.checkpoints.ldm_keys import UNET_PREFIX, unet_prefix_map, unet_source
from modules.checkpoints.tensor_files import write_safetensors

LDM_PREFIX = "control_model."


def tiny_controlnet(unet, seed: int = 0, scale: float = 0.05) -> ControlNetModel:
    torch.manual_seed(seed)
    network = ControlNetModel.from_unet(unet).eval()
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                parameter.normal_(0, scale)
    return network


def ldm_state(network: ControlNetModel, unet_config: dict) -> dict[str, torch.Tensor]:
    """The network's weights under LDM ControlNet keys."""
    rows = unet_prefix_map(unet_config)
    blocks = len(network.controlnet_cond_embedding.blocks)
    out: dict[str, torch.Tensor] = {}
    for key, value in network.state_dict().items():
        if key.startswith("controlnet_down_blocks."):
            index, rest = key.split(".", 2)[1:]
            ldm = f"zero_convs.{index}.0.{rest}"
        elif key.startswith("controlnet_mid_block."):
            ldm = "middle_block_out.0." + key.split(".", 1)[1]
        elif key.startswith("controlnet_cond_embedding.conv_in."):
            ldm = "input_hint_block.0." + key.rsplit(".", 1)[1]
        elif key.startswith("controlnet_cond_embedding.blocks."):
            index, rest = key.split(".", 3)[2:]
            ldm = f"input_hint_block.{2 * (int(index) + 1)}.{rest}"
        elif key.startswith("controlnet_cond_embedding.conv_out."):
            ldm = f"input_hint_block.{2 * (blocks + 1)}." + key.rsplit(".", 1)[1]
        else:
            ldm = unet_source(key, unet_config, rows).key.removeprefix(UNET_PREFIX)
        out[LDM_PREFIX + ldm] = value
    return out


def write_controlnet(path: Path, network: ControlNetModel, unet_config: dict, layout: str = "diffusers") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = network.state_dict() if layout == "diffusers" else ldm_state(network, unet_config)
    write_safetensors(path, state.items())
    return path
