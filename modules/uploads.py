"""Limits on what a request may send: its size in bytes (every route: API, page, uploads) and an
image's size in pixels, read from its header before any pixel is decoded.

- `RequestSizeLimit` is an ASGI middleware in front of the whole app. A body whose Content-Length
  is over `--max-upload-mb` is answered 413 before a byte of it is read; a body sent without a
  length (chunked) is counted as it arrives and cut off the same way.
- `image_header_size` / `pixel_limit_problem` read only the header of a picture (PIL's `open` is
  lazy), so a 20,000 x 20,000 PNG of a few KB is refused without allocating its 1.2 GB.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_UPLOAD_MB = 50.0  # a 25-megapixel PNG in base64 with its mask fits


def too_large_sentence(size: int | None, limit: int) -> str:
    sent = f"{size / 1e6:.1f} MB" if size is not None else "more"
    return (f"The request is too large: {sent} sent, the largest accepted is {limit / 1e6:g} MB "
            f"(start Easel with --max-upload-mb to change it).")


class _TooLarge(Exception):
    pass


class RequestSizeLimit:
    """Answers 413 with a sentence (A1111's error JSON) to a request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await _answer_413(send, too_large_sentence(length, self.max_bytes))
            return
        received = 0
        over = False  # once the body passed the limit, whatever the app answers becomes our 413
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if over:  # e.g. FastAPI turns the failed read into a 400: the client gets the 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer_413(send, too_large_sentence(None, self.max_bytes))
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if not started:
                started = True
                await _answer_413(send, too_large_sentence(None, self.max_bytes))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_413(send: Send, sentence: str) -> None:
    body = json.dumps({"error": "RequestTooLarge", "detail": sentence, "body": "", "errors": ""}).encode("utf-8")
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii")),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def image_header_size(source: str | Path | bytes | BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the picture's header, or None when it is not an image PIL knows.
    Nothing past the header is decoded."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                return image.size
    except Image.DecompressionBombError as error:  # over twice PIL's own limit: the size is in its message
        return _size_from_bomb_error(source, error)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None


def _size_from_bomb_error(source: str | Path | bytes | BinaryIO, error: Exception) -> tuple[int, int]:
    """PIL refuses to even open a picture over 2x MAX_IMAGE_PIXELS; the header's size is read
    again through a parser that stops at the header (PNG's IHDR) or reported as unknown-huge."""
    if isinstance(source, bytes):
        data = source[:64]
    elif isinstance(source, (str, Path)):
        with open(source, "rb") as file:
            data = file.read(64)
    else:
        source.seek(0)
        data = source.read(64)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return (1 << 20, 1 << 20)  # unknown, and certainly larger than any limit


def pixel_limit_problem(source: str | Path | bytes | BinaryIO, max_megapixels: float, what: str = "The picture") -> str | None:
    """A sentence when the picture is larger than `max_megapixels`; None when it fits (or is not
    an image: the reader that follows says so in its own words)."""
    size = image_header_size(source)
    if size is None:
        return None
    width, height = size
    if width * height / 1e6 <= max_megapixels:
        return None
    return (f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels); the largest allowed is "
            f"{max_megapixels:g} megapixels (setting max_input_megapixels). Make it smaller first.")
