"""Building infotext: the generation parameters text A1111 writes into every image.

Layout (A1111 1.10.1 ``processing.create_infotext``)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>          (left out when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

Keys come in A1111's order (:data:`CORE_KEYS`), then extra parameters in the order given, then
``Version`` and ``User``. Keys whose value is None are left out. A value whose text holds ``,``
``:`` or a newline is written as a JSON string, so it can be read back (see ``parse.py``). Numbers
are written as A1111's UI writes them: ``7`` for a whole float, ``7.5`` otherwise.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from modules.sampling.labels import resolve_sampler_and_schedule, sampler_and_schedule  # noqa: F401  (part of this module's API)

if TYPE_CHECKING:
    from modules.generation.request import GenerationRequest

# What A1111 1.10.1 writes as "Version" when built from its release tag. Easel reproduces that
# release's behaviour (emphasis, schedules, seeds), so this is what A1111's backward-compatibility
# switches (``infotext_versions.backcompat``) should see when such an image is pasted back there.
A1111_VERSION = "v1.10.1"

# A1111's order of the keys it computes itself. Extra parameters that use one of these names are
# written in this position (img2img's "Denoising strength" goes before "Clip skip", as in A1111).
CORE_KEYS: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
TRAILING_KEYS: tuple[str, ...] = ("Version", "User")
NEGATIVE_PROMPT_PREFIX = "Negative prompt:"
HASH_LENGTH = 10  # A1111's short hash: the first 10 hex digits of the file's sha256


def format_value(value: Any) -> str:
    """A value as A1111's UI writes it: floats that are whole numbers without ".0"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote(text: str) -> str:
    """A1111's ``infotext_utils.quote``: JSON-quoted when it holds a comma, colon or newline.

    Also quoted (A1111 writes these raw and reads them back changed): a value that starts with
    whitespace (the parser skips it) or ends with it (the last one is stripped with the text), and
    one that starts with a double quote (``"x"`` would be read as ``x``)."""
    if "," not in text and ":" not in text and "\n" not in text and text == text.strip() and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def format_parameters(params: Mapping[str, Any]) -> str:
    """The last infotext line: ``Key: value`` pairs joined by ", ", None values left out.

    A1111 writes a bare key when its value is the key itself (a flag some extensions use)."""
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        text = format_value(value)
        parts.append(key if key == text else f"{key}: {quote(text)}")
    return ", ".join(parts)


def _short_hash(value: str | None) -> str | None:
    return value[:HASH_LENGTH] if value else None


def request_parameters(
    request: "GenerationRequest",
    seed: int,
    subseed: int,
    *,
    model_name: str | None,
    model_hash: str | None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
) -> dict[str, Any]:
    """The core keys a request gives, in A1111's order, None where A1111 leaves a key out."""
    row, schedule = resolve_sampler_and_schedule(request.sampler_name, request.scheduler)
    varied = request.subseed_strength > 0
    resized = request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0
    return {
        "Steps": request.steps,
        "Sampler": row.label,
        "Schedule type": schedule,
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": _short_hash(model_hash),
        "Model": model_name or None,
        "VAE hash": _short_hash(vae_hash),
        "VAE": vae_name or None,
        "Variation seed": subseed if varied else None,
        "Variation seed strength": request.subseed_strength if varied else None,
        "Seed resize from": f"{request.seed_resize_from_w}x{request.seed_resize_from_h}" if resized else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "ENSD": request.eta_noise_seed_delta if request.eta_noise_seed_delta and row.uses_ensd else None,
        "RNG": request.rng_source if request.rng_source != "GPU" else None,
        "Tiling": "True" if request.tiling else None,
    }


def create_infotext(
    request: "GenerationRequest",
    seed: int,
    subseed: int,
    *,
    model_name: str | None,
    model_hash: str | None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    extra: Mapping[str, Any] | None = None,
    version: str | None = A1111_VERSION,
    prompt: str | None = None,
    negative_prompt: str | None = None,
) -> str:
    """The infotext of one image of ``request``, exactly as A1111 1.10.1 lays it out.

    seed / subseed: this image's own (resolved) seeds. model_name: the checkpoint's file stem;
    model_hash / vae_hash: sha256 hex (cut to A1111's 10 digits); vae_name: the VAE's file name.
    extra: further parameters in order (hires, inpaint, LoRA hashes...); a key from
    :data:`CORE_KEYS` or "Version"/"User" goes to A1111's position for it and replaces the
    computed value. version: None leaves "Version" out. prompt / negative_prompt: the texts that
    were actually used (after styles), when they differ from the request's."""
    params = request_parameters(
        request, seed, subseed, model_name=model_name, model_hash=model_hash, vae_name=vae_name, vae_hash=vae_hash
    )
    rest = dict(extra or {})
    for key in CORE_KEYS:
        if key in rest:
            params[key] = rest.pop(key)
    trailing = {"Version": version, "User": None}
    for key in TRAILING_KEYS:
        if key in rest:
            trailing[key] = rest.pop(key)
    ordered = {key: params.get(key) for key in CORE_KEYS} | rest | trailing
    return join_infotext(
        request.prompt if prompt is None else prompt,
        request.negative_prompt if negative_prompt is None else negative_prompt,
        ordered,
    )


def join_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """Prompt, optional negative prompt line and parameters line, stripped as A1111 does."""
    negative = f"\n{NEGATIVE_PROMPT_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{format_parameters(params)}".strip()
