"""The list of checkpoints and VAEs on disk, with A1111's names, titles, hashes and lookup rules.

Requests name models; they never carry paths. Every lookup resolves a name against this list, so
nothing a user sends can reach a file outside the scanned folders.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from modules.checkpoints.hashing import HashCache, legacy_hash
from modules.errors import ModelNotFoundError
from modules.i18n import N_

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors")


@dataclass(frozen=True)
class ModelFile:
    """A checkpoint or VAE on disk: a single file, or a diffusers folder (checkpoints only)."""

    kind: Literal["checkpoint", "vae"]
    path: Path
    name: str  # path relative to its scanned folder, "/"-separated, with extension (A1111's "name")

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def stem(self) -> str:
        """File name without folder or extension: infotext `Model`, API `sd_model_name`."""
        return self.path.name if self.is_folder else self.path.stem

    @property
    def model_name(self) -> str:
        """A1111's `model_name`: the relative path without extension, "/" replaced by "_"."""
        base = self.name if self.is_folder else self.name.rsplit(".", 1)[0]
        return base.replace("/", "_")

    def weight_files(self) -> list[Path]:
        """The files whose bytes make up the model's hash."""
        if not self.is_folder:
            return [self.path]
        files = [p for p in sorted(self.path.rglob("*.safetensors")) if p.name in _DIFFUSERS_WEIGHTS]
        unet = [p for p in files if p.parent.name == "unet"]
        return unet or files or [self.path / "model_index.json"]


def _scan(root: Path, suffixes: tuple[str, ...], kind: Literal["checkpoint", "vae"], with_folders: bool) -> list[ModelFile]:
    if not root.is_dir():
        return []
    found: list[ModelFile] = []
    folders: list[Path] = []
    if with_folders:
        folders = [p.parent for p in root.rglob("model_index.json")]
    for path in sorted(root.rglob("*")):
        if any(folder in path.parents for folder in folders):
            continue
        if path.is_file() and path.suffix in suffixes and not path.name.startswith("."):
            if kind == "checkpoint" and ".vae." in path.name:
                continue
            found.append(ModelFile(kind, path, path.relative_to(root).as_posix()))
    found += [ModelFile(kind, folder, folder.relative_to(root).as_posix()) for folder in folders]
    return sorted(found, key=lambda m: m.name.lower())


class ModelRegistry:
    """Scans checkpoint and VAE folders; names, hashes and finds models."""

    def __init__(
        self, checkpoint_dirs: list[Path], vae_dirs: list[Path], hash_cache: HashCache, extra_checkpoints: Sequence[Path] = (),
        fallback_checkpoints: Sequence[Path] = (),
    ):
        self.checkpoint_dirs = [Path(d) for d in checkpoint_dirs]
        self.vae_dirs = [Path(d) for d in vae_dirs]
        # Single files named on the command line (`--ckpt`): listed without scanning their folder,
        # which for a file in ~/Downloads would list everything beside it.
        self.extra_checkpoints = [Path(p) for p in extra_checkpoints]
        # Listed only while nothing else is (Easel's bundled demo model): a fresh install has a model.
        self.fallback_checkpoints = [Path(p) for p in fallback_checkpoints]
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self.checkpoints: list[ModelFile] = []
        self.vaes: list[ModelFile] = []
        self.refresh()

    def refresh(self) -> None:
        """Rescans the folders (new files appear, deleted ones go)."""
        checkpoints: list[ModelFile] = []
        vaes: list[ModelFile] = []
        for root in self.checkpoint_dirs:
            checkpoints += _scan(root, CHECKPOINT_SUFFIXES, "checkpoint", with_folders=True)
            vaes += [
                ModelFile("vae", p, p.name)
                for p in sorted(root.rglob("*.vae.*")) if p.is_file() and p.suffix in VAE_SUFFIXES
            ]
        listed = {entry.path.resolve() for entry in checkpoints}
        for path in self.extra_checkpoints:
            if path.is_file() and path.resolve() not in listed:
                checkpoints.append(ModelFile("checkpoint", path, path.name))
                vaes += [ModelFile("vae", p, p.name) for p in sorted(path.parent.glob(f"{path.stem}.vae.*")) if p.suffix in VAE_SUFFIXES]
        if not checkpoints:
            checkpoints = [ModelFile("checkpoint", p, p.name) for p in self.fallback_checkpoints if p.is_file()]
        for root in self.vae_dirs:
            vaes += _scan(root, VAE_SUFFIXES, "vae", with_folders=False)
        unique_vaes: dict[str, ModelFile] = {}
        for vae in vaes:
            unique_vaes.setdefault(vae.path.name, ModelFile("vae", vae.path, vae.path.name))
        with self._lock:
            self.checkpoints = checkpoints
            self.vaes = sorted(unique_vaes.values(), key=lambda m: m.name.lower())

    def entry_for_path(self, path: Path) -> ModelFile | None:
        """The listed checkpoint at `path`, if any."""
        resolved = Path(path).resolve()
        return next((e for e in self.checkpoints if e.path.resolve() == resolved), None)

    # hashes -------------------------------------------------------------------------------------

    def _cache_key(self, entry: ModelFile) -> str:
        return f"{entry.kind}/{entry.name}"

    def sha256(self, entry: ModelFile) -> str:
        """The full sha256 (computed once, then cached on disk)."""
        return self.hash_cache.sha256(self._cache_key(entry), entry.weight_files())

    def known_sha256(self, entry: ModelFile) -> str | None:
        """The sha256 if it is already cached; never reads the file."""
        try:
            return self.hash_cache.get(self._cache_key(entry), entry.weight_files())
        except OSError:
            return None

    def shorthash(self, entry: ModelFile, compute: bool = False) -> str | None:
        """First 10 hex digits of the sha256 (`Model hash`); None if unknown and not computed."""
        value = self.sha256(entry) if compute else self.known_sha256(entry)
        return value[:10] if value else None

    def legacy_hash(self, entry: ModelFile) -> str:
        return legacy_hash(entry.weight_files()[0])

    def title(self, entry: ModelFile) -> str:
        """A1111's title: `name [shorthash]`, or just the name until the hash is known."""
        short = self.shorthash(entry)
        return f"{entry.name} [{short}]" if short else entry.name

    # lookup -------------------------------------------------------------------------------------

    def find_checkpoint(self, query: str) -> ModelFile:
        """Finds a checkpoint by title, name, stem or model_name, hash, then unique substring."""
        return self._find(query, self.checkpoints, N_("checkpoint"), self.checkpoint_dirs)

    def find_vae(self, query: str) -> ModelFile:
        """Finds a VAE by file name, stem or relative name, then unique substring."""
        return self._find(query, self.vaes, N_("VAE"), self.vae_dirs)

    def _find(self, query: str, entries: list[ModelFile], what: str, folders: list[Path]) -> ModelFile:
        query = query.strip()
        bare = query.rsplit(" [", 1)[0] if query.endswith("]") else query
        for entry in entries:
            if query == self.title(entry) or bare in (entry.name, entry.stem, entry.model_name, entry.path.name):
                return entry
        lowered = query.lower()
        if len(lowered) >= 8 and all(c in "0123456789abcdef" for c in lowered):
            for entry in entries:
                known = self.known_sha256(entry)
                if known and (known.startswith(lowered)):
                    return entry
            for entry in entries:
                if len(lowered) == 8 and self.legacy_hash(entry) == lowered:
                    return entry
        matches = [e for e in entries if bare.lower() in e.name.lower()]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(e.name for e in entries[:10]) or "none"
        where = " or ".join(f"{d.parent.name}/{d.name}" for d in folders[:2]) or "models/"
        if matches:
            several = ", ".join(m.name for m in matches[:5])
            raise ModelNotFoundError(f"Several {what} files match '{query}' in {where}: {several}. Write more of the name.")
        raise ModelNotFoundError(f"No {what} named '{query}' in {where} (available: {names}). Press refresh after adding files.")

    def automatic_vae(self, checkpoint: ModelFile) -> ModelFile | None:
        """A1111's "Automatic": the first VAE whose file name starts with the checkpoint's stem
        (one named exactly `<stem>.<ext>` or `<stem>.vae.<ext>` wins over e.g. `<stem>-anime.vae.pt`)."""
        candidates = [v for v in self.vaes if v.path.name.startswith(checkpoint.stem)]
        exact = [v for v in candidates if v.path.name.startswith(checkpoint.stem + ".")]
        matches = exact or candidates
        return matches[0] if matches else None
