"""NovelAI (legacy PNG): `Software`, `Description` and the `Comment` JSON, converted as A1111 converts them."""

from __future__ import annotations

import math
from typing import Any

from modules.errors import UserError
from modules.infotext.foreign.common import (
    IMAGE_SIZE_KEY,
    ImageParameters,
    _json_object,
    _number,
    _put,
    _put_size,
    _result,
    _text,
)
from modules.sampling.sampler_table import parse_sampler_name


class NovelAIReader:
    """NovelAI (legacy PNG): ``Software`` "NovelAI", ``Description`` prompt, ``Comment`` JSON.
    Read as A1111's ``read_info_from_image`` converts it (Clip skip 2, ENSD 31337)."""

    name = "NovelAI"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        comment = _json_object(info.get("Comment"))
        if info.get("Software") != "NovelAI" or comment is None:
            return None
        params: dict[str, str] = {}
        _put(params, "Steps", _as_written(comment.get("steps")))
        sampler = _text(comment.get("sampler"))
        if sampler is not None:
            try:
                params["Sampler"] = parse_sampler_name(sampler)[0].label
            except UserError:
                params["Sampler"] = "Euler a"  # A1111's fallback for NovelAI samplers it lacks
        _put(params, "CFG scale", _as_written(comment.get("scale")))
        _put(params, "Seed", _as_written(comment.get("seed")))
        size = info.get(IMAGE_SIZE_KEY)
        _put_size(params, *(size if isinstance(size, tuple) else (comment.get("width"), comment.get("height"))))
        params["Clip skip"], params["ENSD"] = "2", "31337"
        description = info.get("Description")
        prompt = description if isinstance(description, str) else ""
        return _result(self.name, info, prompt.strip(), _text(comment.get("uc")) or "", params)


# Fooocus first: its "a1111" scheme writes infotext that the A1111 reader would claim.


def _as_written(value: Any) -> str | None:
    """A JSON number as A1111's NovelAI conversion writes it: Python's text of the decoded value, so
    `"scale": 11.0` stays "11.0" (A1111 formats the JSON values into its infotext unchanged)."""
    if isinstance(value, float) and math.isfinite(value) or isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _number(value)
