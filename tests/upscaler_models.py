"""Tiny random upscaler models of each architecture, written as real files in the key layouts users
have (what A1111's and Real-ESRGAN's downloads look like), for the upscaler tests.

Every network comes from spandrel's own architecture classes with small hyper-parameters; the
loader under test must find the architecture and hyper-parameters again from the weights alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch

from modules.checkpoints.tensor_files import write_safetensors
from modules.upscalers.spandrel_import import import_spandrel


def _classes() -> dict[str, Any]:
    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.SwinIR import SwinIR

    return {"ESRGAN": ESRGAN, "Compact": Compact, "SwinIR": SwinIR, "DAT": DAT, "HAT": HAT}


def esrgan(scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Old ESRGAN keys (`model.0.weight`, `model.1.sub.0.RDB1...`: 4x-UltraSharp, Remacri...)."""
    torch.manual_seed(seed)
    return _classes()["ESRGAN"](in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).state_dict()


def to_rrdbnet_keys(old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights under Real-ESRGAN's RRDBNet keys (`conv_first`, `body.0.rdb1.conv1`,
    `conv_body`, `conv_up1`, `conv_hr`, `conv_last`: RealESRGAN_x4plus.pth and its kind)."""
    blocks = {int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))}
    trunk = max(blocks) + 1
    layers = sorted({int(k.split(".")[1]) for k in old if re.match(r"model\.\d+\.(weight|bias)$", k)})
    ups = [n for n in layers if n not in (0, layers[-1], layers[-2])]  # model.3, model.6...: the upsampling convs
    new: dict[str, torch.Tensor] = {}
    for key, value in old.items():
        if m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            new[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(rf"model\.1\.sub\.{trunk}\.(weight|bias)$", key):
            new[f"conv_body.{m.group(1)}"] = value
        elif m := re.match(r"model\.(\d+)\.(weight|bias)$", key):
            layer, kind = int(m.group(1)), m.group(2)
            if layer == 0:
                new[f"conv_first.{kind}"] = value
            elif layer in ups:
                new[f"conv_up{ups.index(layer) + 1}.{kind}"] = value
            elif layer == layers[-2]:
                new[f"conv_hr.{kind}"] = value
            else:
                new[f"conv_last.{kind}"] = value
    assert len(new) == len(old), "every weight has a new key"
    return new


def compact(scale: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Real-ESRGAN's SRVGGNetCompact (realesr-general-x4v3, realesr-animevideov3)."""
    torch.manual_seed(seed)
    return _classes()["Compact"](num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale).state_dict()


def swinir(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return _classes()["SwinIR"](embed_dim=12, depths=[1], num_heads=[1], window_size=8, upscale=2, img_size=32,
                                upsampler="pixelshuffledirect").state_dict()


def dat(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return _classes()["DAT"](img_size=16, embed_dim=24, split_size=[2, 4], depth=[2], num_heads=[2], expansion_factor=2.0,
                             upscale=2, upsampler="pixelshuffledirect").state_dict()


def hat(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return _classes()["HAT"](img_size=16, embed_dim=16, depths=[2], num_heads=[2], window_size=8, upscale=2, num_feat=16,
                             squeeze_factor=4, compress_ratio=2).state_dict()


def write(path: Path, weights: dict[str, torch.Tensor], wrap: str | None = None) -> Path:
    """`weights` as `.safetensors` (never wrapped) or as a torch.save pickle (`.pth`/`.pt`), under
    `wrap` ("params_ema", "params") when given, as BasicSR's training writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        write_safetensors(path, weights.items())
    else:
        torch.save({wrap: weights} if wrap else weights, path)
    return path


# (file name, folder, weights, wrap, architecture spandrel must find, scale)
LAYOUTS: list[tuple[str, str, Callable[[], dict[str, torch.Tensor]], str | None, str, int]] = [
    ("4x-old-esrgan.pth", "ESRGAN", lambda: esrgan(4), None, "ESRGAN", 4),
    ("4x-old-esrgan-st.safetensors", "ESRGAN", lambda: esrgan(4), None, "ESRGAN", 4),
    ("RealESRGAN_x4plus.pth", "RealESRGAN", lambda: to_rrdbnet_keys(esrgan(4)), "params_ema", "ESRGAN", 4),
    ("rrdbnet-2x.safetensors", "ESRGAN", lambda: to_rrdbnet_keys(esrgan(2)), None, "ESRGAN", 2),
    ("realesr-general-x4v3.pth", "RealESRGAN", lambda: compact(4), "params", "Compact", 4),
    ("compact-2x.safetensors", "ESRGAN", lambda: compact(2), None, "Compact", 2),
    ("swinir-2x.pth", "SwinIR", swinir, "params_ema", "SwinIR", 2),
    ("DAT_x2.safetensors", "DAT", dat, None, "DAT", 2),
    ("hat-2x.pth", "HAT", hat, "params_ema", "HAT", 2),
]
