"""Fooocus: its `parameters` JSON (`fooocus_scheme`), in PNG or in JPEG Exif."""

from __future__ import annotations

import re
from typing import Any

from modules.infotext.foreign.common import (
    COMFY_SAMPLERS,
    COMFY_SCHEDULERS,
    ImageParameters,
    _a1111_fields,
    _file_stem,
    _json_object,
    _number,
    _put,
    _put_sampler,
    _put_size,
    _result,
    _short_hash,
    _text,
    text_chunks,
)


class FooocusReader:
    """Fooocus: ``parameters`` JSON (scheme "fooocus") or infotext (scheme "a1111")."""

    name = "Fooocus"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        scheme, text = info.get("fooocus_scheme"), info.get("parameters")
        if scheme == "a1111" and isinstance(text, str) and text.strip():
            prompt, negative, fields = _a1111_fields(text)
            return ImageParameters(self.name, prompt, negative, fields, text_chunks(info), text.strip())
        data = _json_object(text)
        if data is None or not (scheme == "fooocus" or {"prompt", "guidance_scale", "base_model"} <= data.keys()):
            return None
        params: dict[str, str] = {}
        _put(params, "Steps", _number(data.get("steps")))
        _put_sampler(params, data.get("sampler"), data.get("scheduler"), COMFY_SAMPLERS, COMFY_SCHEDULERS)
        _put(params, "CFG scale", _number(data.get("guidance_scale")))
        _put(params, "Seed", _number(data.get("seed")))
        size = re.fullmatch(r"\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*", str(data.get("resolution", "")))
        if size:
            _put_size(params, size.group(1), size.group(2))
        _put(params, "Model hash", _short_hash(data.get("base_model_hash")))
        _put(params, "Model", _file_stem(data.get("base_model")))
        vae = _text(data.get("vae"))
        _put(params, "VAE", vae if vae and vae != "None" else None)
        for key, label in (("sharpness", "Sharpness"), ("performance", "Performance"), ("styles", "Styles"),
                           ("refiner_model", "Refiner")):
            value = data.get(key)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) not in ("", "None"):
                params[label] = str(value)
        prompt, negative = _text(data.get("prompt")) or "", _text(data.get("negative_prompt")) or ""
        return _result(self.name, info, prompt, negative, params)


# --- ComfyUI -------------------------------------------------------------------------------------

