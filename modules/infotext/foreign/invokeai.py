"""InvokeAI: `invokeai_metadata` (3.x, 4/5), `sd-metadata` (2.x) and `Dream` (1.x)."""

from __future__ import annotations

import re
from typing import Any

from modules.errors import UserError
from modules.infotext.foreign.common import (
    INVOKEAI_SCHEDULERS,
    ImageParameters,
    _file_stem,
    _json_object,
    _number,
    _put,
    _put_size,
    _result,
    _short_hash,
    _text,
)
from modules.sampling.sampler_table import parse_sampler_name

_DREAM_PROMPT = re.compile(r'^"(.*?)"(?=\s+-|\s*$)(.*)$', re.DOTALL)
_DREAM_FLAG = re.compile(r"\s-(\w+)\s+([^\s-][^\s]*|-?\d[^\s]*)")
_DREAM_KEYS = {"s": "Steps", "S": "Seed", "C": "CFG scale", "A": "Sampler", "f": "Denoising strength"}


def _split_bracket_negative(text: str) -> tuple[str, str]:
    """InvokeAI 1.x/2.x write the negative prompt in [brackets] inside the prompt."""
    negatives = [part.strip() for part in re.findall(r"\[([^\[\]]*)\]", text) if part.strip()]
    positive = re.sub(r"\s*\[[^\[\]]*\]", "", text).strip(" ,")
    return positive, ", ".join(negatives)


def _legacy_sampler(name: Any) -> str | None:
    """InvokeAI 1.x/2.x samplers are A1111's old aliases (k_lms, k_euler_a, ddim)."""
    text = _text(name)
    if not text:
        return None
    try:
        return parse_sampler_name(text)[0].label
    except UserError:
        return text


def _model_name(model: Any) -> str | None:
    """3.x ``{model_name, base_model, model_type}``; 4/5 ``{key, hash, name, base, type}``."""
    if not isinstance(model, dict):
        return _text(model)
    return _text(model.get("name")) or _text(model.get("model_name"))


class InvokeAIReader:
    """InvokeAI: ``invokeai_metadata`` (3.x-5.x), else ``sd-metadata`` (2.x), else ``Dream`` (1.x)."""

    name = "InvokeAI"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        return self._metadata(info) or self._sd_metadata(info) or self._dream(info)

    def _metadata(self, info: dict[str, Any]) -> ImageParameters | None:
        data = _json_object(info.get("invokeai_metadata"))
        if data is None:
            return None
        params: dict[str, str] = {}
        _put(params, "Steps", _number(data.get("steps")))
        scheduler = _text(data.get("scheduler"))
        if scheduler:
            karras = scheduler.endswith("_k")
            base = scheduler[:-2] if karras else scheduler
            params["Sampler"] = INVOKEAI_SCHEDULERS.get(base, scheduler)
            if karras and base in INVOKEAI_SCHEDULERS:
                params["Schedule type"] = "Karras"
        _put(params, "CFG scale", _number(data.get("cfg_scale")))
        _put(params, "Seed", _number(data.get("seed")))
        _put_size(params, data.get("width"), data.get("height"))
        model = data.get("model")
        _put(params, "Model hash", _short_hash(model.get("hash")) if isinstance(model, dict) else None)
        _put(params, "Model", _model_name(model))
        _put(params, "VAE", _model_name(data.get("vae")))
        if "img2img" in str(data.get("generation_mode", "")) or "inpaint" in str(data.get("generation_mode", "")):
            _put(params, "Denoising strength", _number(data.get("strength")))
        clip_skip = _number(data.get("clip_skip"))
        if clip_skip is not None and clip_skip.isdigit() and int(clip_skip) > 0:
            params["Clip skip"] = str(int(clip_skip) + 1)  # InvokeAI counts skipped layers; A1111 2 = skip 1
        if _text(data.get("rand_device")) == "cpu":
            params["RNG"] = "CPU"
        prompt = _text(data.get("positive_prompt")) or ""
        return _result(self.name, info, prompt, _text(data.get("negative_prompt")) or "", params)

    def _sd_metadata(self, info: dict[str, Any]) -> ImageParameters | None:
        data = _json_object(info.get("sd-metadata"))
        image = data.get("image") if data is not None else None
        if data is None or not isinstance(image, dict):
            return None
        prompt_field = image.get("prompt")
        if isinstance(prompt_field, list):  # [{"prompt": ..., "weight": ...}]
            prompt_field = next((p.get("prompt") for p in prompt_field if isinstance(p, dict)), None)
        prompt, negative = _split_bracket_negative(prompt_field if isinstance(prompt_field, str) else "")
        params: dict[str, str] = {}
        _put(params, "Steps", _number(image.get("steps")))
        _put(params, "Sampler", _legacy_sampler(image.get("sampler")))
        _put(params, "CFG scale", _number(image.get("cfg_scale")))
        _put(params, "Seed", _number(image.get("seed")))
        _put_size(params, image.get("width"), image.get("height"))
        _put(params, "Model hash", _short_hash(data.get("model_hash")))
        _put(params, "Model", _file_stem(data.get("model_weights")))
        if image.get("type") == "img2img":
            _put(params, "Denoising strength", _number(image.get("strength")))
        return _result(self.name, info, prompt, negative, params)

    def _dream(self, info: dict[str, Any]) -> ImageParameters | None:
        text = info.get("Dream")
        match = _DREAM_PROMPT.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            return None
        prompt, negative = _split_bracket_negative(match.group(1))
        flags = {flag: value for flag, value in _DREAM_FLAG.findall(" " + match.group(2))}
        params: dict[str, str] = {}
        for flag, key in _DREAM_KEYS.items():
            if flag in flags:
                _put(params, key, _legacy_sampler(flags[flag]) if flag == "A" else _number(flags[flag]))
        _put_size(params, flags.get("W"), flags.get("H"))
        return _result(self.name, info, prompt, negative, params)


# --- NovelAI -------------------------------------------------------------------------------------


