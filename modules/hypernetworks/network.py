"""A1111's hypernetwork: for each feature width it has (768, 1024 for text contexts; 320, 640, 1280
for the UNet's own), a pair of small MLPs that reshape an attention layer's context before its key
and its value projections: context' = context + MLP(context)·multiplier (A1111's
`HypernetworkModule`, modules/hypernetworks/hypernetwork.py).

The MLP is rebuilt exactly as A1111 lays it out, so the file's `linear.N.*` keys land where they
were trained: for each step of `layer_structure` (default [1, 2, 1]) a Linear, then its activation
(none for "linear"; none after the last Linear unless `activate_output`, which is True when the file
does not say, as A1111 reads it), then a LayerNorm with `is_layer_norm`, then a Dropout where A1111
puts one with `use_dropout` (identity when drawing, but it takes its index). "swish" is Hardswish,
as in A1111; any other torch activation is found by its lowercased class name. Old files' `linear1`
and `linear2` keys are renamed to `linear.0` and `linear.1`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from modules.errors import ModelLoadError

ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU, "swish": torch.nn.Hardswish,
    "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
}
ACTIVATIONS.update({name.lower(): cls for name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass)
                    if issubclass(cls, torch.nn.Module) and cls.__module__ == "torch.nn.modules.activation" and name.lower() not in ACTIVATIONS})
OLD_KEYS = {"linear1.weight": "linear.0.weight", "linear1.bias": "linear.0.bias", "linear2.weight": "linear.1.weight", "linear2.bias": "linear.1.bias"}


@dataclass(frozen=True)
class Structure:
    """How a file's MLPs are built (its metadata, with A1111's defaults for what it leaves out)."""

    layers: tuple[float, ...] = (1.0, 2.0, 1.0)
    activation: str | None = None
    layer_norm: bool = False
    dropout: bool = False
    last_layer_dropout: bool = False
    activate_output: bool = True

    @classmethod
    def from_file(cls, data: Mapping[Any, Any], name: str) -> "Structure":
        layers = tuple(float(v) for v in (data.get("layer_structure") or (1, 2, 1)))
        if len(layers) < 2 or layers[0] != 1 or layers[-1] != 1:
            written = list(layers)
            raise ModelLoadError(f"The hypernetwork {name} has a layer structure {written} that does not start and end with 1.")
        activation = data.get("activation_func")
        if activation is not None and str(activation).lower() not in ACTIVATIONS:
            raise ModelLoadError(f"The hypernetwork {name} uses the activation {activation!r}, which is not a torch activation.")
        return cls(layers, str(activation).lower() if activation is not None else None, bool(data.get("is_layer_norm", False)),
                   bool(data.get("use_dropout", False)), bool(data.get("last_layer_dropout", False)), bool(data.get("activate_output", True)))

    def build(self, width: int) -> torch.nn.Sequential:
        steps: list[torch.nn.Module] = []
        count = len(self.layers)
        for i in range(count - 1):
            steps.append(torch.nn.Linear(int(width * self.layers[i]), int(width * self.layers[i + 1])))
            last = i >= count - 2
            if self.activation not in (None, "linear") and not (last and not self.activate_output):
                steps.append(ACTIVATIONS[self.activation]())
            if self.layer_norm:
                steps.append(torch.nn.LayerNorm(int(width * self.layers[i + 1])))
            if self.dropout and (i < count - 3 or (self.last_layer_dropout and i < count - 2)):
                steps.append(torch.nn.Dropout(p=0.3))
        return torch.nn.Sequential(*steps)


class ContextMLP(torch.nn.Module):
    """x + MLP(x)·multiplier (the MLP in float32 on the context's device, its result in the context's dtype)."""

    def __init__(self, linear: torch.nn.Sequential):
        super().__init__()
        self.linear = linear
        self.multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.linear.parameters()).dtype
        return x + (self.linear(x.to(dtype)) * self.multiplier).to(x.dtype)


@dataclass
class Hypernetwork:
    name: str
    layers: dict[int, tuple[ContextMLP, ContextMLP]]  # context width -> (for the key, for the value)
    structure: Structure
    metadata: dict[str, Any] = field(default_factory=dict)  # step, sd_checkpoint, sd_checkpoint_name, ...

    def set_multiplier(self, multiplier: float) -> None:
        for pair in self.layers.values():
            for module in pair:
                module.multiplier = float(multiplier)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Hypernetwork":
        for pair in self.layers.values():
            for module in pair:
                module.to(device=device, dtype=dtype)
        return self


def _module(structure: Structure, width: int, state: Mapping[str, Any], name: str) -> ContextMLP:
    linear = structure.build(width)
    renamed = {OLD_KEYS.get(k, k): v for k, v in state.items()}
    wanted = {f"linear.{k}": v for k, v in linear.state_dict().items()}
    if set(renamed) != set(wanted):
        missing = ", ".join(sorted(set(wanted) - set(renamed))[:3]) or "none"
        unexpected = ", ".join(sorted(set(renamed) - set(wanted))[:3]) or "none"
        raise ModelLoadError(f"The hypernetwork {name}'s weights for width {width} do not fit its structure "
                             f"(missing {missing}; unexpected {unexpected}).")
    for key, value in renamed.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(wanted[key].shape):
            raise ModelLoadError(f"The hypernetwork {name}: {key} has the wrong shape for width {width}.")
    module = ContextMLP(linear)
    module.load_state_dict(renamed)
    return module.eval().requires_grad_(False)


def hypernetwork_from_data(data: Any, name: str) -> Hypernetwork:
    """A Hypernetwork from what a `.pt` file holds (already read by the restricted unpickler)."""
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ModelLoadError(f"{name} is not a hypernetwork: it holds a {kind}, not a dict.")
    structure = Structure.from_file(data, name)
    layers: dict[int, tuple[ContextMLP, ContextMLP]] = {}
    for width, pair in data.items():
        if not isinstance(width, int) or isinstance(width, bool):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, Mapping) for p in pair):
            raise ModelLoadError(f"The hypernetwork {name}'s entry for width {width} is not a pair of state dicts.")
        layers[width] = (_module(structure, width, pair[0], name), _module(structure, width, pair[1], name))
    if not layers:
        raise ModelLoadError(f"{name} is not a hypernetwork: it has no layers (int feature widths).")
    metadata = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool, list, type(None)))}
    return Hypernetwork(str(data.get("name") or name), layers, structure, metadata)
