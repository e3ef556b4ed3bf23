"""Infotext: the generation parameters A1111 writes into every image, in its exact dialect.

- ``create``: build the text from a GenerationRequest (key order, quoting, number format)
- ``parse``: read it back into parameters and GenerationRequest fields
- ``embed``: store it in PNG / JPEG / WebP files and read it from them
"""

from modules.infotext.create import A1111_VERSION, create_infotext
from modules.infotext.embed import ImageSaveError, UnreadableImageError, image_bytes_with_infotext, read_infotext
from modules.infotext.parse import parse_infotext, request_fields

__all__ = [
    "A1111_VERSION",
    "ImageSaveError",
    "UnreadableImageError",
    "create_infotext",
    "image_bytes_with_infotext",
    "parse_infotext",
    "read_infotext",
    "request_fields",
]
