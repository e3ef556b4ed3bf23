"""Dynamic Prompts (adieyal/sd-dynamic-prompts 2.17.1 over the dynamicprompts 0.31.0 library): prompt
templates with variants `{a|b}`, `{2$$a|b|c}`, weights `{2::a|b}`, wildcard files `__name__`, in
random or combinatorial mode. `args` reads the extension's API arguments, `expand` computes a job's
prompts and seeds, `wildcards` reads the wildcard folders, `infotext` writes and reads the template
keys, `syntax` keeps A1111's prompt syntax intact through the library's parser."""

from modules.prompts.dynamic.args import DynamicPromptsError, DynamicRequest, is_dynamic_key, parse_alwayson
from modules.prompts.dynamic.expand import DEFAULT_LIMIT, Expansion, expand, hires_prompts
from modules.prompts.dynamic.infotext import (
    NEGATIVE_TEMPLATE_KEY,
    TEMPLATE_KEY,
    WRITE_TEMPLATE_DEFAULT,
    read_template,
    strip_template_info,
    template_params,
)
from modules.prompts.dynamic.wildcards import WildcardFile, WildcardLibrary, wildcard_folders

__all__ = [
    "DEFAULT_LIMIT",
    "NEGATIVE_TEMPLATE_KEY",
    "TEMPLATE_KEY",
    "WRITE_TEMPLATE_DEFAULT",
    "DynamicPromptsError",
    "DynamicRequest",
    "Expansion",
    "WildcardFile",
    "WildcardLibrary",
    "expand",
    "hires_prompts",
    "is_dynamic_key",
    "parse_alwayson",
    "read_template",
    "strip_template_info",
    "template_params",
    "wildcard_folders",
]
