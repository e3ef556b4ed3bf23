"""Applying LoRAs to a loaded model by patching its weights in place, and undoing that exactly.

Why patch weights rather than wrap layers: a patched model runs at full speed with no extra code in
the denoising loop, and the UNet/text encoder stay plain diffusers/transformers modules.

- `apply(model, uses)` makes the model's weights `original + sum(multiplier * delta)` for the
  requested LoRAs (text-encoder and UNet multipliers separately; a zero multiplier touches nothing).
  Before the first change to a parameter its data is copied aside; `restore()` copies it back, so
  the weights afterwards are bitwise equal to before.
- Deltas (`up @ down * alpha/rank`, format.py) cost the most to make, so each LoRA's deltas for a
  model architecture are kept in an LRU cache bounded in bytes; applying the same LoRA again is a
  few tensor additions. Asking for the set that is already applied does nothing at all.
- The tensors patched are remembered themselves (not only their names): if a checkpoint switch
  re-pointed the parameters meanwhile, `restore()` still repairs the tensors that were patched (on
  the CPU they are the RAM cache's copy of that checkpoint).

Thread-safety: the patcher has no lock of its own. The caller must hold the model lock
(`ModelManager.lock`, e.g. inside `manager.use()`) around `apply`, the generation and `restore`,
and should call `restore()` before switching checkpoints.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from modules.checkpoints.manager import LoadedModel
from modules.lora.files import LoraFile, read_lora_tensors
from modules.lora.format import TEXT_COMPONENTS, Index, NetworkDeltas, build_index, network_deltas, parse_lora
from modules.prompts.conditioning import PromptEncoder

DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class LoraUse:
    """One `<lora:name:te:unet>` tag: which LoRA, at which strengths (unet defaults to te)."""

    lora: LoraFile
    te_multiplier: float = 1.0
    unet_multiplier: float | None = None

    def __post_init__(self) -> None:
        if self.unet_multiplier is None:
            object.__setattr__(self, "unet_multiplier", self.te_multiplier)

    def multiplier(self, component: str) -> float:
        if component in TEXT_COMPONENTS:
            return float(self.te_multiplier)
        assert self.unet_multiplier is not None  # __post_init__ sets it (from te_multiplier when not given)
        return float(self.unet_multiplier)

    @property
    def is_noop(self) -> bool:
        return self.te_multiplier == 0 and self.unet_multiplier == 0


def _file_version(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def model_key(model: LoadedModel) -> tuple[str, str, str]:
    """What deltas depend on: the architecture (shapes, names), device and dtype — not the weights,
    so deltas made for one checkpoint serve every checkpoint of the same architecture."""
    return model.spec.signature(), str(model.device), str(model.dtype)


class DeltaCache:
    """Least-recently-used LoRA deltas, at most `max_bytes` in all. An entry larger than the whole
    budget is used but not kept. `computed` counts the deltas actually made (cache misses)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self.computed = 0
        self.hits = 0
        self._items: OrderedDict[tuple, NetworkDeltas] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(item.nbytes for item in self._items.values())

    def get_or_compute(self, key: tuple, compute: Callable[[], NetworkDeltas]) -> NetworkDeltas:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return item
        item = compute()
        self.computed += 1
        if item.nbytes <= self.max_bytes:
            self._items[key] = item
            while self.nbytes > self.max_bytes:
                self._items.popitem(last=False)
        return item

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _Patched:
    """A parameter whose data was changed: the parameter, the very tensor changed, its original."""

    param: torch.nn.Parameter
    tensor: torch.Tensor
    backup: torch.Tensor


@dataclass
class PatchReport:
    """What an `apply` did: the LoRAs in effect, what did not fit the model, and the cost."""

    applied: list[str] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # LoRA name -> keys/layers skipped
    computed: list[str] = field(default_factory=list)  # LoRAs whose deltas were made (not cached)
    unchanged: bool = False  # the same set was already applied: nothing was done
    parameters: int = 0  # parameters patched
    seconds: float = 0.0


def _weights_in_ram(model: LoadedModel | None) -> None:
    """Under model CPU offload the patch goes to the RAM tensors (the ones the modules keep), so
    the module on the GPU is sent home first."""
    if model is not None and model.placer is not None:
        model.placer.evict()


class LoraPatcher:
    """Applies sets of LoRAs to a LoadedModel in place and restores its weights exactly.

    One patcher per model manager. `backup_device`: where original weights are kept while patched
    (None: beside the parameter, fastest; "cpu" saves VRAM at the cost of copies over the bus).
    """

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES, backup_device: torch.device | str | None = None):
        self.cache = DeltaCache(cache_bytes)
        self.backup_device = torch.device(backup_device) if backup_device is not None else None
        self._patched: list[_Patched] = []
        self._applied_key: tuple | None = None
        self._applied_model: LoadedModel | None = None
        self._text_touched = False
        self._index: tuple[tuple, Index] | None = None

    # public ------------------------------------------------------------------------------------

    @property
    def is_patched(self) -> bool:
        return bool(self._patched)

    def apply(self, model: LoadedModel, uses: Sequence[LoraUse]) -> PatchReport:
        """Makes `uses` the LoRAs in effect on `model` (an empty list: none). Caller holds the model lock.

        Deltas are made before any weight changes, so a LoRA that cannot be read raises with the
        model restored to its original weights (never half-patched)."""
        started = time.perf_counter()
        _weights_in_ram(model)
        uses = [use for use in uses if not use.is_noop]
        key = (id(model), tuple((_file_version(u.lora.path), u.te_multiplier, u.unet_multiplier) for u in uses))
        report = PatchReport(applied=[u.lora.name for u in uses])
        if key == self._applied_key and self._in_place(model):
            report.unchanged = True
            report.parameters = len(self._patched)
            return report
        try:
            networks = [self._deltas(model, use, report) for use in uses]
        except BaseException:
            self.restore(model)
            raise
        self.restore(model)
        totals = self._contributions(model, uses, networks)
        with torch.no_grad():
            for (component, name), contributions in totals.items():
                self._patch(model.modules[component].get_parameter(name), contributions)
        self._text_touched = any(component in TEXT_COMPONENTS for component, _ in totals)
        if self._text_touched:
            _forget_encoded_prompts(model)
        self._applied_key, self._applied_model = key, model
        report.parameters = len(totals)
        report.seconds = time.perf_counter() - started
        return report

    @contextmanager
    def applied(self, model: LoadedModel, uses: Sequence[LoraUse]) -> Iterator[PatchReport]:
        """`uses` in effect for the block (one generation), removed after it even if it raises."""
        report = self.apply(model, uses)
        try:
            yield report
        finally:
            self.restore(model)

    def restore(self, model: LoadedModel | None = None) -> None:
        """Copies every patched tensor's original data back (bitwise). Safe to call when nothing is
        patched. `model`: whose prompt caches to drop if the text encoder was patched (default: the
        model last patched)."""
        if not self._patched:
            self._applied_key = None
            return
        for target in (model, self._applied_model):
            _weights_in_ram(target)
        with torch.no_grad():
            for entry in self._patched:
                entry.tensor.copy_(entry.backup)
        self._patched = []
        if self._text_touched:
            for target in {id(m): m for m in (model, self._applied_model) if m is not None}.values():
                _forget_encoded_prompts(target)
        self._text_touched = False
        self._applied_key, self._applied_model = None, None

    # internals ---------------------------------------------------------------------------------

    def _in_place(self, model: LoadedModel) -> bool:
        """True while the tensors we patched are still the model's parameters (no switch since)."""
        return model is self._applied_model and all(e.param.data.data_ptr() == e.tensor.data_ptr() for e in self._patched)

    def _model_index(self, model: LoadedModel) -> Index:
        key = model_key(model)
        if self._index is None or self._index[0] != key:
            self._index = (key, build_index(model.modules))
        return self._index[1]

    def _deltas(self, model: LoadedModel, use: LoraUse, report: PatchReport) -> NetworkDeltas:
        def compute() -> NetworkDeltas:
            tensors, _ = read_lora_tensors(use.lora.path)
            report.computed.append(use.lora.name)
            return network_deltas(parse_lora(tensors), model.modules, self._model_index(model))

        deltas = self.cache.get_or_compute((_file_version(use.lora.path), model_key(model)), compute)
        if deltas.unmatched:
            report.unmatched[use.lora.name] = list(deltas.unmatched)
        return deltas

    @staticmethod
    def _contributions(model: LoadedModel, uses: Sequence[LoraUse], networks: Sequence[NetworkDeltas]) -> dict[tuple[str, str], list[tuple[torch.Tensor, float]]]:
        """(component, parameter) -> [(delta, multiplier)], zero multipliers and absent components left out."""
        totals: dict[tuple[str, str], list[tuple[torch.Tensor, float]]] = {}
        for use, network in zip(uses, networks):
            for component, params in network.deltas.items():
                weight = use.multiplier(component)
                if weight == 0 or component not in model.modules:
                    continue
                for name, delta in params.items():
                    totals.setdefault((component, name), []).append((delta, weight))
        return totals

    def _patch(self, param: torch.nn.Parameter, contributions: list[tuple[torch.Tensor, float]]) -> None:
        tensor = param.data
        backup = tensor.to(self.backup_device, copy=True) if self.backup_device is not None else tensor.clone()
        self._patched.append(_Patched(param, tensor, backup))
        if tensor.dtype == torch.float32 or len(contributions) == 1:
            for delta, weight in contributions:
                tensor.add_(delta.to(tensor.device, tensor.dtype), alpha=weight)
        else:  # several LoRAs on a half-precision weight: sum in float32, round once
            total = tensor.float()
            for delta, weight in contributions:
                total.add_(delta.to(tensor.device, torch.float32), alpha=weight)
            tensor.copy_(total)


def _forget_encoded_prompts(model: LoadedModel) -> None:
    """Drops the model's cached prompt encodings: they were made with other text-encoder weights."""
    for key in [k for k, v in model.caches.items() if isinstance(v, PromptEncoder)]:
        del model.caches[key]
