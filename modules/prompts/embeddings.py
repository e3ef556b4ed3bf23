"""Textual-inversion embeddings: files in models/embeddings whose vectors stand in for a word.

The trigger is the file stem (A1111): "EasyNegative.safetensors" is used by writing EasyNegative in
a prompt. Formats read (all with torch's weights-only loader or safetensors, never unpickling code):
- A1111 / SD webui `.pt`: {"string_to_param": {"*": (n, C)}, "name", "step", "sd_checkpoint", "sd_checkpoint_name"};
- `.safetensors` with "emb_params" (A1111's own), or SDXL's two sets "clip_l" (768) and "clip_g" (1280);
- diffusers `.bin` / `.safetensors`: one {token: (C,) or (n, C)} entry.
A file that cannot be read is listed as skipped with the reason; the others load.

The hash is the sha256 of the whole file; infotexts write its first 12 hex digits ("TI hashes").
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

EXTENSIONS = (".pt", ".bin", ".safetensors")


@dataclass
class Embedding:
    name: str  # the trigger: the file stem
    path: Path
    vectors: dict[str, torch.Tensor]  # "clip_l" / "clip_g" for SDXL files, "" for a single set; each (n, C)
    sha256: str
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def shorthash(self) -> str:
        return self.sha256[:12]

    @property
    def count(self) -> int:
        """How many token positions it takes in a prompt."""
        return next(iter(self.vectors.values())).shape[0]

    def for_width(self, width: int) -> torch.Tensor | None:
        """The vectors for a text encoder of hidden size `width` (SDXL: clip_l 768, clip_g 1280)."""
        matching = [v for v in self.vectors.values() if v.shape[-1] == width]
        return matching[0] if matching else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_matrix(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2) or not value.is_floating_point():
        raise ValueError(f"{what} is not a vector or a matrix of vectors")
    return (value[None] if value.dim() == 1 else value).detach().float().cpu()


def read_vectors(data: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(vectors by set name, facts) from a loaded embedding file's dict; ValueError if it holds none."""
    if "string_to_param" in data:
        params = data["string_to_param"]
        if not isinstance(params, dict) or not params:
            raise ValueError("its string_to_param is empty")
        facts = {k: data.get(k) for k in ("step", "sd_checkpoint", "sd_checkpoint_name")}
        return {"": _as_matrix(next(iter(params.values())), "string_to_param")}, facts
    if "emb_params" in data:
        return {"": _as_matrix(data["emb_params"], "emb_params")}, {}
    if "clip_l" in data or "clip_g" in data:
        return {key: _as_matrix(data[key], key) for key in ("clip_l", "clip_g") if key in data}, {}
    tensors = [(k, v) for k, v in data.items() if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:
        return {"": _as_matrix(tensors[0][1], tensors[0][0])}, {}
    raise ValueError("it holds no embedding vectors Easel knows (string_to_param, emb_params, clip_l/clip_g or one token)")


def load_embedding(path: Path) -> Embedding:
    """The embedding in `path`; ValueError with the reason when it is not one."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: dict[str, Any] = load_file(str(path))
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable, truncated, or a pickle that would run code
        raise ValueError(f"cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(data, dict):
        raise ValueError("it is not a dictionary of tensors")
    vectors, facts = read_vectors(data)
    step = facts.get("step")
    return Embedding(
        path.stem, path, vectors, _file_sha256(path), step=int(step) if isinstance(step, (int, float)) else None,
        sd_checkpoint=facts.get("sd_checkpoint") if isinstance(facts.get("sd_checkpoint"), str) else None,
        sd_checkpoint_name=facts.get("sd_checkpoint_name") if isinstance(facts.get("sd_checkpoint_name"), str) else None,
    )


@dataclass
class EmbeddingLibrary:
    """The embeddings of a folder (recursive), reloaded by `refresh()` without a restart.
    `version` grows with every refresh, so prompt caches keyed by it never serve stale vectors."""

    folder: Path
    embeddings: dict[str, Embedding] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it was not loaded
    version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _triggers: dict[tuple[int, int], dict[int, list[tuple[tuple[int, ...], Embedding]]]] = field(default_factory=dict, repr=False)

    def refresh(self) -> None:
        found: dict[str, Embedding] = {}
        skipped: dict[str, str] = {}
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()) if self.folder.is_dir() else []
        for path in files:
            if path.stem in found:
                skipped[path.stem] = f"another file is already named {path.stem!r} ({found[path.stem].path.name})"
                continue
            try:
                found[path.stem] = load_embedding(path)
            except ValueError as error:
                skipped[path.stem] = f"{path.name} {error}"
                log.warning("Embedding %s skipped: %s", path, error)
        with self._lock:
            self.embeddings, self.skipped = found, skipped
            self.version += 1
            self._triggers = {}

    def triggers(self, tokenizer: Any, width: int) -> dict[int, list[tuple[tuple[int, ...], Embedding]]]:
        """first token id -> [(the trigger's token ids, embedding)], longest first, for the
        embeddings that fit a text encoder of hidden size `width`."""
        key = (id(tokenizer), width)
        with self._lock:
            cached = self._triggers.get(key)
            if cached is not None:
                return cached
            table: dict[int, list[tuple[tuple[int, ...], Embedding]]] = {}
            for embedding in self.embeddings.values():
                if embedding.for_width(width) is None:
                    continue
                ids = tuple(tokenizer(embedding.name, add_special_tokens=False)["input_ids"])
                if ids:
                    table.setdefault(ids[0], []).append((ids, embedding))
            for entries in table.values():
                entries.sort(key=lambda entry: -len(entry[0]))
            self._triggers[key] = table
            return table
