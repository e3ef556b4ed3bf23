"""Reading YOLO detector files without running them: ultralytics `.pt` pickles and Easel's `.safetensors`.

**`.pt` (ultralytics).** ultralytics saves a checkpoint as a pickle of whole Python objects: a dict
(`model`, `ema`, `train_args`, `date`, `version`...) whose model is a `DetectionModel` or
`SegmentationModel` object. `torch.load` would import ultralytics and build those objects, and a
crafted file could make it call anything. We read the pickle with our own unpickler instead
(`_RestrictedUnpickler`): it resolves only the names on its allow-list, and none of them runs the
file's code:

- the globals of `ultralytics.*` and `torch.nn.modules.*` classes (and `numpy` scalars, `pathlib`
  paths, found in the training metadata) become inert records: the class's name and the state the
  file gives it; nothing of the real class is imported or called;
- tensors are rebuilt by our own functions from the archive's raw storages (`torch._utils`
  `_rebuild_tensor_v2` / `_rebuild_parameter` / `_rebuild_parameter_with_state`, `torch.*Storage`,
  `torch._tensor._rebuild_from_type_v2`), with `collections.OrderedDict`, `set`, `frozenset`,
  `torch.Size`, `torch.device` and `_codecs.encode` (latin-1 bytes) as plain data;
- any other global (`os.system`, `builtins.eval`, `subprocess.*`...) stops the read with an error
  naming the file and the global: nothing from the file was executed.

From the records come the architecture dict (`yaml`), the class names, the strides and the flat state
dict (`model.0.conv.weight`...). As ultralytics does, the `ema` model is used when the file has one,
else `model`. The input size is the one it was trained at (`train_args["imgsz"]`, else 640), which is
what ultralytics' predict uses for a file.

**`.safetensors` (Easel's YOLO format).** The state dict under ultralytics' names (fp16 or fp32) and
in the header's `__metadata__`: `easel.kind` = `yolo`; `yolo.architecture` = the architecture dict as
JSON; `yolo.names` = JSON object of class index -> name (`{"0": "face"}`); `yolo.stride` = JSON list
of strides (`[8, 16, 32]`); `yolo.imgsz` = the input size as a decimal string; `yolo.task` = `detect`
or `segment` (informative). Other keys (`license`, training facts) are kept as they are.
`save_safetensors` writes one; `load_yolo_file(pt)` then `save_safetensors` converts a `.pt`.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from modules.checkpoints.tensor_files import SafetensorsFile, write_safetensors
from modules.detailer.detection import DetectorError
from modules.errors import ModelLoadError

DEFAULT_IMGSZ = 640
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}
_RECORDED_EXACT = {
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"), ("pathlib", "PureWindowsPath"),
}
_RECORDED_PREFIXES = ("ultralytics.", "torch.nn.modules.", "numpy.dtypes")
MODEL_CLASSES = ("DetectionModel", "SegmentationModel")


class DetectorFileError(DetectorError):
    """A detector file that cannot be read, or that was refused because it would run code."""


class _Refused(pickle.UnpicklingError):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class Record:
    """An object of an allowed class, kept as its class name and state; the class is never imported."""

    qualname: ClassVar[str] = ""
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> "Record":
        record = super().__new__(cls)
        record.args, record.state = args, None
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @property
    def name(self) -> str:
        return self.qualname.rpartition(".")[2]

    def attributes(self) -> dict[str, Any]:
        """The object's __dict__ as the file gives it (a state with slots is (dict, slots))."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        return state if isinstance(state, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _check_ints(*values: Any) -> None:
    for value in values:
        items = value if isinstance(value, (tuple, list)) else (value,)
        if not all(isinstance(v, int) for v in items):
            raise _Refused("a tensor with a malformed size or stride")


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise _Refused("a tensor built on something other than a storage")
    _check_ints(offset, size, stride)
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _Refused("a parameter that is not a tensor")
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> torch.Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise _Refused("a tensor rebuilt by an unknown function")
    return func(*args)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "latin"):
        raise _Refused("_codecs.encode with other than latin-1 text")
    return text.encode("latin-1")


_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): lambda *args: tuple(*args),
    ("torch", "device"): lambda *args: str(args[0]) if args else "cpu",
    ("_codecs", "encode"): _latin1,
}
_MARKERS = {("torch", "Tensor"), ("torch._tensor", "Tensor"), ("torch.nn.parameter", "Parameter")}  # a rebuilt tensor's type, never called
_TENSOR_TYPE = "tensor type"


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals (see the module docstring); storages come from the archive."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix
        try:
            self._big_endian = archive.read(f"{prefix}byteorder").strip() == b"big"
        except KeyError:  # files from before torch 1.12 have no byteorder record: little-endian
            self._big_endian = False
        self._records: dict[str, type[Record]] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) in _MARKERS:
            return _TENSOR_TYPE
        if name.isidentifier() and ((module, name) in _RECORDED_EXACT or module.startswith(_RECORDED_PREFIXES)):
            qualname = f"{module}.{name}"
            if qualname not in self._records:
                self._records[qualname] = type(name, (Record,), {"qualname": qualname})
            return self._records[qualname]
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise _Refused("an unknown persistent object")
        _, kind, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError as error:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from error
            size = torch.empty(0, dtype=kind.dtype).element_size()
            if not isinstance(numel, int) or len(raw) < numel * size:
                raise pickle.UnpicklingError(f"storage {key} is shorter than it says")
            raw = raw[: numel * size]
            if not raw:
                self._storages[key] = torch.empty(0, dtype=kind.dtype)
            elif self._big_endian and size > 1:
                self._storages[key] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, size).flip(1).contiguous().view(kind.dtype).view(-1)
            else:
                self._storages[key] = torch.frombuffer(bytearray(raw), dtype=kind.dtype)
        return self._storages[key]


@dataclass
class YoloFile:
    """What a YOLO detector file holds, ready to build and load a `YoloNetwork`."""

    path: Path
    architecture: dict[str, Any]
    names: dict[int, str]
    state_dict: dict[str, torch.Tensor]
    stride: list[float] = field(default_factory=lambda: [8.0, 16.0, 32.0])
    imgsz: int = DEFAULT_IMGSZ
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def task(self) -> str:
        head = (list(self.architecture.get("head") or []) or [[None, None, ""]])[-1]
        return "segment" if str(head[2]) == "Segment" else "detect"


def _unpickle_archive(path: Path) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DetectorFileError(
            f"Cannot read the detector {path.name}: it is not a PyTorch (zip) checkpoint. Use a YOLOv8 .pt file saved by "
            "ultralytics 8 or an Easel YOLO .safetensors file."
        ) from error
    with archive:
        names = archive.namelist()
        if any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names):
            raise DetectorFileError(f"The detector {path.name} was refused: it is a TorchScript file, which runs its own code when loaded.")
        pickles = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if not pickles:
            raise DetectorFileError(f"Cannot read the detector {path.name}: the archive has no data.pkl (it is not a PyTorch checkpoint).")
        prefix = pickles[0][: -len("data.pkl")]
        unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix)
        try:
            return unpickler.load()
        except _Refused as error:
            raise DetectorFileError(
                f"The detector {path.name} was refused: loading it would use {error.what}, which a model file never needs. "
                "Nothing from it was executed. Use the original file from its publisher, or an Easel YOLO .safetensors file."
            ) from error
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError, IndexError, KeyError) as error:
            raise DetectorFileError(f"Cannot read the detector {path.name}: the file is corrupt or truncated ({error}).") from error


def _flatten(record: Record, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """The state dict of a module record: its parameters, persistent buffers, then its children's."""
    if depth > 64:
        raise DetectorFileError("The detector's module tree is nested too deeply to be a YOLO network.")
    state = record.attributes()
    for name, value in (state.get("_parameters") or {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and name not in skip:
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, Record):
            _flatten(child, f"{prefix}{name}.", out, depth + 1)


def _names(value: Any) -> dict[int, str]:
    if isinstance(value, (list, tuple)):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    return {}


def _imgsz(*sources: Any) -> int:
    for source in sources:
        args = source.attributes() if isinstance(source, Record) else source
        value = args.get("imgsz") if isinstance(args, dict) else None
        if isinstance(value, (list, tuple)) and value:
            value = max(value)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_IMGSZ


def _from_checkpoint(path: Path, data: Any) -> YoloFile:
    checkpoint = data if isinstance(data, dict) else {"model": data}
    model = checkpoint.get("ema") or checkpoint.get("model")  # what ultralytics loads: the EMA weights when present
    if not isinstance(model, Record):
        raise DetectorFileError(f"The detector {path.name} holds no YOLO model (its checkpoint has neither 'model' nor 'ema').")
    if model.name == "WorldModel":
        raise DetectorFileError(
            f"The detector {path.name} is a YOLO-World model: its classes come from a CLIP text encoder, which Easel does not run. "
            "Use a detection or segmentation model such as face_yolov8n.pt or person_yolov8n-seg.pt."
        )
    if model.name not in MODEL_CLASSES:
        raise DetectorFileError(
            f"The detector {path.name} holds a {model.name}; Easel runs YOLOv8 detection and segmentation models "
            "(DetectionModel, SegmentationModel) only."
        )
    attributes = model.attributes()
    architecture = attributes.get("yaml")
    if not isinstance(architecture, dict):
        raise DetectorFileError(f"The detector {path.name} does not record its architecture (the model has no yaml dict).")
    state: dict[str, torch.Tensor] = {}
    _flatten(model, "", state)
    stride = attributes.get("stride")
    strides = [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else [8.0, 16.0, 32.0]
    names = _names(attributes.get("names")) or {i: str(i) for i in range(int(architecture.get("nc", 1)))}
    return YoloFile(path, architecture, names, state, strides, _imgsz(checkpoint.get("train_args"), attributes.get("args")))


def _from_safetensors(path: Path) -> YoloFile:
    try:
        tensors = SafetensorsFile(path)
    except ModelLoadError as error:
        raise DetectorFileError(str(error)) from error
    try:
        metadata = dict(tensors.metadata)
        if metadata.get("easel.kind") != "yolo" or "yolo.architecture" not in metadata:
            raise DetectorFileError(
                f"The detector {path.name} is a safetensors file without Easel's YOLO metadata (yolo.architecture, yolo.names). "
                "Convert the ultralytics .pt file with modules.detailer.yolo.files.save_safetensors."
            )
        try:
            architecture = json.loads(metadata["yolo.architecture"])
            names = _names(json.loads(metadata.get("yolo.names", "{}")))
            stride = [float(s) for s in json.loads(metadata.get("yolo.stride", "[8, 16, 32]"))]
            imgsz = int(metadata.get("yolo.imgsz", DEFAULT_IMGSZ))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise DetectorFileError(f"The detector {path.name} has unreadable YOLO metadata ({error}).") from error
        try:
            state = {key: tensors.read(key) for key in tensors.shapes()}
        except (OSError, ModelLoadError) as error:
            raise DetectorFileError(f"Cannot read the detector {path.name}: the file is corrupt or truncated ({error}).") from error
    finally:
        tensors.close()
    if not isinstance(architecture, dict):
        raise DetectorFileError(f"The detector {path.name} has unreadable YOLO metadata (the architecture is not a dict).")
    return YoloFile(path, architecture, names or {0: "object"}, state, stride, imgsz, metadata)


def load_yolo_file(path: Path) -> YoloFile:
    """The architecture, class names, strides, input size and weights of a YOLO `.pt` or `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise DetectorFileError(f"The detector file {path.name} is missing: it was moved or deleted.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _from_safetensors(path)
    if suffix in (".pt", ".pth"):
        return _from_checkpoint(path, _unpickle_archive(path))
    raise DetectorFileError(f"The detector {path.name} has an unsupported file type {suffix} (use .pt or .safetensors).")


def save_safetensors(path: Path, model: YoloFile, metadata: dict[str, str] | None = None, dtype: torch.dtype | None = torch.float16) -> None:
    """Writes `model` in Easel's YOLO safetensors format (module docstring); floating tensors as `dtype`
    (None: as they are). `metadata` adds keys (a licence, training facts)."""
    try:
        architecture = json.dumps(model.architecture)
    except (TypeError, ValueError) as error:
        raise DetectorFileError(f"The architecture of {model.path.name} cannot be written as JSON ({error}).") from error
    header = {
        **(metadata or {}),
        "easel.kind": "yolo",
        "yolo.architecture": architecture,
        "yolo.names": json.dumps({str(k): v for k, v in model.names.items()}),
        "yolo.stride": json.dumps(model.stride),
        "yolo.imgsz": str(model.imgsz),
        "yolo.task": model.task,
    }
    tensors = ((k, v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in model.state_dict.items())
    write_safetensors(Path(path), tensors, header)
