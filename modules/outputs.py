"""Saving finished images under outputs/, named as A1111 1.10.1 names them.

Layout: ``<outputs>/<task>-images/<YYYY-MM-DD>/<NNNNN>-<pattern>.<ext>``, e.g.
``txt2img-images/2024-05-01/00042-1234.png``. ``NNNNN`` is one more than the highest number that
starts a file name in that folder (A1111's ``get_next_sequence_number``); the rest is A1111's file
name pattern (``[seed]`` by default) with its tags expanded (:data:`TAGS`). Unknown tags stay as
written, as in A1111.

Every file is written to a temporary name in the same folder and then renamed (modules/files.py),
so a crash never leaves a half-written image under a real name. The number is claimed by creating
``NNNNN.tmp`` exclusively, so two jobs (or two Easel processes) saving at once never get the same
number; that file is then the image's temporary name.
"""

from __future__ import annotations

import logging
import os
import re
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image

from modules.errors import UserError
from modules.files import NEW_FILE_MODE, write_atomically
from modules.infotext.create import format_value
from modules.infotext.embed import image_bytes_with_infotext, image_format

if TYPE_CHECKING:
    from modules.generation.request import GenerationRequest

DEFAULT_PATTERN = "[seed]"
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
MAX_PROMPT_WORDS = 8  # A1111 option directories_max_prompt_words
MAX_PART_LENGTH = 128  # A1111 max_filename_part_length: one tag's text
MAX_NAME_BYTES = 200  # whole file name; file systems allow 255, the rest is head room
TEMP_SUFFIX = ".tmp"
LEFTOVER_AGE_S = 600.0  # a temporary file this old is a killed save's, not one in progress

_INVALID_CHARS = '#<>:"/\\|?*\n\r\t' + "".join(chr(c) for c in range(32)) + "\x7f"
_NON_LETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
_PATTERN_ARG = re.compile(r"(.*)<([^>]*)>$")
_TASK = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LEADING_NUMBER = re.compile(r"^(\d+)")
_LEFTOVER = re.compile(r"^\d{5,}\.tmp$|^\d{5,}-.*\.txt\.tmp$")
log = logging.getLogger(__name__)


def sanitize_filename_part(text: str, replace_spaces: bool = True) -> str:
    """A1111's ``sanitize_filename_part``: characters file systems refuse become "_", leading
    spaces and trailing spaces/dots go, and the text is cut to 128 characters."""
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(c): "_" for c in _INVALID_CHARS})
    return text.lstrip(" ")[:MAX_PART_LENGTH].rstrip(" .")


@dataclass(frozen=True)
class FilenameFields:
    """What file name tags are made from. Fields left None leave their tag as written."""

    seed: int
    prompt: str
    model_name: str | None
    when: datetime
    model_hash: str | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None


def _prompt_words(fields: FilenameFields) -> str:
    words = [word for word in _NON_LETTERS.split(fields.prompt) if word] or ["empty"]
    return sanitize_filename_part(" ".join(words[:MAX_PROMPT_WORDS]), replace_spaces=False)


def _datetime(fields: FilenameFields, *args: str) -> str:
    """[datetime], [datetime<%Y-%m-%d_%H-%M>], [datetime<fmt><Europe/Paris>] as in A1111."""
    time_format = args[0] if args and args[0] else DEFAULT_TIME_FORMAT
    when = fields.when
    if len(args) > 1:
        try:
            when = when.astimezone(ZoneInfo(args[1]))
        except (ZoneInfoNotFoundError, ValueError):
            pass  # A1111 also falls back to local time for an unknown zone
    try:
        text = when.strftime(time_format)
    except ValueError:
        text = when.strftime(DEFAULT_TIME_FORMAT)
    return sanitize_filename_part(text, replace_spaces=False)


def _optional(value: object | None, transform: Callable[[str], str] = str) -> str | None:
    return None if value is None else transform(format_value(value))


# Tag (lower case) -> its text for these fields and the tag's <arguments>; None keeps "[tag]".
TAGS: dict[str, Callable[..., str | None]] = {
    "seed": lambda f: str(f.seed),
    "prompt": lambda f: sanitize_filename_part(f.prompt),
    "prompt_spaces": lambda f: sanitize_filename_part(f.prompt, replace_spaces=False),
    "prompt_words": _prompt_words,
    "negative_prompt": lambda f: _optional(f.negative_prompt, sanitize_filename_part),
    "model_name": lambda f: _optional(f.model_name, lambda t: sanitize_filename_part(t, replace_spaces=False)),
    "model_hash": lambda f: _optional(f.model_hash and f.model_hash[:10]),
    "date": lambda f: f.when.strftime("%Y-%m-%d"),
    "datetime": _datetime,
    "steps": lambda f: _optional(f.steps),
    "sampler": lambda f: _optional(f.sampler, sanitize_filename_part),
    "scheduler": lambda f: _optional(f.scheduler, sanitize_filename_part),
    "cfg": lambda f: _optional(f.cfg_scale),
    "width": lambda f: _optional(f.width),
    "height": lambda f: _optional(f.height),
    "clip_skip": lambda f: _optional(f.clip_skip),
    "none": lambda f: "",
}


def expand_pattern(pattern: str, fields: FilenameFields) -> str:
    """A1111's ``FilenameGenerator.apply``: each ``[tag]`` or ``[tag<arg>...]`` replaced by its
    text, unknown tags kept as written."""
    result = ""
    for match in _PATTERN.finditer(pattern):
        text, tag = match.groups()
        if tag is None:
            result += text
            continue
        args: list[str] = []
        name = tag
        while (arg_match := _PATTERN_ARG.match(name)) is not None:
            name, arg = arg_match.groups()
            args.insert(0, arg)
        tag_function = TAGS.get(name.lower())
        replacement = tag_function(fields, *args) if tag_function is not None else None
        result += text + (f"[{tag}]" if replacement is None else replacement)
    return result


def _bounded_name(number: int, decoration: str, extension: str) -> str:
    """``NNNNN-decoration.ext`` with the decoration cut so the name fits in MAX_NAME_BYTES."""
    decoration = sanitize_filename_part(decoration, replace_spaces=False) if decoration else ""
    head = f"{number:05}"
    while decoration:
        name = f"{head}-{decoration}.{extension}"
        if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
            return name
        decoration = decoration[:-1].rstrip(" .")
    return f"{head}.{extension}"


def _number_of(file_name: str) -> int | None:
    match = _LEADING_NUMBER.match(file_name)
    return int(match.group(1)) if match else None


def next_number(folder: Path) -> int:
    """One more than the highest number that starts a file name in ``folder`` (0 when none)."""
    numbers = [n for entry in os.listdir(folder) if (n := _number_of(entry)) is not None]
    return max(numbers, default=-1) + 1


class OutputWriter:
    """Writes finished images with their infotext under one outputs folder. Thread-safe: one
    writer may be shared by every job; separate writers or processes also never collide."""

    def __init__(self, outputs_dir: Path):
        self.outputs_dir = Path(outputs_dir)
        self._lock = threading.Lock()

    def folder(self, task: str, when: datetime, kind: str = "images") -> Path:
        """Where ``task``'s images (or grids, ``kind="grids"``) of that day go:
        ``<outputs>/<task>-<kind>/<YYYY-MM-DD>``."""
        if not _TASK.match(task):
            raise UserError(f"'{task}' is not a valid task name for the outputs folder (use letters, digits, - or _).")
        if kind not in ("images", "grids"):
            raise ValueError(f"kind must be images or grids, not {kind!r}")
        return self.outputs_dir / f"{task}-{kind}" / when.strftime("%Y-%m-%d")

    def save(
        self,
        image: Image.Image,
        infotext: str,
        *,
        task: str = "txt2img",
        fmt: str = "png",
        pattern: str = DEFAULT_PATTERN,
        seed: int,
        prompt: str,
        model_name: str | None,
        when: datetime | None = None,
        request: "GenerationRequest | None" = None,
        model_hash: str | None = None,
        quality: int = 95,
        kind: str = "images",
        chunks: dict[str, str] | None = None,
    ) -> Path:
        """Saves ``image`` with ``infotext`` and returns its path.

        pattern: A1111's file name pattern (see :data:`TAGS`). request: where [steps], [sampler],
        [cfg], [width], [height]... come from (without it those tags stay as written, except the
        size, which is then the image's). when: the time used for the folder and the date tags
        (default: now). kind: "grids" saves under ``<task>-grids``. chunks: more PNG text chunks."""
        # 1. Check the names and encode outside the lock (the slow part).
        when = when or datetime.now()
        folder = self.folder(task, when, kind)
        _, extension = image_format(fmt)
        data = image_bytes_with_infotext(image, infotext, fmt, quality, chunks)
        decoration = expand_pattern(pattern, self._fields(image, seed, prompt, model_name, model_hash, when, request))

        # 2. Claim a number (its NNNNN.tmp), write the bytes through that file, then rename it into place.
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            number, temp_path = self._claim(folder)
        final_path = folder / _bounded_name(number, decoration, extension)
        # A full disk or a kill: the temporary file goes, no real name is half-written.
        write_atomically(final_path, lambda file: self._write(file, data), fsync=True, temporary=temp_path)
        return final_path

    def _write(self, file: BinaryIO, data: bytes) -> None:
        """Writes an image's bytes to its open temporary file (apart, so a test can fill the disk half-way)."""
        file.write(data)

    def remove_leftovers(self, older_than_s: float = LEFTOVER_AGE_S) -> list[Path]:
        """Deletes the temporary files (``NNNNN.tmp``) a killed save left in the outputs folders and
        returns their paths. Only those older than `older_than_s`: a younger one may be a save in
        progress in another Easel process on the same folder (a save takes well under a second)."""
        removed = []
        now = time.time()
        for path in self.outputs_dir.glob(f"*-*/*/*{TEMP_SUFFIX}"):
            if not _LEFTOVER.match(path.name) or path.parent.parent.name.rsplit("-", 1)[-1] not in ("images", "grids"):
                continue
            try:
                if now - path.stat().st_mtime >= older_than_s and path.is_file():
                    path.unlink()
                    removed.append(path)
            except OSError as error:  # gone already, or not ours to delete: leave it
                log.warning("Could not remove the leftover %s: %s", path, error)
        return removed

    @staticmethod
    def _fields(
        image: Image.Image,
        seed: int,
        prompt: str,
        model_name: str | None,
        model_hash: str | None,
        when: datetime,
        request: "GenerationRequest | None",
    ) -> FilenameFields:
        if request is None:
            return FilenameFields(seed, prompt, model_name, when, model_hash, width=image.width, height=image.height)
        return FilenameFields(
            seed,
            prompt,
            model_name,
            when,
            model_hash,
            negative_prompt=request.negative_prompt,
            steps=request.steps,
            sampler=request.sampler_name,
            scheduler=request.scheduler,
            cfg_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            clip_skip=request.clip_skip,
        )

    @staticmethod
    def _claim(folder: Path) -> tuple[int, Path]:
        """The next free number, with ``NNNNN.tmp`` created exclusively as its claim.

        A number counts as taken while any file starting with it exists; the temporary file keeps
        it taken until the renamed image does. Checking again after the claim catches a writer in
        another process that renamed its file between our listing and our claim."""
        number = next_number(folder)
        while True:
            temp_path = folder / f"{number:05}{TEMP_SUFFIX}"
            try:
                os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
            except FileExistsError:
                number += 1
                continue
            if any(_number_of(entry) == number for entry in os.listdir(folder) if entry != temp_path.name):
                temp_path.unlink(missing_ok=True)
                number = next_number(folder)
                continue
            return number, temp_path


def write_text_atomically(path: Path, text: str) -> None:
    """A sidecar file (the image's infotext as .txt), written through ``<name>.tmp`` (a name
    :meth:`OutputWriter.remove_leftovers` knows) and renamed into place."""
    write_atomically(path, text, temporary=path.with_name(path.name + TEMP_SUFFIX))
