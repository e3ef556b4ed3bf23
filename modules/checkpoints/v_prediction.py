"""Telling an SD2 checkpoint without a .yaml apart: v-prediction or epsilon, by A1111's test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel


def detect_v_prediction(unet: "UNet2DConditionModel") -> bool:
    """A1111's test for SD2 files: a v-model's output at t=999 on a constant input is strongly negative."""
    config = unet.config  # diffusers' FrozenDict: its keys, declared as a plain dict
    param = next(unet.parameters())
    x = torch.full((1, config["in_channels"], 8, 8), 0.5, device=param.device, dtype=param.dtype)
    context = torch.full((1, 2, config["cross_attention_dim"]), 0.5, device=param.device, dtype=param.dtype)
    with torch.no_grad():
        out = unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
    return bool((out.float() - x[:, : out.shape[1]].float()).mean().item() < -1)
