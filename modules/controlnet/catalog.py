"""The ControlNet models in models/ControlNet (sub-folders too) and `--controlnet-dir`, listed as
the extension lists them, `stem [hash8]` (A1111's legacy hash: sha256 of the 64 KiB at 1 MiB), and
found the way it finds them: the exact title, else the stem (any case), else the shortest stem that
contains the name (so "canny" finds control_v11p_sd15_canny)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from modules.checkpoints.hashing import legacy_hash
from modules.errors import ModelNotFoundError

SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
NONE = "None"


@dataclass(frozen=True)
class ControlNetFile:
    path: Path
    short_hash: str

    @property
    def title(self) -> str:
        return f"{self.path.stem} [{self.short_hash}]"


class ControlNetCatalog:
    """The ControlNet files under `folders`, read on each call (hashes remembered by size and mtime)."""

    def __init__(self, folders: Iterable[Path]):
        self.folders = [Path(folder) for folder in folders]
        self._hashes: dict[tuple[Path, int, float], str] = {}

    def files(self) -> list[ControlNetFile]:
        found: list[ControlNetFile] = []
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUFFIXES and "annotators" not in path.relative_to(folder).parts:
                    stat = path.stat()
                    key = (path, stat.st_size, stat.st_mtime)
                    if key not in self._hashes:
                        self._hashes[key] = legacy_hash(path)
                    found.append(ControlNetFile(path, self._hashes[key]))
        return sorted(found, key=lambda f: f.path.stem.lower())

    def titles(self) -> list[str]:
        return [f.title for f in self.files()]

    def find(self, name: str, where: str = "ControlNet") -> ControlNetFile:
        files = self.files()
        for f in files:
            if f.title == name:
                return f
        wanted = name.split(" [")[0].strip().lower()
        for f in files:
            if f.path.stem.lower() == wanted:
                return f
        containing = [f for f in files if wanted and wanted in f.path.stem.lower()]
        if containing:
            return min(containing, key=lambda f: len(f.path.stem))
        available = ", ".join(f.title for f in files) or "none"
        raise ModelNotFoundError(f"{where}: no ControlNet model matches {name!r} (available: {available}). Put it in models/ControlNet.")
