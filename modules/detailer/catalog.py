"""The detectors the detailer can use: the files in models/adetailer (sub-folders too) and each
`--ad-extra-models-dir`, listed by file name as ADetailer lists them (`face_yolov8n.pt`,
`easel-face-mtcnn.safetensors`, ...). YOLO files (ultralytics `.pt` read without running the pickle,
or Easel's safetensors export) run on modules/detailer/yolo; MTCNN files on modules/detailer/faces.

ADetailer's mediapipe names are refused with a sentence: mediapipe 1.x ships no face models, and
0.10 brings packages that clash with Easel's (it is not installed)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Iterable

from modules.detailer.detection import Detector, DetectorError
from modules.errors import ModelNotFoundError

SUFFIXES = (".pt", ".pth", ".safetensors")
MEDIAPIPE_NAMES = ("mediapipe_face_full", "mediapipe_face_short", "mediapipe_face_mesh", "mediapipe_face_mesh_eyes_only")
CACHE_SIZE = 2


def _is_mtcnn(path: Path) -> bool:
    if path.suffix.lower() != ".safetensors":
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as opened:
            return str((opened.metadata() or {}).get("architecture", "")).startswith("MTCNN")
    except (OSError, ValueError, RuntimeError):
        return False


class DetectorCatalog:
    """Detector files under `folders`, read on each call; the last two used stay loaded."""

    def __init__(self, folders: Iterable[Path]):
        self.folders = [Path(folder) for folder in folders]
        self._loaded: OrderedDict[tuple[Path, float, int], Detector] = OrderedDict()

    def files(self) -> dict[str, Path]:
        """File name -> path (the first folder wins when two hold one name)."""
        found: dict[str, Path] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in SUFFIXES:
                    found.setdefault(path.name, path)
        return found

    def names(self) -> list[str]:
        return sorted(self.files(), key=str.lower)

    def path(self, name: str, where: str = "ad_model") -> Path:
        files = self.files()
        if name in files:
            return files[name]
        lowered = {key.lower(): value for key, value in files.items()}
        for candidate in (name.lower(), f"{name.lower()}.pt", f"{name.lower()}.safetensors"):
            if candidate in lowered:
                return lowered[candidate]
        if name in MEDIAPIPE_NAMES:
            raise DetectorError(f"{where}: {name} is one of ADetailer's mediapipe detectors, which Easel cannot run (mediapipe 1.x ships no "
                                "face models and is not installed); use easel-face-mtcnn.safetensors or a face_yolov8 file instead.")
        available = ", ".join(self.names()) or "none"
        raise ModelNotFoundError(f"{where}: no detector named {name!r} in models/adetailer (available: {available}).")

    def detector(self, name: str, where: str = "ad_model") -> Detector:
        """The loaded detector for `name` (from the cache while its file is unchanged)."""
        path = self.path(name, where)
        stat = path.stat()
        key = (path, stat.st_mtime, stat.st_size)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        detector: Detector
        if _is_mtcnn(path):
            from modules.detailer.faces import FaceDetector

            detector = FaceDetector(path)
        else:
            from modules.detailer.yolo.detector import YoloDetector

            detector = YoloDetector(path)
        self._loaded[key] = detector
        while len(self._loaded) > CACHE_SIZE:
            self._loaded.popitem(last=False)
        return detector
