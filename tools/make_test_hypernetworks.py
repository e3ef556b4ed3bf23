"""Writes small hypernetwork files in A1111's format (a torch.save dict: int feature widths -> a pair
of `HypernetworkModule` state dicts, plus its metadata keys), for the tests and by hand:

    .venv/bin/python tools/make_test_hypernetworks.py models/hypernetworks/test.pt --widths 32 64

`old_keys` writes the earliest files' layout (structure [1, 2, 1], no activation, `linear1.*` and
`linear2.*` keys); `metadata` overrides or removes (value None) metadata keys, e.g. to leave
`activate_output` out as old files do."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.hypernetworks.network import Structure  # noqa: E402


def module_state(structure: Structure, width: int, generator: torch.Generator, scale: float) -> dict[str, torch.Tensor]:
    linear = structure.build(width)
    state = {}
    for key, value in linear.state_dict().items():
        noise = torch.randn(value.shape, generator=generator) * scale
        state[key] = (value * 0 + 1 + noise) if key.endswith("weight") and value.ndim == 1 else noise
    return state


def write_test_hypernetwork(path: Path, widths: Iterable[int] = (32, 64), *, seed: int = 0, layers: tuple[float, ...] = (1, 2, 1),
                            activation: str | None = "relu", layer_norm: bool = False, dropout: bool = False, old_keys: bool = False,
                            scale: float = 0.2, metadata: dict[str, Any] | None = None) -> dict[Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    if old_keys:
        layers, activation, layer_norm, dropout = (1, 2, 1), None, False, False
    structure = Structure(tuple(float(v) for v in layers), activation, layer_norm, dropout, False, True)
    data: dict[Any, Any] = {}
    for width in widths:
        pair = []
        for _ in range(2):
            state = {f"linear.{k}": v for k, v in module_state(structure, width, generator, scale).items()}
            if old_keys:
                state = {k.replace("linear.0.", "linear1.").replace("linear.1.", "linear2."): v for k, v in state.items()}
            pair.append(state)
        data[width] = tuple(pair)
    data.update({"step": 100, "name": Path(path).stem, "layer_structure": list(layers), "activation_func": activation,
                 "is_layer_norm": layer_norm, "weight_initialization": "Normal", "use_dropout": dropout, "sd_checkpoint": "0123456789",
                 "sd_checkpoint_name": "tiny", "activate_output": True, "last_layer_dropout": False})
    if old_keys:
        for key in ("layer_structure", "activation_func", "is_layer_norm", "use_dropout", "activate_output", "last_layer_dropout"):
            data.pop(key)
    for key, value in (metadata or {}).items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-keys", action="store_true")
    args = parser.parse_args()
    write_test_hypernetwork(args.path, args.widths, seed=args.seed, old_keys=args.old_keys)
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
