"""The hypernetwork files in `models/hypernetworks` (searched in subfolders, as A1111 does), found by
the name a `<hypernet:name:multiplier>` tag gives (the file's stem; case-insensitively after the
exact match), and read through torch's restricted unpickler: a `.pt` hypernetwork is a pickle, and
only tensors and plain data (dicts, lists, numbers, text) are built from it; one that would run code
is refused with a message and nothing of it runs. Read files are kept (a few, by file version)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from modules.checkpoints.tensor_files import read_weights_file
from modules.errors import ModelNotFoundError
from modules.hypernetworks.network import Hypernetwork, hypernetwork_from_data

SUFFIXES = (".pt",)
KEPT = 4


@dataclass(frozen=True)
class HypernetworkFile:
    name: str  # the file stem: what a tag names
    path: Path


class HypernetworkLibrary:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._entries: list[HypernetworkFile] = []
        self._loaded: OrderedDict[tuple[str, int, int], Hypernetwork] = OrderedDict()

    def refresh(self) -> list[HypernetworkFile]:
        found = []
        if self.folder.is_dir():
            for path in sorted(self.folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUFFIXES and path.stem != "None" and not path.name.startswith("."):
                    found.append(HypernetworkFile(path.stem, path))
        with self._lock:
            self._entries = found
        return found

    def entries(self) -> list[HypernetworkFile]:
        with self._lock:
            return list(self._entries)

    def find(self, name: str) -> HypernetworkFile:
        entries = self.entries()
        for matches in (lambda e: e.name == name, lambda e: e.name.lower() == name.lower()):
            for entry in entries:
                if matches(entry):
                    return entry
        folder = self.folder.name
        raise ModelNotFoundError(f"Hypernetwork '{name}' was not found in {folder}/. Put the .pt file there and press refresh.")

    def load(self, entry: HypernetworkFile) -> Hypernetwork:
        stat = entry.path.stat()
        key = (str(entry.path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        network = hypernetwork_from_data(read_weights_file(entry.path, "hypernetwork"), entry.name)
        with self._lock:
            self._loaded[key] = network
            while len(self._loaded) > KEPT:
                self._loaded.popitem(last=False)
        return network
