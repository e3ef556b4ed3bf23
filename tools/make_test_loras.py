"""Writes tiny, seeded LoRA files in the real kohya-ss format for the tiny test checkpoints.

Keys are written as kohya's trainer names them: `lora_unet_<module path with _>` (diffusers paths for
SD1/SD2, the LDM paths `input_blocks_...` for SDXL, as kohya's SDXL trainer does), `lora_te_` for the
SD1/SD2 text encoder and `lora_te1_`/`lora_te2_` for SDXL's, each with `.lora_down.weight`,
`.lora_up.weight` and `.alpha`. Optionally LoCon layers on the ResNet 3x3 convs.

The writer returns the delta each targeted weight should receive at multiplier 1, computed here in
float64 straight from the factors, so tests can check the loader's mapping and maths independently.

    python tools/make_test_loras.py --out models/Lora --family sd1 --size tiny --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from modules.checkpoints.architecture import ModelSpec  # noqa: E402
from modules.checkpoints.ldm_keys import UNET_PREFIX, unet_prefix_map, unet_source  # noqa: E402
from modules.checkpoints.tensor_files import write_safetensors  # noqa: E402
from modules.checkpoints.weights import _instantiate  # noqa: E402

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out")
UNET_MLP_TARGETS = ("ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
CONV_TARGETS = ("conv1", "conv2")
Expected = dict[str, dict[str, torch.Tensor]]  # component -> parameter name -> delta at multiplier 1


def _targets(module: torch.nn.Module, endings: Iterable[str]) -> list[tuple[str, torch.nn.Module]]:
    endings = tuple("." + e for e in endings)
    return [(path, m) for path, m in module.named_modules() if path.endswith(endings) and hasattr(m, "weight")]


def _kohya_name(spec: ModelSpec, component: str, path: str, ldm_unet: bool) -> str:
    if component == "unet":
        if ldm_unet:
            rows = unet_prefix_map(spec.components["unet"].config)
            path = unet_source(path + ".weight", {}, rows).key[len(UNET_PREFIX):-len(".weight")]
        return "lora_unet_" + path.replace(".", "_")
    xl = "text_encoder_2" in spec.components and "text_encoder" in spec.components
    prefix = {"text_encoder": "lora_te1_" if xl else "lora_te_", "text_encoder_2": "lora_te2_"}[component]
    if not path.startswith("text_model."):
        path = "text_model." + path  # kohya names CLIP layers from the transformers root
    return prefix + path.replace(".", "_")


def make_lora_tensors(
    spec: ModelSpec,
    seed: int = 0,
    rank: int = 4,
    alpha: float | None = None,
    components: Iterable[str] = ("unet", "text_encoder", "text_encoder_2"),
    conv_rank: int = 0,
    dtype: torch.dtype = torch.float16,
    ldm_unet: bool | None = None,
    scale: float = 0.3,
    unet_targets: Iterable[str] = UNET_TARGETS,
    text_targets: Iterable[str] = TEXT_TARGETS,
    with_expected: bool = True,
) -> tuple[dict[str, torch.Tensor], Expected]:
    """kohya LoRA tensors (factors in `dtype`) for a model of `spec`, and the float32 deltas they
    mean at multiplier 1, computed in float64 from the stored factors.

    `alpha` defaults to rank/2 (so a scale other than 1 is exercised); `conv_rank` > 0 adds LoCon 3x3
    layers on the ResNet convs; `ldm_unet` (default: True for SDXL) names UNet layers in the LDM layout;
    `unet_targets`/`text_targets`: module-name endings to adapt (add `UNET_MLP_TARGETS` for the UNet's
    feed-forward layers); `with_expected=False` skips the deltas (full-size benchmark LoRAs)."""
    generator = torch.Generator().manual_seed(seed)
    alpha = float(rank) / 2 if alpha is None else float(alpha)
    ldm_unet = spec.family.name.startswith("sdxl") if ldm_unet is None else ldm_unet
    tensors: dict[str, torch.Tensor] = {}
    expected: Expected = {}
    for component in components:
        if component not in spec.components:
            continue
        with torch.device("meta"):  # only the shapes are needed
            module = _instantiate(spec.components[component].class_name, spec.components[component].config)
        endings = tuple(unet_targets) if component == "unet" else tuple(text_targets)
        layers = [(path, m, rank) for path, m in _targets(module, endings)]
        if component == "unet" and conv_rank:
            layers += [(path, m, conv_rank) for path, m in _targets(module, CONV_TARGETS)]
        for path, child, r in sorted(layers, key=lambda item: item[0]):
            shape = child.weight.shape
            kernel = tuple(shape[2:])
            down = (torch.randn((r, shape[1], *kernel), generator=generator) * scale).to(dtype)
            up = (torch.randn((shape[0], r, *((1, 1) if kernel else ())), generator=generator) * scale).to(dtype)
            name = _kohya_name(spec, component, path, ldm_unet)
            tensors[name + ".lora_down.weight"] = down
            tensors[name + ".lora_up.weight"] = up
            tensors[name + ".alpha"] = torch.tensor(alpha, dtype=dtype)
            if not with_expected:
                continue
            delta = torch.einsum("or,ri...->oi...", up.reshape(shape[0], r).double(), down.double()) * (float(tensors[name + ".alpha"]) / r)
            expected.setdefault(component, {})[path + ".weight"] = delta.reshape(shape).float()
    return tensors, expected


def write_test_lora(
    path: Path,
    family: str = "sd1",
    size: str = "tiny",
    seed: int = 0,
    rank: int = 4,
    alpha: float | None = None,
    components: Iterable[str] = ("unet", "text_encoder", "text_encoder_2"),
    conv_rank: int = 0,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.float16,
    ldm_unet: bool | None = None,
) -> Expected:
    """Writes a kohya LoRA for the tiny `family`/`size` test models: `.safetensors` with kohya's
    metadata keys, or a pickled state dict for `.pt`/`.ckpt`. Returns the expected deltas."""
    from tools.make_test_models import tiny_spec

    spec = tiny_spec(family, size)
    tensors, expected = make_lora_tensors(spec, seed, rank, alpha, components, conv_rank, dtype, ldm_unet)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        meta = {
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(rank),
            "ss_network_alpha": str(float(rank) / 2 if alpha is None else alpha),
            "ss_base_model_version": "sdxl_base_v1-0" if family.startswith("sdxl") else "sd_v1",
        }
        meta.update(metadata or {})
        write_safetensors(path, sorted(tensors.items()), meta)
    else:
        torch.save(tensors, path)
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/Lora"))
    parser.add_argument("--family", default="sd1")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--name", help="file name (default: easel-test-lora-<family>-<size>-<seed>.safetensors)")
    args = parser.parse_args()
    name = args.name or f"easel-test-lora-{args.family}-{args.size}-{args.seed}.safetensors"
    write_test_lora(args.out / name, args.family, args.size, args.seed, args.rank)
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
