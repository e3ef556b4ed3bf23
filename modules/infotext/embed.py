"""Storing infotext in image files and reading it back, where A1111 1.10.1 puts it.

- PNG: a text chunk named ``parameters`` (tEXt, or iTXt when the text is not Latin-1).
- JPEG and WebP: the Exif ``UserComment`` tag (0x9286), ``b"UNICODE\\0"`` followed by UTF-16BE,
  written with piexif. Readers such as sd-prompt-reader and sd-parsers need exactly that prefix.
- GIF (reading only): the ``comment`` extension.

Reading takes ``parameters`` first, then the Exif comment. A file that is not an image, or is
damaged, raises :class:`UnreadableImageError` with a sentence, never a PIL traceback.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import piexif
import piexif.helper
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from modules.errors import UserError

log = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"
# File format name -> (PIL format, file extension). "jpeg" is accepted and saved as .jpg.
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "png"),
    "jpg": ("JPEG", "jpg"),
    "jpeg": ("JPEG", "jpg"),
    "webp": ("WEBP", "webp"),
}
# Image modes each lossy format stores; others are converted to RGB (A1111 drops alpha for JPEG).
# WebP drops alpha as A1111 does (an RGBA JPEG/WebP is taken for NovelAI's alpha-channel format by
# sd-prompt-reader, which then ignores the Exif comment).
_STORABLE_MODES = {"JPEG": ("L", "RGB", "CMYK"), "WEBP": ("RGB",)}
# A JPEG APP1 segment holds at most 65535 bytes, 2 of them the length itself.
_MAX_JPEG_EXIF = 65533
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_EXIF_HEADER = b"Exif\x00\x00"
_EXIF_IFD = 0x8769  # the IFD0 pointer to the Exif IFD, where UserComment lives

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


class UnreadableImageError(UserError):
    """A file given as an image is missing, is not an image, or is damaged."""


class ImageSaveError(UserError):
    """An image could not be encoded in the requested format."""


def image_format(fmt: str) -> tuple[str, str]:
    """(PIL format, file extension) for "png", "jpg"/"jpeg" or "webp" in any case."""
    found = FORMATS.get(fmt.lower().lstrip("."))
    if found is None:
        raise ImageSaveError(f"Images can be saved as png, jpg or webp, not '{fmt}'.")
    return found


def exif_with_user_comment(text: str) -> bytes:
    """Exif bytes holding only ``text`` as a UNICODE UserComment, as A1111 writes them."""
    comment = piexif.helper.UserComment.dump(text, encoding="unicode")
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})


def image_bytes_with_infotext(image: Image.Image, text: str, fmt: str, quality: int = 95, chunks: dict[str, str] | None = None) -> bytes:
    """``image`` encoded as ``fmt`` (png, jpg/jpeg, webp) with ``text`` stored as A1111 stores
    it. An empty ``text`` stores nothing. ``quality`` applies to JPEG and WebP. ``chunks``: more
    PNG text chunks (Extras' `postprocessing` and `extras`); JPEG and WebP keep only ``text``."""
    pil_format, _ = image_format(fmt)
    text = well_formed(text)
    buffer = io.BytesIO()
    if pil_format == "PNG":
        info = PngInfo()
        for key, value in (({PARAMETERS_KEY: text} if text else {}) | dict(chunks or {})).items():
            if _is_latin1(value):
                info.add_text(key, value)
            else:
                info.add_itxt(key, value)
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    if image.mode not in _STORABLE_MODES[pil_format]:
        image = image.convert("RGB")
    options: dict[str, object] = {"quality": quality}
    if text:
        exif = exif_with_user_comment(text)
        if pil_format == "JPEG" and len(exif) > _MAX_JPEG_EXIF:
            raise ImageSaveError(
                f"The generation parameters ({len(text)} characters) are too long to fit in a JPEG file; "
                "save as PNG or WebP instead."
            )
        options["exif"] = exif
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def well_formed(text: str) -> str:
    """``text`` with lone surrogates (JSON allows "\\ud800" in a prompt) made U+FFFD and split
    pairs joined: neither UTF-8 (PNG iTXt) nor UTF-16 (Exif) can store a lone surrogate, so PNG
    raised UnicodeEncodeError and JPEG/WebP wrote "?"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def infotext_from_image(image: Image.Image) -> str | None:
    """The infotext an opened image carries: PNG ``parameters``, else the Exif UserComment, else a
    GIF comment; None when it has none."""
    info = image.info or {}
    parameters = info.get(PARAMETERS_KEY)
    if isinstance(parameters, (str, bytes)):
        return parameters.decode("utf-8", errors="replace") if isinstance(parameters, bytes) else str(parameters)
    exif = info.get("exif")
    if isinstance(exif, bytes) and exif:
        comment = _user_comment(exif)
        if comment:
            return comment
    comment = info.get("comment")
    if isinstance(comment, bytes) and comment:
        return comment.decode("utf-8", errors="replace")
    return None


def _user_comment(exif: bytes) -> str | None:
    """The Exif UserComment as text (UNICODE, ASCII or JIS prefix; else UTF-8, as A1111).

    Parsed with PIL's Exif reader, which checks every count against the data there: piexif.load
    trusts a damaged tag's count and can spend minutes and gigabytes on a 1 kB file."""
    if not exif.startswith(_TIFF_HEADERS) and not exif.startswith(_EXIF_HEADER):
        log.warning("Ignoring Exif data that does not start with an Exif or TIFF header.")
        return None
    try:
        tags = Image.Exif()
        tags.load(exif)  # takes the data with or without "Exif\0\0" (WebP's chunk has none)
        comment = tags.get_ifd(_EXIF_IFD).get(piexif.ExifIFD.UserComment, b"")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, KeyError, IndexError, TypeError) as error:
        log.warning("Ignoring damaged Exif data (%s); the image's pixels are fine.", error)
        return None
    if isinstance(comment, str):
        comment = comment.encode("utf-8")
    if not isinstance(comment, bytes) or not comment:
        return None
    try:
        return piexif.helper.UserComment.load(comment)
    except ValueError:
        return comment.decode("utf-8", errors="ignore")


def read_infotext(source: ImageSource) -> str | None:
    """The infotext stored in an image file (a path, bytes, a binary file object or an opened
    PIL image); None when the image has none. Raises UnreadableImageError when the file is
    missing, not an image or damaged."""
    if isinstance(source, Image.Image):
        return infotext_from_image(source)
    with opened_image(source) as image:
        return infotext_from_image(image)


@contextmanager
def opened_image(source: ImageSource) -> Iterator[Image.Image]:
    """The image in ``source`` (a path, bytes, a binary file object, or an opened PIL image,
    given back as is), fully loaded so that metadata stored after the pixels is in ``info``.
    Raises UnreadableImageError when the file is missing, not an image or damaged, also for
    such errors while the ``with`` block reads the image's metadata."""
    if isinstance(source, Image.Image):
        yield source
        return
    name = _describe(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            try:
                image.load()  # metadata after the pixel data (PNG chunks after IDAT) arrives with it
            except (IndexError, KeyError) as error:
                # PIL's chunk readers index short chunks unchecked: an empty iCCP after IDAT raised
                # IndexError (Image.open turns such errors into "unidentified", load does not).
                raise UnreadableImageError(f"{name} is damaged and cannot be read ({type(error).__name__}: {error}).") from error
            yield image
    except FileNotFoundError as error:
        where = str(source) if isinstance(source, (str, os.PathLike)) else name
        raise UnreadableImageError(f"There is no file at {where}.") from error
    except IsADirectoryError as error:
        raise UnreadableImageError(f"{name} is a folder, not an image file.") from error
    except UnidentifiedImageError as error:
        raise UnreadableImageError(f"{name} is not an image Easel can read; choose a PNG, JPEG or WebP file.") from error
    except Image.DecompressionBombError as error:
        raise UnreadableImageError(f"{name} is too large to open safely ({error}).") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise UnreadableImageError(f"{name} is damaged or cut off and cannot be read ({error}).") from error


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{Path(source).name}'"
    file_name = getattr(source, "name", None)
    return f"'{Path(file_name).name}'" if isinstance(file_name, str) else "The uploaded file"
