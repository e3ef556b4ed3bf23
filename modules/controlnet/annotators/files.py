"""The annotator weight files: found by name in the annotator folders (models/ControlNet/annotators
and `<each --controlnet-dir>/annotators`), read through the one safe reader (safetensors, or a
.pth/.pt unpickled to plain tensors only), loaded strictly into the network they are for, and the
last KEPT networks kept, keyed by file, modification time and size (a replaced file is read again).

The extension downloads each file into a sub-folder of its own (`hed/ControlNetHED.pth`,
`lineart/sk_model.pth`, ...), so a copy of its downloads folder is found too: a file is looked for in
each annotator folder itself, then in that folder's sub-folders, in name order."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import torch

from modules.checkpoints.tensor_files import read_weights_file
from modules.errors import ModelLoadError

KEPT = 2
WHAT = "annotator"

Network = TypeVar("Network", bound=torch.nn.Module)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an annotator file (a bare state dict, or one under "state_dict")."""
    data = read_weights_file(path, WHAT)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"The annotator {path.name} holds no weights.")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def load_into(network: Network, path: Path) -> Network:
    """`network` with the weights of `path`, every one of its weights and only those (strict),
    in float32 and in eval mode."""
    state = read_state(path)
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or reshaped:
        first = (missing + unexpected + reshaped)[0]
        raise ModelLoadError(f"The annotator {path.name} is not the network Easel reads under that name: {len(missing)} weights missing, "
                             f"{len(unexpected)} unexpected, {len(reshaped)} of another shape (first: {first}).")
    network.load_state_dict(state, strict=True)
    return network.float().eval()


class AnnotatorModels:
    """The annotator files of `folders` and the networks loaded from them, on `device` (CPU by default)."""

    def __init__(self, folders: Iterable[Path], device: str | torch.device = "cpu"):
        self.folders = [Path(folder) for folder in folders]
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple[str, int, int, Callable[[], torch.nn.Module]], torch.nn.Module] = OrderedDict()

    def find(self, name: str) -> Path | None:
        """The file `name` (or a .safetensors of the same stem) in the first annotator folder that has
        it, the folder itself before its sub-folders; None when no folder has it."""
        names = [name, Path(name).stem + ".safetensors"]
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for place in [folder, *sorted(child for child in folder.iterdir() if child.is_dir())]:
                for candidate in names:
                    if (place / candidate).is_file():
                        return place / candidate
        return None

    def network(self, name: str, build: Callable[[], Network]) -> Network:
        """The network `build` makes, with the weights of the file `name`, loaded once per version of the file."""
        path = self.find(name)
        if path is None:
            raise ModelLoadError(f"The annotator file {name} is missing: it was moved or deleted.")
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, build)
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
                return self._held[key]  # type: ignore[return-value]  # built by `build`, which is in the key
        with torch.no_grad():
            network = load_into(build(), path).to(self.device)
        with self._lock:
            self._held[key] = network
            while len(self._held) > KEPT:
                self._held.popitem(last=False)
        return network

    def loaded(self) -> list[Path]:
        """The files of the networks held, oldest first."""
        with self._lock:
            return [Path(key[0]) for key in self._held]
