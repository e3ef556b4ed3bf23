"""Reading upscaler model files without running code, and building the network with spandrel.

`.safetensors` is read as tensors. `.pth`/`.ckpt`/`.pt` are read with torch's restricted unpickler
(`weights_only=True`: tensors and plain containers, nothing else); a pickle that would build any
other object is refused, and so is a TorchScript `.pt` (it carries code; spandrel would run it with
`torch.jit.load`). The weights are unwrapped (`params_ema`, `params`, `state_dict`, `module.`) and
the architecture and its hyper-parameters detected from them by spandrel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modules.checkpoints.tensor_files import read_weights_file
from modules.errors import ModelLoadError
from modules.upscalers.spandrel_import import import_spandrel


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an upscaler file, unwrapped, on the CPU."""
    path = Path(path)
    data = read_weights_file(path, "upscaler")
    if not isinstance(data, dict):
        raise ModelLoadError(f"The upscaler {path.name} holds no weights (a {type(data).__name__}, not a dictionary of tensors).")
    spandrel = import_spandrel()
    weights = spandrel.canonicalize_state_dict(data)
    tensors_only = {key: value for key, value in weights.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors_only:
        raise ModelLoadError(f"The upscaler {path.name} holds no tensors.")
    return tensors_only


def load_model(path: Path) -> Any:
    """The spandrel `ImageModelDescriptor` of an upscaling or restoration model, in eval mode on the CPU."""
    spandrel = import_spandrel()

    weights = read_weights(path)
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(weights)
    except spandrel.UnsupportedModelError as error:
        raise ModelLoadError(
            f"{Path(path).name} is not an upscaler Easel can read: its weights match none of the architectures it knows "
            "(ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, SCUNet, Compact and others)."
        ) from error
    except (KeyError, RuntimeError, ValueError, AssertionError, TypeError, IndexError) as error:
        raise ModelLoadError(f"{Path(path).name} looks like an upscaler but its weights do not fit together ({error}).") from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
        purpose = getattr(descriptor, "purpose", "unknown")
        where = " Put face restoration models in models/GFPGAN." if purpose == "FaceSR" else ""
        raise ModelLoadError(f"{Path(path).name} is a {descriptor.architecture.name} model for {purpose}, not an upscaler.{where}")
    return descriptor.eval()
