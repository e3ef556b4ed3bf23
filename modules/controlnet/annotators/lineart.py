"""Line drawings by the informative-drawings generator (sk_model.pth for lineart_realistic,
sk_model2.pth for lineart_coarse; same network): a 7x7 convolution to 64 channels, two stride-2
3x3 convolutions (128, 256), three residual blocks at 256 channels, two stride-2 transposed 3x3
convolutions back (128, 64), and a 7x7 convolution to one channel through a sigmoid; every
convolution but the last is followed by instance normalisation (no learnt scale) and ReLU, and
the 7x7 and the residual 3x3 ones pad by reflection. It reads RGB in 0..1 and draws dark lines on
white; the map is that inverted, white lines on black, as the ControlNet wants.

As the extension runs it: the picture at the preprocessor resolution, grown by repeating its edge to
multiples of 64, the drawing's 0..1 scaled to 0..255 (truncated), inverted (255 minus it), cut back
to the picture's size, grey in three channels."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modules.controlnet.annotators.files import AnnotatorModels
from modules.controlnet.preprocess import grey3, pad64

REALISTIC = "sk_model.pth"
COARSE = "sk_model2.pth"
RESIDUAL_BLOCKS = 3


def _normed(convolution: nn.Module, channels: int) -> list[nn.Module]:
    return [convolution, nn.InstanceNorm2d(channels), nn.ReLU()]


class ResidualBlock(nn.Module):
    """x plus two reflection-padded 3x3 convolutions with instance norms (ReLU between them)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), *_normed(nn.Conv2d(channels, channels, 3), channels),
                                        nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class Generator(nn.Module):
    """The network of sk_model.pth and sk_model2.pth: `model0` ... `model4` (the layer indices
    inside each are the files' key names, so norms and activations keep their places)."""

    def __init__(self, channels_in: int = 3, channels_out: int = 1, residual_blocks: int = RESIDUAL_BLOCKS):
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), *_normed(nn.Conv2d(channels_in, 64, 7), 64))
        self.model1 = nn.Sequential(*_normed(nn.Conv2d(64, 128, 3, stride=2, padding=1), 128),
                                    *_normed(nn.Conv2d(128, 256, 3, stride=2, padding=1), 256))
        self.model2 = nn.Sequential(*[ResidualBlock(256) for _ in range(residual_blocks)])
        self.model3 = nn.Sequential(*_normed(nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1), 128),
                                    *_normed(nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), 64))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, channels_out, 7), nn.Sigmoid())

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        """The drawing (N, 1, H, W) in 0..1 of RGB pictures (N, 3, H, W) in 0..1 (H, W multiples of 4)."""
        return self.model4(self.model3(self.model2(self.model1(self.model0(rgb01)))))


def line_map(network: Generator, image: np.ndarray) -> np.ndarray:
    """The network's drawing (H, W) uint8 of an RGB uint8 picture, not yet inverted."""
    device = next(network.parameters()).device
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(image)).to(device, torch.float32).permute(2, 0, 1)[None] / 255.0
        line = network(x)[0, 0].float().cpu().numpy()
    return (line * 255.0).clip(0, 255).astype(np.uint8)


def _lineart(image: np.ndarray, models: AnnotatorModels, weights: str) -> np.ndarray:
    h, w = image.shape[:2]
    return grey3(255 - line_map(models.network(weights, Generator), pad64(image))[:h, :w])


def lineart_realistic(image: np.ndarray, models: AnnotatorModels) -> np.ndarray:
    return _lineart(image, models, REALISTIC)


def lineart_coarse(image: np.ndarray, models: AnnotatorModels) -> np.ndarray:
    return _lineart(image, models, COARSE)
