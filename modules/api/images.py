"""Images in and out of the API: base64 (bare or as a `data:image/...;base64,` URI) in, bare base64
out with the infotext embedded (a `data:` prefix breaks webuiapi and most A1111 clients).

Decoding checks, in this order, that the text is base64, that the bytes are an image, that it is
not larger than `max_input_megapixels` (read from the header, before the pixels are decoded), and
that it decodes completely. Each failure is an ApiInputError (422) naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from modules.api.errors import ApiInputError
from modules.infotext.embed import image_bytes_with_infotext
from modules.uploads import pixel_limit_problem

_DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def strip_data_uri(text: str) -> str:
    """The base64 part of a `data:` URI; bare base64 is returned as it is (whitespace removed)."""
    text = text.strip()
    match = _DATA_URI.match(text)
    if match is not None:
        text = text[match.end():]
    return _WHITESPACE.sub("", text)


def decode_base64(text: object, field: str) -> bytes:
    """The bytes of a base64 text (standard or URL-safe alphabet, padding optional)."""
    if not isinstance(text, str) or not text.strip():
        raise ApiInputError(f"{field} is empty: send a base64-encoded PNG, JPEG or WebP image.")
    if text.lstrip().lower().startswith(("http://", "https://")):
        raise ApiInputError(f"{field} is a URL; Easel does not fetch images from URLs: send the image itself, base64-encoded.")
    data = strip_data_uri(text)
    data += "=" * (-len(data) % 4)
    try:
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(data.encode("ascii"))
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as error:
        raise ApiInputError(f"{field} is not valid base64 ({error}); send the image as base64 or a data:image/...;base64, URI.") from error


def decode_image(text: object, field: str, max_megapixels: float) -> Image.Image:
    """A fully loaded PIL image from base64 text (see the module docstring)."""
    data = decode_base64(text, field)
    too_large = pixel_limit_problem(data, max_megapixels, field)  # from the header: a bomb is never decoded
    if too_large:
        raise ApiInputError(too_large)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ApiInputError(f"{field} is an empty image ({width}x{height} pixels).")
            if width * height / 1e6 > max_megapixels:
                raise ApiInputError(
                    f"{field} is {width}x{height} ({width * height / 1e6:.1f} megapixels); the largest allowed is "
                    f"{max_megapixels:g} megapixels (setting max_input_megapixels)."
                )
            image.load()
    except ApiInputError:
        raise
    except UnidentifiedImageError as error:
        raise ApiInputError(f"{field} decodes to {len(data)} bytes that are not an image Easel can read; send a PNG, JPEG or WebP.") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ApiInputError(f"{field} is too large to open safely ({error}).") from error
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError) as error:
        raise ApiInputError(f"{field} is a damaged or cut-off image ({error}).") from error
    return image


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_image(image: Image.Image, infotext: str | None, fmt: str = "png", quality: int = 80) -> str:
    """Bare base64 of `image` in `fmt` (png, jpg, webp) with `infotext` stored where A1111 puts it."""
    return encode_b64(image_bytes_with_infotext(image, infotext or "", fmt, quality=quality))


def encode_png_with_chunks(image: Image.Image, chunks: dict[str, str]) -> str:
    """Bare base64 PNG carrying the given text chunks (extras keep `parameters` and add `postprocessing`)."""
    info = PngInfo()
    for key, value in chunks.items():
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return encode_b64(buffer.getvalue())
