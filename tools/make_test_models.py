"""Writes tiny, seeded Stable Diffusion checkpoints of every family as real files.

The models are built from configs with random weights (seconds on a CPU) and written with Easel's own
LDM writer, so tests exercise exactly the loading code a user's downloaded checkpoint goes through.
They follow each family's conventions (SD1: 8 attention heads; SD2/SDXL: 64 channels per head, at
least one head), so their architecture is recoverable from shapes alone.

    python tools/make_test_models.py --out models/Stable-diffusion --family sd1 --size tiny
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from modules.checkpoints.architecture import FAMILIES, ComponentSpec, ModelSpec, family_config  # noqa: E402
from modules.checkpoints.ldm_keys import TEXT_ENCODER_PREFIXES  # noqa: E402
from modules.checkpoints.weights import (  # noqa: E402
    Tensors,
    _instantiate,
    normalize_spec,
    write_ldm_checkpoint,
    write_vae_file,
)

# Per size: UNet widths, resnets per level, text width/layers, VAE widths.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"unet": [32, 64], "layers": 1, "text": 32, "text_layers": 2, "vae": [32, 32, 32, 32]},
    "small": {"unet": [32, 64, 64], "layers": 2, "text": 64, "text_layers": 3, "vae": [32, 64, 64, 64]},
    "medium": {"unet": [128, 256], "layers": 1, "text": 128, "text_layers": 2, "vae": [32, 64, 64, 64]},
}


def _text_config(family: str, component: str, hidden: int, layers: int) -> dict[str, Any]:
    config = family_config(family, component)
    config.update(
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=77,
        vocab_size=49408,
    )
    if component == "text_encoder_2":
        config["projection_dim"] = hidden
    return config


def tiny_spec(family_name: str, size: str = "tiny", in_channels: int | None = None) -> ModelSpec:
    """The spec of a tiny model of a family (SD1, SD1 inpaint, SD2, SD2-v, SDXL base, SDXL refiner)."""
    family = FAMILIES[family_name]
    dims = SIZES[size]
    unet = family_config(family.name, "unet")
    widths = dims["unet"]
    n = len(widths)
    xl = family.name.startswith("sdxl")
    if xl:
        down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1)
        depths = [1] + [2] * (n - 1)
    else:
        down = ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"]
        depths = 1
    components: dict[str, ComponentSpec] = {}
    text_sources = TEXT_ENCODER_PREFIXES[family.text_layout]
    contexts = 0
    for name in text_sources:
        config = _text_config(family.name, name, dims["text"], dims["text_layers"])
        cls = "CLIPTextModel" if name == "text_encoder" else "CLIPTextModelWithProjection"
        components[name] = ComponentSpec(cls, config)
        contexts += config["hidden_size"]
    unet.update(
        block_out_channels=widths,
        layers_per_block=dims["layers"],
        down_block_types=down,
        up_block_types=[t.replace("Down", "Up") for t in reversed(down)],
        transformer_layers_per_block=depths,
        cross_attention_dim=contexts if family.name != "sdxl-refiner" else dims["text"],
        attention_head_dim=family.heads_per_block or [max(1, w // 64) for w in widths],
        sample_size=8,
        norm_num_groups=32,
    )
    unet.pop("num_attention_heads", None)
    if in_channels is not None:
        unet["in_channels"] = in_channels
    if xl:
        time_dim = 8
        unet["addition_time_embed_dim"] = time_dim
        ids = 6 if family.name == "sdxl-base" else 5
        unet["projection_class_embeddings_input_dim"] = ids * time_dim + dims["text"]
    components = {"unet": ComponentSpec("UNet2DConditionModel", unet), **components}
    vae = family_config(family.name, "vae")
    vae.update(
        block_out_channels=dims["vae"],
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * len(dims["vae"]),
        up_block_types=["UpDecoderBlock2D"] * len(dims["vae"]),
        norm_num_groups=32,
        sample_size=64,
    )
    components["vae"] = ComponentSpec("AutoencoderKL", vae)
    scheduler = family_config(family.name, "scheduler")
    spec = ModelSpec(
        family=family,
        components=components,
        prediction_type=scheduler.get("prediction_type", "epsilon"),
        scheduler_config=scheduler,
        variant="inpaint" if (in_channels or unet["in_channels"]) == 9 else "",
        text_sources=dict(text_sources),
    )
    return normalize_spec(spec)


def random_weights(spec: ModelSpec, seed: int) -> dict[str, Tensors]:
    """Seeded random weights for every component (real modules, default init plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, Tensors] = {}
    for name, component in spec.components.items():
        module = _instantiate(component.class_name, component.config)
        tensors = {}
        for key, meta in module.state_dict().items():
            t = torch.randn(meta.shape, generator=generator) * 0.05
            if key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "layer_norm1.weight", "layer_norm2.weight", "final_layer_norm.weight", "norm_out.weight")):
                t = t + 1.0
            tensors[key] = t.to(torch.float32)
        out[name] = tensors
    return out


def write_test_checkpoint(path: Path, family: str = "sd1", size: str = "tiny", seed: int = 0, dtype: torch.dtype | None = None, in_channels: int | None = None) -> tuple[ModelSpec, dict[str, Tensors]]:
    """Writes a tiny single-file checkpoint; returns its spec and the weights written (float32)."""
    spec = tiny_spec(family, size, in_channels)
    weights = random_weights(spec, seed)
    write_ldm_checkpoint(Path(path), spec, weights, dtype)
    return spec, weights


def write_test_vae(path: Path, family: str = "sd1", size: str = "tiny", seed: int = 100) -> Tensors:
    """Writes a standalone VAE that fits the tiny checkpoints of `family`/`size`."""
    spec = tiny_spec(family, size)
    tensors = random_weights(spec, seed)["vae"]
    write_vae_file(Path(path), spec.components["vae"], tensors)
    return tensors


def write_diffusers_folder(path: Path, family: str = "sd1", size: str = "tiny", seed: int = 0) -> dict[str, Tensors]:
    """Writes a diffusers-format folder (model_index.json, one subfolder per component)."""
    from modules.checkpoints.tensor_files import write_safetensors

    spec = tiny_spec(family, size)
    weights = random_weights(spec, seed)
    path = Path(path)
    index = json.loads((Path(__file__).resolve().parents[1] / "modules/checkpoints/family_configs" / family / "model_index.json").read_text())
    for name, component in spec.components.items():
        folder = path / name
        folder.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(component.config)
        config["_class_name" if component.class_name[0] in "UA" else "architectures"] = (
            component.class_name if component.class_name[0] in "UA" else [component.class_name]
        )
        if component.class_name.startswith("CLIP"):
            config["model_type"] = "clip_text_model"
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        filename = "diffusion_pytorch_model.safetensors" if component.class_name[0] in "UA" else "model.safetensors"
        write_safetensors(folder / filename, weights[name].items())
    (path / "scheduler").mkdir(exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(spec.scheduler_config, indent=2))
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/Stable-diffusion"))
    parser.add_argument("--family", choices=sorted(FAMILIES), default="sd1")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="file name (default: easel-test-<family>-<size>.safetensors)")
    parser.add_argument("--vae", action="store_true", help="also write a matching VAE into <out>/../VAE")
    args = parser.parse_args()
    name = args.name or f"easel-test-{args.family}-{args.size}.safetensors"
    write_test_checkpoint(args.out / name, args.family, args.size, args.seed)
    print(f"wrote {args.out / name}")
    if args.vae:
        vae_path = args.out.parent / "VAE" / f"easel-test-{args.family}-{args.size}.vae.safetensors"
        write_test_vae(vae_path, args.family, args.size)
        print(f"wrote {vae_path}")


if __name__ == "__main__":
    main()
