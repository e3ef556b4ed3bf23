"""A1111 (and Easel): the `parameters` text chunk or Exif UserComment."""

from __future__ import annotations

from typing import Any

from modules.infotext.foreign.common import ImageParameters, _a1111_fields, _json_object, text_chunks


class A1111Reader:
    """A1111's infotext: the ``parameters`` chunk or Exif UserComment (as ``embed`` reads it)."""

    name = "A1111"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        text = info.get("parameters")
        if not isinstance(text, str) or not text.strip():
            return None
        if info.get("fooocus_scheme") == "fooocus" or _json_object(text) is not None:
            return None  # JSON parameters (Fooocus and others), not infotext
        prompt, negative, params = _a1111_fields(text)
        return ImageParameters(self.name, prompt, negative, params, text_chunks(info), text.strip())


