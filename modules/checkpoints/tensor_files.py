"""Reading and writing tensor files: `.safetensors` (streamed, no mmap) and `.ckpt` (safe unpickling).

The safetensors reader parses the header itself and reads one tensor at a time with `readinto`, so a
load never holds the whole file in memory next to the converted weights, and the file's pages are not
mapped into our address space (they would count towards RSS for as long as the mapping lives).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping, Protocol

import torch

from modules.errors import ModelLoadError, UnsafeCheckpointError
from modules.files import write_atomically

_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class TensorFile(Protocol):
    """A file of named tensors whose shapes are known before any tensor is read."""

    path: Path
    metadata: dict[str, str]

    def shapes(self) -> dict[str, tuple[int, ...]]: ...

    def read(self, key: str) -> torch.Tensor: ...

    def read_as(self, key: str, dtype: torch.dtype, staging: "Staging") -> torch.Tensor: ...

    def close(self) -> None: ...


class Staging:
    """A growable byte buffer reused across reads (one per reading thread)."""

    def __init__(self) -> None:
        self._buffer = torch.empty(0, dtype=torch.uint8)

    def get(self, nbytes: int) -> torch.Tensor:
        if self._buffer.numel() < nbytes:
            self._buffer = torch.empty(nbytes, dtype=torch.uint8)
        return self._buffer


class SafetensorsFile:
    """Streams tensors out of a `.safetensors` file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as error:
            raise ModelLoadError(f"Cannot open {self.path.name}: {error.strerror}.") from error
        try:
            self._entries, self.metadata, self._data_start = self._parse_header()
        except Exception:
            self._file.close()
            raise

    def _parse_header(self) -> tuple[dict[str, dict], dict[str, str], int]:
        size = os.fstat(self._file.fileno()).st_size
        raw = self._file.read(8)
        if len(raw) < 8:
            raise ModelLoadError(f"{self.path.name} is not a safetensors file (it is only {size} bytes).")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(_MAX_HEADER, size - 8):
            raise ModelLoadError(f"{self.path.name} is not a valid safetensors file (bad header length).")
        try:
            header = json.loads(self._file.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{self.path.name} is not a valid safetensors file (unreadable header).") from error
        metadata = header.pop("__metadata__", None) or {}
        data_start = 8 + header_len
        for key, entry in header.items():
            begin, end = entry["data_offsets"]
            if data_start + end > size:
                raise ModelLoadError(
                    f"{self.path.name} is truncated: tensor {key} ends at byte {data_start + end} "
                    f"but the file has {size} bytes. Download or copy it again."
                )
            if entry["dtype"] not in _SAFETENSORS_DTYPES:
                raise ModelLoadError(f"{self.path.name}: tensor {key} has unsupported dtype {entry['dtype']}.")
        return header, metadata, data_start

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(entry["shape"]) for key, entry in self._entries.items()}

    def dtypes(self) -> dict[str, torch.dtype]:
        return {key: _SAFETENSORS_DTYPES[entry["dtype"]] for key, entry in self._entries.items()}

    def _pread(self, key: str, buffer: torch.Tensor) -> None:
        begin, end = self._entries[key]["data_offsets"]
        view = buffer.numpy().data[: end - begin]  # the array's memoryview
        done = 0
        while done < end - begin:  # one pread stops at 2 GiB on Linux
            count = os.preadv(self._file.fileno(), [view[done:]], self._data_start + begin + done)
            if count <= 0:
                raise ModelLoadError(f"{self.path.name} is truncated inside tensor {key}.")
            done += count

    def read(self, key: str) -> torch.Tensor:
        """One tensor, in a buffer of its own. Safe to call from several threads at once (pread)."""
        entry = self._entries[key]
        begin, end = entry["data_offsets"]
        buffer = torch.empty(end - begin, dtype=torch.uint8)
        self._pread(key, buffer)
        return buffer.view(_SAFETENSORS_DTYPES[entry["dtype"]]).reshape(entry["shape"])

    def read_as(self, key: str, dtype: torch.dtype, staging: Staging) -> torch.Tensor:
        """One tensor converted to `dtype`, allocating only the result: same dtype reads straight
        into it; another goes through the caller's reusable staging buffer (no per-tensor
        temporaries, so no page faults and heap churn for them)."""
        entry = self._entries[key]
        stored = _SAFETENSORS_DTYPES[entry["dtype"]]
        if stored == dtype or not stored.is_floating_point:
            return self.read(key)
        begin, end = entry["data_offsets"]
        raw = staging.get(end - begin)
        self._pread(key, raw)
        out = torch.empty(entry["shape"], dtype=dtype)
        out.copy_(raw[: end - begin].view(stored).reshape(entry["shape"]))
        return out

    def close(self) -> None:
        self._file.close()


class StateDictFile:
    """Tensors already in memory (a `.ckpt` unpickled safely, or a dict built in code)."""

    def __init__(self, path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self._tensors = dict(tensors)
        self.metadata = metadata or {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(t.shape) for key, t in self._tensors.items()}

    def read(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def read_as(self, key: str, dtype: torch.dtype, staging: Staging) -> torch.Tensor:
        t = self._tensors[key]
        return t.to(dtype) if t.is_floating_point() else t

    def close(self) -> None:
        self._tensors.clear()


def load_pickle_checkpoint(path: Path) -> StateDictFile:
    """Loads a `.ckpt`/`.pt` with `weights_only=True`: plain tensors and containers, never code."""
    path = Path(path)
    try:
        mmap = zipfile.is_zipfile(path)
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{path.name} was refused: it is a pickle that would run code or build objects other than "
            "tensors when loaded. Nothing from it was executed. Use a .safetensors version of this model."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read {path.name}: it is corrupt or not a PyTorch checkpoint ({error}).") from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} does not contain a state dict.")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path.name} contains no tensors.")
    return StateDictFile(path, tensors)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for name in archive.namelist())


def read_weights_file(path: Path, what: str) -> object:
    """What a model file of kind `what` ("upscaler", "ControlNet"...) holds: a dict of tensors from
    `.safetensors`; from `.pth`/`.pt`/`.ckpt`, what torch's restricted unpickler (`weights_only`)
    builds, never code (a pickle that would run code, and a TorchScript archive, are refused)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"The {what} file {path.name} is missing: it was moved or deleted.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            tensors = SafetensorsFile(path)
            try:
                return {key: tensors.read(key) for key in tensors.shapes()}
            finally:
                tensors.close()
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelLoadError(f"Cannot read the {what} {path.name}: the file is corrupt or truncated ({error}).") from error
    if suffix not in (".pth", ".pt", ".ckpt", ".bin"):
        raise ModelLoadError(f"The {what} {path.name} has an unsupported file type {suffix} (use .safetensors or .pth).")
    if _is_torchscript(path):
        raise UnsafeCheckpointError(
            f"The {what} {path.name} was refused: it is a TorchScript file, which runs its own code when loaded. "
            "Use a .pth or .safetensors version of this model."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"The {what} {path.name} was refused: it is a pickle that would run code or build objects other than "
            "tensors when loaded. Nothing from it was executed. Use a .safetensors version of this model."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"Cannot read the {what} {path.name}: the file is corrupt or truncated ({error}).") from error


def open_tensor_file(path: Path) -> TensorFile:
    """Opens a single-file checkpoint or VAE by its extension."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.name} does not exist or is not a file.")
    if path.suffix == ".safetensors":
        return SafetensorsFile(path)
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        return load_pickle_checkpoint(path)
    raise ModelLoadError(f"{path.name}: unsupported file type {path.suffix} (use .safetensors or .ckpt).")


def write_safetensors(path: Path, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str] | None = None) -> None:
    """Writes tensors atomically (temp file + rename), so a half-written file never has the final name."""
    items = {key: t.detach().contiguous().cpu() for key, t in tensors}
    plan = [(key, t.dtype, tuple(t.shape)) for key, t in items.items()]
    write_safetensors_streamed(path, plan, items.__getitem__, metadata)


def write_safetensors_streamed(path: Path, plan: list[tuple[str, torch.dtype, tuple[int, ...]]],
                               produce: "Callable[[str], torch.Tensor]", metadata: dict[str, str] | None = None) -> None:
    """Writes a safetensors file whose tensors are made one at a time: `plan` names each tensor's
    key, dtype and shape (the header is written first from it), then `produce(key)` gives each in
    turn, so only one output tensor is in memory at once. Atomic (temp file + rename); a
    produced tensor whose dtype or shape differs from the plan raises before the file gets its name."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for key, dtype, shape in plan:
        nbytes = torch.Size(shape).numel() * torch.empty(0, dtype=dtype).element_size()
        header[key] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)

    def write(out: BinaryIO) -> None:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for key, dtype, shape in plan:
            tensor = produce(key).detach().contiguous().cpu()
            if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"{key}: made {tensor.dtype} {tuple(tensor.shape)}, planned {dtype} {tuple(shape)}")
            if tensor.numel():
                out.write(tensor.reshape(-1).view(torch.uint8).numpy().data)

    write_atomically(path, write)
