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

import json
import logging
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import PureWindowsPath
from typing import Any, Protocol

from PIL import Image

from modules.errors import UserError
from modules.infotext.create import CORE_KEYS, HASH_LENGTH, TRAILING_KEYS, format_value, join_infotext
from modules.infotext.embed import ImageSource, infotext_from_image, opened_image
from modules.infotext.parse import MIN_PARAMETER_MATCHES, MISSING_DEFAULTS, parse_infotext
from modules.sampling.sampler_table import parse_sampler_name

log = logging.getLogger(__name__)

# Not a text chunk: the image's (width, height), which NovelAI's reading needs (A1111 takes Size
# from the image). Readers get it in ``info`` under this key.
IMAGE_SIZE_KEY = "easel.image_size"
NO_METADATA_NOTE = "This image carries no generation parameters."
_FOOOCUS_SCHEMES = ("fooocus", "a1111")
_EXIF_IFD, _USER_COMMENT, _MAKER_NOTE = 0x8769, 0x9286, 0x927C
_COMFY_EXIF_TAG = re.compile(r"^(\w+):\s*([\[{].*)$", re.DOTALL)  # ComfyUI: 0x0110 "prompt:{...}", 0x010F...
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, KeyError, IndexError, TypeError)

# ComfyUI/Fooocus sampler and scheduler names -> A1111 labels (names without one are kept as written).
COMFY_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM",
}
COMFY_SCHEDULERS = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Beta", "kl_optimal": "KL Optimal",
}
# InvokeAI scheduler names -> A1111 sampler labels; a "_k" suffix means Karras sigmas.
INVOKEAI_SCHEDULERS = {
    "ddim": "DDIM", "lms": "LMS", "heun": "Heun", "euler": "Euler", "euler_a": "Euler a", "kdpm_2": "DPM2",
    "kdpm_2_a": "DPM2 a", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_sde": "DPM++ SDE",
    "unipc": "UniPC", "lcm": "LCM",
}


@dataclass
class ImageParameters:
    """What an image says about how it was made.

    source: "A1111", "ComfyUI", "InvokeAI", "NovelAI", "Fooocus" or "unknown". params: settings
    under A1111's infotext keys ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed",
    "Size-1"/"Size-2", "Model", "Model hash", "Denoising strength"...), values as text; the
    prompts are in their own fields. raw: every text chunk as found. infotext: an A1111 infotext
    made from the fields (the image's own for A1111), None when there is nothing to send."""

    source: str
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    infotext: str | None = None
    note: str = ""


class MetadataReader(Protocol):
    """One tool's format: ``read`` answers None when ``info`` is not (readable) in it."""

    name: str

    def read(self, info: dict[str, Any]) -> ImageParameters | None: ...


# --- small helpers shared by the readers ---------------------------------------------------------


def text_chunks(info: dict[str, Any]) -> dict[str, str]:
    """The text items of ``info`` (PNG chunks, decoded Exif texts, a JPEG/GIF comment)."""
    found = {key: str(value) for key, value in info.items() if isinstance(value, str)}
    comment = info.get("comment")
    if isinstance(comment, bytes) and comment:
        found["comment"] = comment.decode("utf-8", errors="replace")
    return found


def _json(text: Any) -> Any:
    """Parsed JSON, or None for anything that is not a JSON text."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_object(text: Any) -> dict[str, Any] | None:
    value = _json(text)
    return value if isinstance(value, dict) else None


def _number(value: Any) -> str | None:
    """A number as A1111 writes it ("7" for 7.0), from a number or numeric text; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() if _NUMBER.fullmatch(value.strip()) else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return format_value(value)
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _file_stem(name: Any) -> str | None:
    """A1111's "Model" is the file stem; other tools may write "sub\\dir/name.safetensors"."""
    text = _text(name)
    return PureWindowsPath(text).stem if text else None


def _short_hash(value: Any) -> str | None:
    """A1111's 10-digit sha256 ("sha256:" prefix allowed); other hashes (blake3) do not map."""
    text = _text(value)
    if text and text.lower().startswith("sha256:"):
        text = text[len("sha256:"):]
    return text[:HASH_LENGTH].lower() if text and re.fullmatch(r"[0-9a-fA-F]{10,64}", text) else None


def _put(params: dict[str, str], key: str, value: str | None) -> None:
    if value is not None:
        params[key] = value


def _put_size(params: dict[str, str], width: Any, height: Any) -> None:
    w, h = _number(width), _number(height)
    if w is not None and h is not None and w.isdigit() and h.isdigit():
        params["Size-1"], params["Size-2"] = w, h


def _put_sampler(params: dict[str, str], sampler: Any, scheduler: Any, samplers: dict[str, str],
                 schedulers: dict[str, str]) -> None:
    """A foreign sampler/scheduler pair under A1111's labels; unknown names kept as written."""
    name, schedule = _text(sampler), _text(scheduler)
    if name:
        params["Sampler"] = samplers.get(name.lower(), name)
    if schedule:
        params["Schedule type"] = schedulers.get(schedule.lower(), schedule)


def synthesise_infotext(prompt: str, negative_prompt: str, params: dict[str, str]) -> str | None:
    """An A1111 infotext for the fields (keys in A1111's order; Size-1/-2 joined to "Size").
    Fewer than 3 parameters are left out: A1111's parser would take them for prompt text."""
    if not prompt and not negative_prompt and not params:
        return None
    merged: dict[str, str] = {}
    for key, value in params.items():
        if key.endswith("-1") and key[:-2] + "-2" in params:
            merged[key[:-2]] = f"{value}x{params[key[:-2] + '-2']}"
        elif not (key.endswith("-2") and key[:-2] + "-1" in params):
            merged[key] = value
    ordered = {key: merged.pop(key) for key in CORE_KEYS if key in merged}
    trailing = {key: merged.pop(key) for key in TRAILING_KEYS if key in merged}
    line = ordered | merged | trailing
    if len(line) < MIN_PARAMETER_MATCHES:  # A1111 would read so short a line as part of the prompt
        if not prompt and not negative_prompt:
            return None
        line = {}
    return join_infotext(prompt, negative_prompt, line)


def _result(source: str, info: dict[str, Any], prompt: str, negative: str, params: dict[str, str]) -> ImageParameters:
    return ImageParameters(source, prompt, negative, params, text_chunks(info), synthesise_infotext(prompt, negative, params))


# --- A1111 and Fooocus ---------------------------------------------------------------------------


def _a1111_fields(text: str) -> tuple[str, str, dict[str, str]]:
    """parse_infotext, less the prompts and the defaults the text did not write."""
    params = parse_infotext(text)
    prompt, negative = params.pop("Prompt", ""), params.pop("Negative prompt", "")
    for key, default in MISSING_DEFAULTS.items():
        if params.get(key) == default and f"{key}:" not in text:
            del params[key]
    return prompt, negative, params


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


class FooocusReader:
    """Fooocus: ``parameters`` JSON (scheme "fooocus") or infotext (scheme "a1111")."""

    name = "Fooocus"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        scheme, text = info.get("fooocus_scheme"), info.get("parameters")
        if scheme == "a1111" and isinstance(text, str) and text.strip():
            prompt, negative, params = _a1111_fields(text)
            return ImageParameters(self.name, prompt, negative, params, text_chunks(info), text.strip())
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

_COMFY_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
_MAX_HOPS = 32  # a link chain longer than this (or a cycle) is given up on
_TEXT_INPUTS = ("text", "text_g", "text_l")  # CLIPTextEncode; CLIPTextEncodeSDXL


class _ComfyGraph:
    """ComfyUI's API graph: ``{id: {class_type, inputs}}``; an input is a literal or a link
    ``[source id, output index]``. Lookups answer None for anything missing or malformed."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in nodes.items() if isinstance(v, dict) and isinstance(v.get("class_type"), str)}

    @staticmethod
    def is_link(value: Any) -> bool:
        return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)

    def inputs(self, node_id: str) -> dict[str, Any]:
        inputs = self.nodes.get(node_id, {}).get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def class_type(self, node_id: str) -> str:
        return str(self.nodes.get(node_id, {}).get("class_type", ""))

    def _pass_through(self, node_id: str) -> Any:
        """The single linked input of a reroute-like node, else None."""
        links = [v for v in self.inputs(node_id).values() if self.is_link(v)]
        return links[0] if len(links) == 1 and len(self.inputs(node_id)) == 1 else None

    def value(self, value: Any, names: tuple[str, ...], hops: int = 0) -> Any:
        """A literal input, following links through primitive and reroute nodes (their input
        named like the one asked for, or ``value``)."""
        if not self.is_link(value):
            return value
        if hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        for name in (*names, "value"):
            if name in inputs:
                return self.value(inputs[name], names, hops + 1)
        return self.value(self._pass_through(node_id), names, hops + 1)

    def encoder(self, value: Any, hops: int = 0) -> dict[str, Any] | None:
        """The inputs of the text encoder (CLIPTextEncode and relatives) behind a conditioning
        link, reached through ControlNet/area/combine nodes that pass conditioning on."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        if any(name in inputs for name in _TEXT_INPUTS):
            return inputs
        onward: list[str] = ["conditioning", "conditioning_1", "conditioning_to"]
        if "positive" in inputs and "negative" in inputs:  # ControlNetApplyAdvanced: output 0 / 1
            onward.insert(0, "negative" if value[1] == 1 else "positive")
        for name in onward:
            if name in inputs:
                return self.encoder(inputs[name], hops + 1)
        return self.encoder(self._pass_through(node_id), hops + 1)

    def text(self, value: Any) -> str | None:
        """The prompt text behind a conditioning link."""
        inputs = self.encoder(value) or {}
        name = next((name for name in _TEXT_INPUTS if name in inputs), None)
        found = self.value(inputs[name], ("text", "string")) if name else None
        return found if isinstance(found, str) else None

    def find_upstream(self, value: Any, via: str, wanted: tuple[str, ...], hops: int = 0) -> tuple[str, dict[str, Any]] | None:
        """The first node up the ``via`` input chain (model, clip, vae) with one of ``wanted``."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id = str(value[0])
        inputs = self.inputs(node_id)
        if any(name in inputs for name in wanted):
            return node_id, inputs
        return self.find_upstream(inputs.get(via, self._pass_through(node_id)), via, wanted, hops + 1)

    def latent_size(self, value: Any, through_samplers: bool = True, hops: int = 0) -> tuple[Any, Any] | None:
        """(width, height) of the empty latent a sampler starts from, also through the samplers
        before it (a refiner's base pass) unless ``through_samplers`` is False."""
        if not self.is_link(value) or hops > _MAX_HOPS:
            return None
        node_id, inputs = str(value[0]), self.inputs(str(value[0]))
        if "width" in inputs and "height" in inputs and "samples" not in inputs:
            return self.value(inputs["width"], ("width", "int")), self.value(inputs["height"], ("height", "int"))
        if "latent_image" in inputs and not through_samplers:
            return None
        onward = inputs.get("latent_image", self._pass_through(node_id))
        return self.latent_size(onward, through_samplers, hops + 1)

    def first_pass_sampler(self) -> str | None:
        """The sampler A1111 would call the first pass: one starting from an empty latent (not a
        hires or refiner pass), the lowest node id first."""
        def order(node_id: str) -> tuple[int, str]:
            return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)

        samplers = sorted((i for i in self.nodes if self.class_type(i) in _COMFY_SAMPLER_NODES), key=order)
        for node_id in samplers:
            if self.latent_size(self.inputs(node_id).get("latent_image"), through_samplers=False) is not None:
                return node_id
        return samplers[0] if samplers else None


class ComfyUIReader:
    """ComfyUI: the ``prompt`` chunk's API graph, read from its first-pass KSampler."""

    name = "ComfyUI"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        nodes = _json_object(info.get("prompt"))
        if nodes is None:
            return None
        graph = _ComfyGraph(nodes)
        if not graph.nodes:
            return None
        sampler = graph.first_pass_sampler()
        params: dict[str, str] = {}
        prompt = negative = ""
        if sampler is not None:
            inputs = graph.inputs(sampler)
            prompt = graph.text(inputs.get("positive")) or ""
            negative = graph.text(inputs.get("negative")) or ""
            _put(params, "Steps", _number(graph.value(inputs.get("steps"), ("steps", "int"))))
            _put_sampler(params, graph.value(inputs.get("sampler_name"), ("sampler_name",)),
                         graph.value(inputs.get("scheduler"), ("scheduler",)), COMFY_SAMPLERS, COMFY_SCHEDULERS)
            _put(params, "CFG scale", _number(graph.value(inputs.get("cfg"), ("cfg", "float"))))
            seed_name = "noise_seed" if "noise_seed" in inputs else "seed"
            _put(params, "Seed", _number(graph.value(inputs.get(seed_name), ("seed", "noise_seed", "int"))))
            size = graph.latent_size(inputs.get("latent_image"))
            if size is not None:
                _put_size(params, *size)
            loader = graph.find_upstream(inputs.get("model"), "model", ("ckpt_name", "unet_name"))
            if loader is not None:
                _put(params, "Model", _file_stem(loader[1].get("ckpt_name", loader[1].get("unet_name"))))
            denoise = _number(graph.value(inputs.get("denoise"), ("denoise", "float")))
            if denoise is not None and float(denoise) < 1:
                params["Denoising strength"] = denoise
            self._clip_skip(graph, inputs.get("positive"), params)
        if "Size-1" not in params and isinstance(info.get(IMAGE_SIZE_KEY), tuple):
            _put_size(params, *info[IMAGE_SIZE_KEY])  # img2img graphs: the image is the best guess
        return _result(self.name, info, prompt, negative, params)

    @staticmethod
    def _clip_skip(graph: _ComfyGraph, positive: Any, params: dict[str, str]) -> None:
        """CLIPSetLastLayer(stop_at_clip_layer=-2) is A1111's "Clip skip: 2"."""
        encoder = graph.encoder(positive)
        layer = graph.find_upstream(encoder.get("clip"), "clip", ("stop_at_clip_layer",)) if encoder else None
        stop = _number(graph.value(layer[1].get("stop_at_clip_layer"), ("int",))) if layer else None
        if stop is not None and stop.lstrip("-").isdigit() and -int(stop) > 1:
            params["Clip skip"] = str(-int(stop))


# --- InvokeAI ------------------------------------------------------------------------------------

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


class NovelAIReader:
    """NovelAI (legacy PNG): ``Software`` "NovelAI", ``Description`` prompt, ``Comment`` JSON.
    Read as A1111's ``read_info_from_image`` converts it (Clip skip 2, ENSD 31337)."""

    name = "NovelAI"

    def read(self, info: dict[str, Any]) -> ImageParameters | None:
        comment = _json_object(info.get("Comment"))
        if info.get("Software") != "NovelAI" or comment is None:
            return None
        params: dict[str, str] = {}
        _put(params, "Steps", _number(comment.get("steps")))
        sampler = _text(comment.get("sampler"))
        if sampler is not None:
            try:
                params["Sampler"] = parse_sampler_name(sampler)[0].label
            except UserError:
                params["Sampler"] = "Euler a"  # A1111's fallback for NovelAI samplers it lacks
        _put(params, "CFG scale", _number(comment.get("scale")))
        _put(params, "Seed", _number(comment.get("seed")))
        size = info.get(IMAGE_SIZE_KEY)
        _put_size(params, *(size if isinstance(size, tuple) else (comment.get("width"), comment.get("height"))))
        params["Clip skip"], params["ENSD"] = "2", "31337"
        prompt = info.get("Description") if isinstance(info.get("Description"), str) else ""
        return _result(self.name, info, prompt.strip(), _text(comment.get("uc")) or "", params)


# Fooocus first: its "a1111" scheme writes infotext that the A1111 reader would claim.
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
    info: dict[str, Any] = dict(image.info or {})
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
