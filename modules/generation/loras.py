"""The `<lora:name:te:unet>` tags of a request, applied for its job only.

A1111 reads the tags from the positive prompt (and the hires prompt), removes them from the text
the encoder sees (text.step_conditions does that), applies the LoRAs at those strengths while the
job runs and takes them off afterwards; the infotext keeps the prompt as written and adds
`Lora hashes: "name: 0123456789ab, ..."`. A tag naming a LoRA that is not in models/Lora is left
out with a note, as A1111 does, rather than failing the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from modules.checkpoints.manager import LoadedModel
from modules.errors import ModelNotFoundError
from modules.lora.files import LoraFile, LoraLibrary
from modules.lora.patch import LoraUse
from modules.prompts.extra_networks import extract_extra_networks, lora_call


@dataclass
class RequestLoras:
    uses: list[LoraUse] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: dict[str, LoraFile] = field(default_factory=dict)  # each tag's name -> the file found for it

    def infotext(self, library: LoraLibrary) -> dict[str, Any]:
        if not self.uses:
            return {}
        hashes = {use.lora.name: library.short_hash(use.lora) for use in self.uses}
        return {"Lora hashes": ", ".join(f"{name}: {short}" for name, short in hashes.items())}


def request_loras(library: LoraLibrary | None, request: Any) -> RequestLoras:
    """The LoRAs the request's prompt (and hires prompt) ask for, first tag per name winning.
    A malformed tag raises PromptSyntaxError (a UserError) before anything runs."""
    found = RequestLoras()
    seen: set[str] = set()
    prompts = [request.prompt, getattr(request, "hr_prompt", "") or ""]
    for prompt in prompts:
        for call in extract_extra_networks(prompt)[1]:
            if call.kind != "lora":
                continue
            wanted = lora_call(call)
            if wanted.name in seen:
                continue
            seen.add(wanted.name)
            if library is None:
                found.notes.append(f"LoRA {wanted.name!r} ignored: no LoRA folder.")
                continue
            try:
                entry = library.find(wanted.name)
            except ModelNotFoundError:
                found.notes.append(f"LoRA {wanted.name!r} is not in {library.folder.name}/: generated without it.")
                continue
            found.uses.append(LoraUse(entry, wanted.te, wanted.unet))
            found.files[wanted.name] = entry
    return found


@dataclass(frozen=True)
class JobLoras:
    """What a task may do with the job's LoRAs: the set in effect (`uses`, each tag's file in
    `files`), and `apply(model, uses)` to put another set in effect for a while (regional Latent
    mode gives every region's pass its own); the task puts `uses` back when it is done."""

    uses: tuple[LoraUse, ...]
    files: dict[str, LoraFile]
    apply: Callable[[LoadedModel, Sequence[LoraUse]], Any]
