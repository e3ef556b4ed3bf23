"""Infotext: the generation parameters A1111 writes into every image, in its exact dialect.

- ``create``: build the text from a GenerationRequest (key order, quoting, number format)
- ``parse``: read it back into parameters (strings), as A1111 does
- ``restore``: those parameters as request fields, and every setting that cannot be applied
- ``embed``: store it in PNG / JPEG / WebP files and read it from them
"""

from modules.infotext.create import A1111_VERSION, create_infotext
from modules.infotext.embed import ImageSaveError, UnreadableImageError, image_bytes_with_infotext, read_infotext
from modules.infotext.parse import parse_infotext
from modules.infotext.restore import NotApplied, Restored, restore_request

__all__ = [
    "A1111_VERSION",
    "ImageSaveError",
    "NotApplied",
    "Restored",
    "UnreadableImageError",
    "create_infotext",
    "image_bytes_with_infotext",
    "parse_infotext",
    "read_infotext",
    "restore_request",
]
