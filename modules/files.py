"""Writing a file so that a crash never leaves half of it, and keeping a damaged file for the user.

Settings, the hash cache, styles, models, tokenizer files, images and their text files are all
written one way (:func:`write_atomically`): the bytes go to a temporary file in the target's folder,
which is renamed over the target only once complete. ``os.replace`` is atomic within one file
system, so a crash, a kill or a full disk mid-write leaves the old file or the new one, never half
a file, and an error leaves no temporary file behind. The new file keeps the old one's permissions
(a new one gets 0o644 less the umask), never ``mkstemp``'s 0600.

A file Easel cannot read (damaged settings, hash cache or history database) is renamed out of the
way (:func:`move_aside`), never deleted or overwritten: it may hold the user's only copy of
something, and a second damaged file must not replace the first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

TEMP_SUFFIX = ".tmp"
NEW_FILE_MODE = 0o644  # less the umask, which the OS applies when it creates the file
_ATTEMPTS = 100  # random temporary names tried before giving up (mkstemp tries more, for /tmp)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)

Data = Union[bytes, str, Callable[[BinaryIO], object]]


def write_atomically(
    path: str | os.PathLike[str],
    data: Data,
    *,
    fsync: bool = False,
    mode: int | None = None,
    temporary: str | os.PathLike[str] | None = None,
) -> None:
    """Replaces the file at `path` whole with `data`, creating its folder if missing.

    data: bytes, text (written as UTF-8) or a function that writes to the open binary file.
    fsync: flush the bytes to the disk before the rename (for files a power cut must not lose).
    mode: the new file's permissions; None keeps the existing file's, or 0o644 less the umask.
    temporary: the temporary file to write through, in `path`'s folder (created or truncated);
    None makes a fresh hidden one (modules/outputs.py names its own, which its clean-up knows).
    On any error the temporary file is removed and the error raised; `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and path.exists():
        mode = path.stat().st_mode & 0o777
    temp = Path(temporary) if temporary is not None else None
    try:
        if temp is None:
            descriptor, temp = _create_temporary(path)
        else:
            descriptor = os.open(temp, _OPEN_FLAGS | os.O_TRUNC, NEW_FILE_MODE)
        with os.fdopen(descriptor, "wb") as file:
            if callable(data):
                data(file)
            else:
                file.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:  # a full disk, a failing writer or a kill signal: no half file, no leftover
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new ``.<name>.<random>.tmp`` beside `path`, opened for writing. Created with os.open and
    NEW_FILE_MODE rather than mkstemp, so the OS applies the umask (no process-wide umask change)."""
    attempts = 0
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(temp, _OPEN_FLAGS | os.O_EXCL, NEW_FILE_MODE), temp
        except FileExistsError:
            attempts += 1
            if attempts >= _ATTEMPTS:
                raise


def move_aside(path: str | os.PathLike[str], suffix: str = ".corrupt") -> Path:
    """Renames a damaged file to ``<name><suffix>`` (then ``<name><suffix>.1``, ``.2`` ...), never
    over an earlier one, and returns the new path. Raises OSError when it cannot be moved: the
    caller decides whether that stops it."""
    path = Path(path)
    aside, number = path.with_name(path.name + suffix), 0
    while os.path.lexists(aside):
        number += 1
        aside = path.with_name(f"{path.name}{suffix}.{number}")
    os.rename(path, aside)  # to a name just seen free: nothing is overwritten (bar a race with another process)
    return aside
