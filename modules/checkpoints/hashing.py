"""Model hashes exactly as A1111 computes them, with an on-disk cache so a restart does not rehash.

- sha256 of the whole file; its first 10 hex digits are the "shorthash" in titles and `Model hash`.
- The legacy hash: sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits.
The cache (`cache.json` in the data dir, A1111's shape: `hashes["checkpoint/<name>"]`) is keyed by
the entry name and stays valid while the file's path, size and mtime are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from modules.files import move_aside, write_atomically

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_files(paths: list[Path]) -> str:
    """Hex sha256 of several files' bytes in order (a diffusers folder's weight files)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def legacy_hash(path: Path) -> str:
    """A1111's old model hash: sha256 of the 64 KiB at offset 1 MiB, 8 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(0x100000)
        digest.update(f.read(0x10000))
    return digest.hexdigest()[:8]


class HashCache:
    """sha256 values remembered across restarts, invalidated when a file's size or mtime changes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            hashes = data.get("hashes", {})
            if not isinstance(hashes, dict):
                raise ValueError("'hashes' is not an object")
            return hashes
        except (OSError, ValueError, AttributeError) as error:
            try:
                aside = move_aside(self.path)  # cache.json.corrupt, .corrupt.1 ...: earlier ones kept
                log.warning("Hash cache %s is unreadable (%s); moved it to %s and starting afresh.", self.path, error, aside)
            except OSError as move_error:  # a damaged cache must not stop start-up: it is rewritten on the next hash
                log.warning("Hash cache %s is unreadable (%s) and could not be moved aside (%s); starting afresh.",
                            self.path, error, move_error)
            return {}

    @staticmethod
    def _stamp(paths: list[Path]) -> tuple[int, float]:
        stats = [p.stat() for p in paths]
        return sum(s.st_size for s in stats), max(s.st_mtime for s in stats)

    def get(self, key: str, paths: list[Path]) -> str | None:
        """The cached sha256 for `key` if the files are unchanged since it was computed."""
        entry = self._data.get(key)
        if not entry:
            return None
        size, mtime = self._stamp(paths)
        if entry.get("path") != str(paths[0]) or entry.get("size") != size or entry.get("mtime") != mtime:
            return None
        return entry.get("sha256")

    def sha256(self, key: str, paths: list[Path]) -> str:
        """The sha256 of the files, from the cache or computed (and then stored)."""
        cached = self.get(key, paths)
        if cached:
            return cached
        size, mtime = self._stamp(paths)
        value = sha256_of_file(paths[0]) if len(paths) == 1 else sha256_of_files(paths)
        with self._lock:
            self._data[key] = {"path": str(paths[0]), "size": size, "mtime": mtime, "sha256": value}
            self._write()
        return value

    def _write(self) -> None:
        write_atomically(self.path, json.dumps({"hashes": self._data}, indent=1))
