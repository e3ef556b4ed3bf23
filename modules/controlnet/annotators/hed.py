"""Soft edges by lllyasviel's Apache-2.0 HED network (ControlNetHED.pth): five stages of 3x3
convolutions (2, 2, 3, 3, 3 of them; 64, 128, 256, 512, 512 channels; a 2x2 max-pool before each
stage but the first), each with a 1x1 projection to one side output. The network reads RGB in 0..255
less a learnt per-channel offset (`norm`). The map: every side output resized (bilinear) to the
picture's size, their mean through a sigmoid; softedge_hedsafe first quantises it to 0, 1/2 and 1
(the extension's safe step), which keeps only the clearer edges.

As the extension runs it: the picture at the preprocessor resolution, grown by repeating its edge to
multiples of 64, the map of that cut back to the picture's size, grey in three channels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modules.controlnet.annotators.files import AnnotatorModels
from modules.controlnet.preprocess import grey3, pad64

WEIGHTS = "ControlNetHED.pth"
STAGES = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))  # (in, out, convolutions)


class HedStage(nn.Module):
    """3x3 convolutions with ReLU (`convs`) and the 1x1 side output of their result (`projection`)."""

    def __init__(self, channels_in: int, channels: int, convolutions: int):
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(channels_in if i == 0 else channels, channels, kernel_size=3, padding=1)
                                     for i in range(convolutions)])
        self.projection = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor, pooled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if pooled:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class ControlNetHED(nn.Module):
    """The network of ControlNetHED.pth: `norm` (1, 3, 1, 1) and `block1` ... `block5`."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        for index, (channels_in, channels, convolutions) in enumerate(STAGES, start=1):
            self.add_module(f"block{index}", HedStage(channels_in, channels, convolutions))

    def forward(self, rgb255: torch.Tensor) -> list[torch.Tensor]:
        """The five side outputs (N, 1, H / 2^k, W / 2^k) of RGB pictures (N, 3, H, W) in 0..255."""
        x, sides = rgb255 - self.norm, []
        for index in range(1, len(STAGES) + 1):
            stage = getattr(self, f"block{index}")
            x, side = stage(x, pooled=index > 1)
            sides.append(side)
        return sides


def safe_step(edge: np.ndarray, step: int = 2) -> np.ndarray:
    """`edge` in 0..1 floored to multiples of 1/step after scaling by step + 1 (step 2: 0, 0.5, 1, 1.5)."""
    return (edge.astype(np.float32) * float(step + 1)).astype(np.int32).astype(np.float32) / float(step)


def hed_map(network: ControlNetHED, image: np.ndarray, safe: bool = False) -> np.ndarray:
    """The soft-edge map (H, W) uint8 of an RGB uint8 picture, as large as the picture."""
    import cv2

    h, w = image.shape[:2]
    device = next(network.parameters()).device
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(image)).to(device, torch.float32).permute(2, 0, 1)[None]
        sides = [side[0, 0].float().cpu().numpy() for side in network(x)]
    resized = np.stack([cv2.resize(side, (w, h), interpolation=cv2.INTER_LINEAR) for side in sides], axis=2)
    edge = 1 / (1 + np.exp(-resized.mean(axis=2).astype(np.float64)))
    if safe:
        edge = safe_step(edge)
    return (edge * 255.0).clip(0, 255).astype(np.uint8)


def _softedge(image: np.ndarray, models: AnnotatorModels, safe: bool) -> np.ndarray:
    h, w = image.shape[:2]
    return grey3(hed_map(models.network(WEIGHTS, ControlNetHED), pad64(image), safe)[:h, :w])


def softedge_hed(image: np.ndarray, models: AnnotatorModels) -> np.ndarray:
    return _softedge(image, models, safe=False)


def softedge_hedsafe(image: np.ndarray, models: AnnotatorModels) -> np.ndarray:
    return _softedge(image, models, safe=True)
