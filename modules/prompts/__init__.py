"""The A1111 prompt language: emphasis, editing and alternation schedules, AND, extra networks and
styles (pure Python), and prompt -> text-encoder conditioning (`conditioning`, which needs torch and
is therefore not imported here)."""

from modules.prompts.extra_networks import ExtraNetworkCall, LoraCall, extract_extra_networks, hypernetwork_call, lora_call
from modules.prompts.parser import BREAK, PromptSyntaxError, is_break, parse_emphasis
from modules.prompts.schedule import parse_schedule, prompt_schedule, split_and, text_at_step
from modules.prompts.styles import PromptStyle, StyleFileError, StyleStore, apply_style_texts, merge_style_text

__all__ = [
    "BREAK",
    "ExtraNetworkCall",
    "LoraCall",
    "PromptStyle",
    "PromptSyntaxError",
    "StyleFileError",
    "StyleStore",
    "apply_style_texts",
    "extract_extra_networks",
    "hypernetwork_call",
    "is_break",
    "lora_call",
    "merge_style_text",
    "parse_emphasis",
    "parse_schedule",
    "prompt_schedule",
    "split_and",
    "text_at_step",
]
