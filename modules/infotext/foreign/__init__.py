"""Generation parameters from images made by A1111 and other tools, summarised in A1111's terms.

1. The image is opened as ``embed`` opens it (a damaged file raises its UnreadableImageError) and
   its metadata gathered into one dict: PNG text chunks as PIL reads them, the Exif UserComment
   under "parameters" (as A1111 reads it), ComfyUI's ``prompt:<json>`` Exif tags (WebP) and
   Fooocus's Exif UserComment + MakerNote scheme (JPEG/WebP).
2. Each reader in :data:`READERS` (one small class per tool) looks for its tool's keys and returns
   :class:`ImageParameters` or None; the first answer wins. Broken JSON or an unexpected
   structure makes a reader answer None, never raise.
3. Nothing recognised: source "unknown" with every text chunk in ``raw``.

Key names follow each tool's source: ComfyUI's API graph (``prompt``; ``workflow`` is only kept
raw), InvokeAI's ``invokeai_metadata`` (3.x, 4/5), ``sd-metadata`` (2.x) and ``Dream`` (1.x),
NovelAI's ``Description`` + ``Comment``, Fooocus's ``parameters`` JSON with ``fooocus_scheme``.
"""

from __future__ import annotations

import logging
from typing import Any

from PIL import Image

from modules.infotext.embed import ImageSource, infotext_from_image, opened_image
from modules.infotext.foreign.a1111 import A1111Reader
from modules.infotext.foreign.comfyui import ComfyUIReader
from modules.infotext.foreign.common import (
    _COMFY_EXIF_TAG,
    _EXIF_ERRORS,
    _EXIF_IFD,
    _FOOOCUS_SCHEMES,
    _MAKER_NOTE,
    _USER_COMMENT,
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    IMAGE_SIZE_KEY,
    INVOKEAI_SCHEDULERS,
    NO_METADATA_NOTE,
    ImageParameters,
    MetadataReader,
    synthesise_infotext,
    text_chunks,
)
from modules.infotext.foreign.fooocus import FooocusReader
from modules.infotext.foreign.invokeai import InvokeAIReader
from modules.infotext.foreign.novelai import NovelAIReader

log = logging.getLogger(__name__)

__all__ = ["ImageParameters", "MetadataReader", "READERS", "read_info", "image_info", "read_image_parameters", "synthesise_infotext", "text_chunks", "COMFY_SAMPLERS", "COMFY_SCHEDULERS", "INVOKEAI_SCHEDULERS", "IMAGE_SIZE_KEY", "NO_METADATA_NOTE"]


READERS: tuple[MetadataReader, ...] = (FooocusReader(), A1111Reader(), ComfyUIReader(), InvokeAIReader(), NovelAIReader())


# --- reading an image ----------------------------------------------------------------------------


def read_info(info: dict[str, Any], readers: tuple[MetadataReader, ...] = READERS) -> ImageParameters:
    """The first reader's answer for ``info``, else source "unknown" with the raw text chunks."""
    for reader in readers:
        try:
            found = reader.read(info)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as error:
            # A structure no reader test foresaw: show it raw rather than fail the whole page.
            log.warning("Could not read %s metadata (%s: %s); showing it raw.", reader.name, type(error).__name__, error)
            continue
        if found is not None:
            return found
    raw = text_chunks(info)
    return ImageParameters("unknown", raw=raw, note="" if raw else NO_METADATA_NOTE)


def image_info(image: Image.Image) -> dict[str, Any]:
    """``image.info`` plus the metadata other tools keep in Exif (see the module docstring)."""
    # Pillow keys IPTC datasets by (record, tag) tuples (bytes values no reader looks at); readers go by name.
    info: dict[str, Any] = {key: value for key, value in (image.info or {}).items() if isinstance(key, str)}
    info[IMAGE_SIZE_KEY] = image.size
    if not isinstance(info.get("parameters"), str):
        text = infotext_from_image(image)
        if text:
            info["parameters"] = text
    if "exif" not in info:
        return info
    try:
        exif = image.getexif()
        tags: dict[int, Any] = {**exif.get_ifd(_EXIF_IFD), **dict(exif)}  # Fooocus writes to IFD0
    except _EXIF_ERRORS as error:
        log.warning("Ignoring damaged Exif data (%s); the image's pixels are fine.", error)
        return info
    for tag in range(0x0110, 0x0100, -1):  # ComfyUI: "prompt:" in 0x0110, "workflow:" in 0x010F, ...
        match = _COMFY_EXIF_TAG.match(tags[tag]) if isinstance(tags.get(tag), str) else None
        if match is not None:
            info.setdefault(match.group(1), match.group(2))
    scheme = _exif_text(tags.get(_MAKER_NOTE))
    if scheme in _FOOOCUS_SCHEMES:
        info.setdefault("fooocus_scheme", scheme)
        comment = _exif_text(tags.get(_USER_COMMENT))
        if comment and "parameters" not in info:
            info["parameters"] = comment
    return info


def _exif_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        if value[:8] in (b"ASCII\0\0\0", b"UNICODE\0", b"\0" * 8):
            encoding = "utf-16-be" if value.startswith(b"UNICODE") else "utf-8"
            return value[8:].decode(encoding, errors="replace").strip("\0").strip()
        return value.decode("utf-8", errors="replace").strip("\0").strip()
    return value.strip() if isinstance(value, str) else None


def read_image_parameters(source: ImageSource) -> ImageParameters:
    """How the image in ``source`` (a path, bytes, a binary file or an opened PIL image) was
    made, as far as its metadata says. Raises UnreadableImageError for a missing, non-image or
    damaged file; metadata it cannot make sense of is returned raw, never raised."""
    with opened_image(source) as image:
        info = image_info(image)
    return read_info(info)
