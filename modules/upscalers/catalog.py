"""What upscalers are installed, under the names A1111 lists them by.

The built-ins `None`, `Lanczos` and `Nearest` come first, then one entry per model file in A1111's
folders (`models/ESRGAN`, `models/RealESRGAN`, `models/SwinIR`, `models/DAT`, `models/HAT`,
`models/ScuNET`, or the folders given by `--esrgan-models-path` and friends), sorted by lower-cased
name. A file is listed by its stem, except the files A1111 downloads for its built-in entries,
which keep A1111's names (`RealESRGAN_x4plus.pth` is "R-ESRGAN 4x+"), so infotexts and API clients
that name them find them. Folders are read on every call: a file dropped in shows up at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from modules.errors import ModelNotFoundError

NONE = "None"
LANCZOS = "Lanczos"
NEAREST = "Nearest"
BUILT_IN = (NONE, LANCZOS, NEAREST)
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")

# (folder under models/, its command-line flag): the folders A1111 reads upscaler models from.
FOLDERS: tuple[tuple[str, str], ...] = (
    ("ESRGAN", "--esrgan-models-path"),
    ("RealESRGAN", "--realesrgan-models-path"),
    ("SwinIR", "--swinir-models-path"),
    ("DAT", "--dat-models-path"),
    ("HAT", "--hat-models-path"),
    ("ScuNET", "--scunet-models-path"),
)

# Stems of the files A1111 downloads for its built-in entries -> (A1111's name, its scale).
A1111_FILES: dict[str, tuple[str, int]] = {
    "realesrgan_x4plus": ("R-ESRGAN 4x+", 4),
    "realesrgan_x4plus_anime_6b": ("R-ESRGAN 4x+ Anime6B", 4),
    "realesr-general-x4v3": ("R-ESRGAN General 4xV3", 4),
    "realesr-general-wdn-x4v3": ("R-ESRGAN General WDN 4xV3", 4),
    "realesr-animevideov3": ("R-ESRGAN AnimeVideo", 4),
    "realesrgan_x2plus": ("R-ESRGAN 2x+", 2),
    "swinir_4x": ("SwinIR 4x", 4),
    "003_realsr_bsrgan_dfowmfc_s64w8_swinir-l_x4_gan": ("SwinIR 4x", 4),
    "scunet_color_real_gan": ("ScuNET GAN", 1),
    "scunet_color_real_psnr": ("ScuNET PSNR", 1),
    "dat_x2": ("DAT x2", 2),
    "dat_x3": ("DAT x3", 3),
    "dat_x4": ("DAT x4", 4),
}
_SCALE_IN_NAME = re.compile(r"(?:^|[^a-z0-9]|sr)x([1-8])(?![0-9])|(?:^|[^a-z0-9])([1-8])x(?![a-z0-9])", re.IGNORECASE)  # "4x-", "_x2", "SRx2"


class UnknownUpscalerError(ModelNotFoundError):
    """No upscaler of that name is installed."""


@dataclass(frozen=True)
class UpscalerEntry:
    name: str
    path: Path | None  # None for the built-ins
    scale: int  # as listed (A1111's fixed scale, or read from the name); the model's own decides when it runs
    folder: str = ""  # "ESRGAN", "RealESRGAN"...; "" for the built-ins

    @property
    def is_model(self) -> bool:
        return self.path is not None


def listed_scale(stem: str, folder: str) -> int:
    """The scale A1111 would list: its built-in file's, else a `2x`/`x2` in the name, else 4
    (ScuNET denoises at 1x)."""
    known = A1111_FILES.get(stem.lower())
    if known:
        return known[1]
    match = _SCALE_IN_NAME.search(stem)
    if match:
        return int(match.group(1) or match.group(2))
    return 1 if folder == "ScuNET" else 4


class UpscalerCatalog:
    """The installed upscalers, read from `folders` (name -> directory) on each call."""

    def __init__(self, folders: Mapping[str, Path]):
        self.folders = dict(folders)

    def _files(self) -> Iterable[tuple[str, Path]]:
        for folder, directory in self.folders.items():
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES and not path.name.startswith("."):
                    yield folder, path

    def entries(self) -> list[UpscalerEntry]:
        """Built-ins, then the model files by lower-cased name. Two files of one name: the
        `.safetensors` wins (it cannot run code), else the first folder in A1111's order."""
        models: dict[str, UpscalerEntry] = {}
        for folder, path in self._files():
            known = A1111_FILES.get(path.stem.lower())
            name = known[0] if known else path.stem
            entry = UpscalerEntry(name, path, listed_scale(path.stem, folder), folder)
            held = models.get(name)
            if held is None or (path.suffix.lower() == ".safetensors" and held.path is not None and held.path.suffix.lower() != ".safetensors"):
                models[name] = entry
        built_in = [UpscalerEntry(name, None, 4 if name != NONE else 1) for name in BUILT_IN]
        return built_in + sorted(models.values(), key=lambda e: e.name.lower())

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries()]

    def find(self, name: str) -> UpscalerEntry:
        """The entry named `name` (exactly, else ignoring case, as A1111's SD upscale script does)."""
        entries = self.entries()
        for entry in entries:
            if entry.name == name:
                return entry
        folded = [entry for entry in entries if entry.name.lower() == str(name).lower()]
        if len(folded) == 1:
            return folded[0]
        folders = ", ".join(f"models/{folder}" for folder, _ in FOLDERS)
        raise UnknownUpscalerError(
            f"No upscaler named {name!r} is installed (available: {', '.join(e.name for e in entries)}). "
            f"Put its model file in one of {folders}."
        )
