"""What spandrel imports from torchvision (`transforms.functional`: InterpolationMode, rotate,
normalize), written on plain torch with torchvision's signatures and results (checked against
torchvision 0.28 in tests/unit/test_upscalers.py where it is installed).

spandrel imports these at its own import for two architectures Easel does not use for upscaling
(LaMa inpainting, RestoreFormer). PyPI's Linux torchvision wheels are CUDA builds that fail to import
beside a CPU torch, so on CPU installs `modules/upscalers/spandrel_import.py` lends spandrel this
module while spandrel is imported, and only then.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Sequence

import torch


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> torch.Tensor:
    """(tensor - mean) / std per channel of a (..., C, H, W) float tensor."""
    if not tensor.is_floating_point():
        raise TypeError(f"normalize needs a float tensor, not {tensor.dtype}.")
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if (std_t == 0).any():
        raise ValueError("normalize: std has a zero, which would divide by zero.")
    if not inplace:
        tensor = tensor.clone()
    return tensor.sub_(mean_t).div_(std_t)


def rotate(
    img: torch.Tensor,
    angle: float | torch.Tensor,
    interpolation: InterpolationMode = InterpolationMode.NEAREST,
    expand: bool = False,
    center: Sequence[int] | None = None,
    fill: float | Sequence[float] | None = None,
) -> torch.Tensor:
    """Rotates a (..., C, H, W) tensor by `angle` degrees counter-clockwise about its centre, in
    the same frame (`expand=False`), areas outside the input filled with `fill` (0)."""
    if expand or center is not None:
        raise NotImplementedError("This torchvision shim rotates about the centre without expanding only.")
    if interpolation not in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR):
        raise NotImplementedError(f"This torchvision shim rotates with NEAREST or BILINEAR only, not {interpolation.name}.")
    shape = img.shape
    batch = img.reshape(-1, *shape[-3:])
    theta_deg = angle if isinstance(angle, torch.Tensor) else torch.tensor(float(angle))
    radians = theta_deg.to(torch.float64) * math.pi / 180
    cos, sin = torch.cos(radians).item(), torch.sin(radians).item()
    height, width = shape[-2], shape[-1]
    # The output pixel (x, y) samples the input at the inverse rotation (image y points down, so a
    # counter-clockwise turn on screen is clockwise in these coordinates); aspect ratio kept.
    affine = torch.tensor(
        [[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]], dtype=batch.dtype if batch.is_floating_point() else torch.float32
    )
    grid = torch.nn.functional.affine_grid(affine.expand(batch.shape[0], 2, 3), list(batch.shape), align_corners=False)
    source = batch if batch.is_floating_point() else batch.float()
    fill_value = 0.0 if fill is None else fill
    fills = torch.as_tensor(fill_value, dtype=source.dtype).reshape(-1)
    # an all-ones channel sampled alongside says how much of each output pixel came from inside
    mask = torch.ones_like(source[:, :1])
    sampled = torch.nn.functional.grid_sample(
        torch.cat([source, mask], dim=1), grid.to(source.dtype), mode=interpolation.value, padding_mode="zeros", align_corners=False
    )
    out, inside = sampled[:, :-1], sampled[:, -1:].expand(-1, sampled.shape[1] - 1, -1, -1)
    fill_image = fills.view(1, -1, 1, 1).to(out.dtype).expand_as(out)
    if interpolation is InterpolationMode.NEAREST:  # torchvision's rule: outside where the mask is under 0.5
        out = torch.where(inside < 0.5, fill_image, out)
    else:
        out = out * inside + (1 - inside) * fill_image
    return out.to(img.dtype).reshape(shape)
