"""Loading ControlNet files for the checkpoint in use, without running pickled code and without
the Hub: the network is built from the loaded UNet's own configuration (a ControlNet copies the
encoder half of the UNet it was trained for), the hint encoder's widths are read from the file, and
LDM-layout weights (`control_model.` prefix or bare, as ControlNet 1.1's files) are converted by
diffusers' own key map; diffusers-layout files load as they are. The last loaded ones stay in RAM."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from modules.checkpoints.tensor_files import read_weights_file
from modules.errors import ModelLoadError

LDM_PREFIX = "control_model."
KEPT = 2  # the extension's control_net_model_cache_size


def read_state(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    data = read_weights_file(path, "ControlNet")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"The ControlNet {path.name} holds no weights.")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _hint_channels(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The hint encoder's widths (16, 32, 96, 256 for SD ControlNets), from whichever layout."""
    if "controlnet_cond_embedding.conv_in.weight" in state:
        widths = [state["controlnet_cond_embedding.conv_in.weight"].shape[0]]
        index = 1
        while f"controlnet_cond_embedding.blocks.{index}.weight" in state:
            widths.append(state[f"controlnet_cond_embedding.blocks.{index}.weight"].shape[0])
            index += 2
        return tuple(widths)
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("input_hint_block.") and k.endswith(".weight"))
    widths = [state[f"input_hint_block.{i}.weight"].shape[0] for i in convs[:-1]]  # the last conv is the output
    # blocks come in pairs (same width, then stride 2 to the next): keep each width once, in order
    return tuple(dict.fromkeys(widths))


def to_diffusers(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Diffusers keys for an LDM-layout ControlNet (prefixed or bare); diffusers files pass through."""
    if "controlnet_cond_embedding.conv_in.weight" in state:
        return state
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    if any(k.startswith(LDM_PREFIX) for k in state):
        state = {k[len(LDM_PREFIX):]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    if "time_embed.0.weight" not in state or "input_hint_block.0.weight" not in state:
        raise ModelLoadError("This file is not a ControlNet: it has no hint encoder (input_hint_block) and no time embedding.")
    return convert_controlnet_checkpoint(state, config)


def build_for(unet: Any, state: dict[str, torch.Tensor], name: str) -> Any:
    """A diffusers ControlNetModel shaped like `unet`'s encoder, with the file's weights."""
    from diffusers import ControlNetModel

    plain = {k[len(LDM_PREFIX):] if k.startswith(LDM_PREFIX) else k: v for k, v in state.items()}
    hint = _hint_channels(plain)
    if not hint:
        raise ModelLoadError(f"{name} is not a ControlNet Easel can read (no hint encoder found).")
    context = next((v.shape[1] for k, v in plain.items() if k.endswith("attn2.to_k.weight")), None)
    if context is not None and context != unet.config.cross_attention_dim:
        raise ModelLoadError(
            f"{name} was made for a model whose text encoder width is {context}; the checkpoint in use has {unet.config.cross_attention_dim} "
            "(an SD1 ControlNet needs an SD1 checkpoint, an SDXL one an SDXL checkpoint)."
        )
    network = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=hint, load_weights_from_unet=False)
    weights = to_diffusers(state, dict(network.config))
    missing, unexpected = network.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{name} does not fit the checkpoint in use: {len(missing)} weights missing, {len(unexpected)} unexpected "
                             f"(first: {(missing or unexpected)[0]}).")
    return network.eval()


class ControlNetModels:
    """Loaded ControlNets, keyed by file and the UNet they were shaped for (LRU, KEPT of them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple[Path, float, int], Any] = OrderedDict()

    def get(self, path: Path, unet: Any) -> Any:
        param = next(unet.parameters())
        key = (path, path.stat().st_mtime, id(unet))
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
                return self._held[key]
        try:
            network = build_for(unet, read_state(path), path.name)
        except (RuntimeError, KeyError, IndexError) as error:
            raise ModelLoadError(f"{path.name} does not fit the checkpoint in use ({error}).") from error
        network = network.to(param.device, param.dtype)
        with self._lock:
            self._held[key] = network
            while len(self._held) > KEPT:
                self._held.popitem(last=False)
        return network
