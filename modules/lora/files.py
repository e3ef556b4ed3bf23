"""LoRA files on disk: scanning `models/Lora` (recursive), their metadata and A1111's hashes.

A1111 (`extensions-builtin/Lora/network.py`, `modules/hashes.py`) names a LoRA by its file stem and
hashes it for the `Lora hashes` infotext as follows: the `sshs_model_hash` metadata value if the file
has one, else for a `.safetensors` file the kohya "addnet" hash (sha256 of the bytes after the 8-byte
header length and the JSON header, so editing metadata does not change it), else the sha256 of the
whole file. The short hash is the first 12 hex digits.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.checkpoints.hashing import sha256_of_file
from modules.checkpoints.tensor_files import SafetensorsFile, load_pickle_checkpoint
from modules.errors import ModelLoadError, ModelNotFoundError

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
SHORT_HASH_LENGTH = 12
_CHUNK = 1024 * 1024
# Key endings that mark a state dict as a LoRA/LoCon network (kohya, A1111, LyCORIS variants).
LORA_KEY_MARKERS = (".lora_down.weight", ".lora_up.weight", ".hada_w1_a", ".lokr_w1", ".lora_A.weight", ".lora.down.weight")


def addnet_hash_safetensors(path: Path) -> str:
    """kohya's / A1111's LoRA hash of a `.safetensors` file: sha256 of everything after the header."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelLoadError(f"{Path(path).name} is not a safetensors file (it is shorter than 8 bytes).")
        (header_len,) = struct.unpack("<Q", raw)
        f.seek(8 + header_len)
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def lora_sha256(path: Path, metadata: dict[str, str]) -> str:
    """The full hash A1111 records for a LoRA (see the module docstring for the rule)."""
    path = Path(path)
    if metadata.get("sshs_model_hash"):
        return metadata["sshs_model_hash"]
    if path.suffix.lower() == ".safetensors":
        return addnet_hash_safetensors(path)
    return sha256_of_file(path)


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a `.safetensors` file (header only; no tensor is read)."""
    file = SafetensorsFile(path)
    try:
        return dict(file.metadata)
    finally:
        file.close()


def _decoded(value: str) -> Any:
    """A1111 shows metadata values that hold JSON objects (tag frequencies, datasets) parsed."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


@dataclass(frozen=True)
class LoraFile:
    """A LoRA on disk. `name` (the file stem) is what `<lora:name:...>` and `Lora hashes` use."""

    name: str
    path: Path
    relative: str  # path under the scanned folder, "/"-separated, without extension (A1111's fullname)
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def alias(self) -> str:
        """A1111's alias: the name the trainer gave the network (`ss_output_name`), else the stem."""
        return self.metadata.get("ss_output_name") or self.name

    @property
    def title(self) -> str:
        """A display title: the modelspec title if present, else the alias."""
        return self.metadata.get("modelspec.title") or self.alias

    @property
    def base_model(self) -> str:
        """The checkpoint it was trained on (`ss_sd_model_name`), if recorded."""
        return self.metadata.get("ss_sd_model_name", "")

    @property
    def sd_version(self) -> str:
        """"sd1", "sd2", "sdxl" or "unknown", as A1111 guesses it from kohya/modelspec metadata."""
        base = self.metadata.get("ss_base_model_version", "").lower()
        arch = self.metadata.get("modelspec.architecture", "").lower()
        if base.startswith("sdxl") or arch.startswith("stable-diffusion-xl"):
            return "sdxl"
        if base.startswith("sd_v2") or self.metadata.get("ss_v2") == "True" or arch.startswith("stable-diffusion-v2"):
            return "sd2"
        if base.startswith("sd_v1") or arch.startswith("stable-diffusion-v1") or self.metadata:
            return "sd1"
        return "unknown"

    def preview(self) -> Path | None:
        """A preview image beside the file (A1111's names: `<stem>.png`, `<stem>.preview.png`, ...)."""
        for suffix in (".png", ".preview.png", ".jpg", ".jpeg", ".webp", ".preview.jpg", ".preview.webp"):
            candidate = self.path.with_name(self.name + suffix)
            if candidate.is_file():
                return candidate
        return None

    def api_dict(self) -> dict[str, Any]:
        """A1111's `/sdapi/v1/loras` item: name, alias, path, metadata (JSON values parsed)."""
        return {"name": self.name, "alias": self.alias, "path": str(self.path), "metadata": {k: _decoded(v) for k, v in self.metadata.items()}}


def scan_lora_folder(folder: Path) -> list[LoraFile]:
    """Every LoRA file under `folder` (recursive), sorted by relative path. Unreadable safetensors
    headers are listed with empty metadata (loading them later reports the problem)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in LORA_SUFFIXES or not path.is_file() or path.name.startswith("."):
            continue
        metadata: dict[str, str] = {}
        if path.suffix.lower() == ".safetensors":
            try:
                metadata = read_safetensors_metadata(path)
            except ModelLoadError:
                metadata = {}
        relative = path.relative_to(folder).with_suffix("").as_posix()
        found.append(LoraFile(path.stem, path, relative, metadata))
    return found


class LoraLibrary:
    """The LoRA files of a folder, refreshable without restart, with memoised A1111 hashes.

    Names come from the scan: a request names a LoRA, never a path, so nothing a user sends can reach
    a file outside the folder. Hashes are computed on first use and remembered per file version
    (path, size, mtime), so a refresh does not rehash unchanged files.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._entries: list[LoraFile] = []
        self._hashes: dict[tuple[str, int, int], str] = {}

    def refresh(self) -> list[LoraFile]:
        """Rescans the folder; returns the new list."""
        entries = scan_lora_folder(self.folder)
        with self._lock:
            self._entries = entries
        return entries

    def entries(self) -> list[LoraFile]:
        """The list from the last refresh."""
        with self._lock:
            return list(self._entries)

    def find(self, name: str) -> LoraFile:
        """The LoRA a prompt tag names: by file stem, then relative path, then alias (A1111's order)."""
        entries = self.entries()
        for matches in (
            lambda e: e.name == name,
            lambda e: e.relative == name,
            lambda e: e.alias == name,
            lambda e: e.name.lower() == name.lower(),
        ):
            for entry in entries:
                if matches(entry):
                    return entry
        raise ModelNotFoundError(f"LoRA '{name}' was not found in {self.folder.name}/. Put the file there and press refresh.")

    def sha256(self, entry: LoraFile) -> str:
        """The full hash A1111 records for `entry` (computed once per file version)."""
        stat = entry.path.stat()
        key = (str(entry.path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is not None:
            return cached
        value = lora_sha256(entry.path, entry.metadata)
        with self._lock:
            self._hashes[key] = value
        return value

    def short_hash(self, entry: LoraFile) -> str:
        """The 12 hex digits of `Lora hashes: "name: 0123456789ab"`."""
        return self.sha256(entry)[:SHORT_HASH_LENGTH]


def is_lora_key(key: str) -> bool:
    """True for a key that belongs to a LoRA-like network."""
    return any(marker in key for marker in LORA_KEY_MARKERS)


def read_lora_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a LoRA file. `.pt`/`.ckpt` are unpickled with
    `weights_only=True`. A file without LoRA keys (a checkpoint, an embedding) is refused with a
    sentence saying so."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"LoRA file {path.name} does not exist.")
    if path.suffix.lower() == ".safetensors":
        file = SafetensorsFile(path)
        try:
            tensors = {key: file.read(key) for key in file.shapes()}
            metadata = dict(file.metadata)
        finally:
            file.close()
    elif path.suffix.lower() in (".pt", ".ckpt"):
        state = load_pickle_checkpoint(path)
        tensors = {key: state.read(key) for key in state.shapes()}
        metadata = {}
    else:
        raise ModelLoadError(f"{path.name}: unsupported LoRA file type {path.suffix} (use .safetensors, .pt or .ckpt).")
    if not any(is_lora_key(key) for key in tensors):
        sample = ", ".join(sorted(tensors)[:3])
        raise ModelLoadError(
            f"{path.name} is not a LoRA: it has no lora_up/lora_down weights (its first keys: {sample}). "
            "Checkpoints go in models/Stable-diffusion, embeddings in models/embeddings."
        )
    return tensors, metadata
