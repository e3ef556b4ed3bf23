"""Prompt text -> per-step conditioning for a loaded model (which encoders, which layer, which pad)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.checkpoints.manager import LoadedModel
from modules.generation.guidance import StepConditions
from modules.prompts.conditioning import EncoderPlan, PromptEncoder
from modules.prompts.extra_networks import extract_extra_networks
from modules.prompts.parser import parse_emphasis
from modules.prompts.schedule import prompt_schedule, split_and, text_at_step

if TYPE_CHECKING:
    from modules.checkpoints.manager import TextEncoder

OPENCLIP_PAD_ID = 0


def encoder_plans(model: LoadedModel, clip_skip: int) -> list[tuple[TextEncoder, EncoderPlan]]:
    """The text encoders of a model and how each one's output is taken (A1111's choices)."""
    spec = model.spec
    eos = model.tokenizers[next(iter(model.tokenizers))].eos_token_id
    if spec.family.text_plan == "sdxl":
        # Both SDXL encoders: the penultimate layer, no final norm. A1111 ignores clip skip here
        # (unless its sdxl_clip_l_skip option is on), and so do we.
        plans = []
        for name in ("text_encoder", "text_encoder_2"):
            if name in model.modules:
                pad = eos if name == "text_encoder" else OPENCLIP_PAD_ID
                plans.append((model.text_encoder(name), EncoderPlan(2, False, pad)))
        return plans
    if spec.text_sources["text_encoder"][0] == "open_clip":
        # SD2: OpenCLIP's penultimate layer with the final norm; A1111 ignores clip skip for it.
        return [(model.text_encoder("text_encoder"), EncoderPlan(1 + spec.text_layers_unused, True, OPENCLIP_PAD_ID))]
    return [(model.text_encoder("text_encoder"), EncoderPlan(clip_skip, True, eos))]


def build_prompt_encoder(model: LoadedModel, clip_skip: int) -> PromptEncoder:
    """The model's prompt encoder for this clip skip; kept with the model so results are cached
    (a refresh of the embeddings makes a new one: its version is in the key)."""
    library = model.embeddings
    key = f"prompt-encoder-{clip_skip}-{getattr(library, 'version', 0)}"
    if key not in model.caches:
        for stale in [k for k in model.caches if k.startswith(f"prompt-encoder-{clip_skip}-")]:
            del model.caches[stale]
        tokenizer = model.tokenizers.get("tokenizer") or model.tokenizers["tokenizer_2"]
        prepare = model.placer.bring if model.placer is not None else None
        model.caches[key] = PromptEncoder(encoder_plans(model, clip_skip), tokenizer, model.device, parse_emphasis, embeddings=library, prepare=prepare)
    return model.caches[key]  # type: ignore[return-value]


def ti_hashes(encoder: PromptEncoder, steps: int, *prompts: str) -> dict[str, str]:
    """A1111's "TI hashes" infotext key for the embeddings the prompts use at any of `steps`
    steps (none: no key)."""
    used: dict[str, str] = {}
    for prompt in prompts:
        for part, _ in split_and(extract_extra_networks(prompt)[0]):
            for _, variant in prompt_schedule(part, steps):
                for embedding in encoder.embeddings_used(variant):
                    used.setdefault(embedding.name, embedding.shorthash)
    return {"TI hashes": ", ".join(f"{name}: {short}" for name, short in used.items())} if used else {}


def step_conditions(encoder: PromptEncoder, prompt: str, steps: int, allow_and: bool, hires_steps: int | None = None) -> StepConditions:
    """Conditioning for every step: one schedule per AND part, merged at every boundary. With
    `hires_steps`, the hires pass's schedule (`steps` is then the first pass's count). Extra-network
    tags (`<lora:...>`) are removed first, as A1111 does: the job applies them (generation/loras.py)."""
    prompt = extract_extra_networks(prompt)[0]
    parts = split_and(prompt) if allow_and else [(prompt, 1.0)]
    schedules = [prompt_schedule(text, steps, hires_steps) for text, _ in parts]
    boundaries = sorted({end for schedule in schedules for end, _ in schedule})
    merged = []
    for end in boundaries:
        merged.append((end, [(encoder.encode(text_at_step(schedule, end)), weight) for schedule, (_, weight) in zip(schedules, parts)]))
    return StepConditions(merged)
