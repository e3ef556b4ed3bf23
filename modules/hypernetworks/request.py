"""The `<hypernet:name:multiplier>` tags of a request, as A1111 reads them (extra_networks_hypernet):
from the prompt and the hires prompt, the first tag per name winning, several networks chained in
the order written; the tag stays in the prompt (A1111 writes nothing else into the infotext). A tag
at multiplier 0 leaves the network out (the picture is then exactly the one without it), and a tag
naming a file that is not there is noted and left out, as A1111 goes on without it. Pictures from
before A1111's 2023 extra-networks rework carry `Hypernet: name` and `Hypernet strength: x`
instead; modules/infotext/restore.py turns those into the tag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modules.errors import ModelLoadError, ModelNotFoundError
from modules.hypernetworks.files import HypernetworkLibrary
from modules.hypernetworks.network import Hypernetwork
from modules.prompts.extra_networks import extract_extra_networks, hypernetwork_call


@dataclass
class RequestHypernetworks:
    networks: list[Hypernetwork] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def wanted_hypernetworks(request: Any) -> list[tuple[str, float]]:
    """(name, multiplier) of each tag, first per name; a malformed multiplier raises PromptSyntaxError."""
    found: dict[str, float] = {}
    for prompt in (request.prompt, getattr(request, "hr_prompt", "") or ""):
        for call in extract_extra_networks(prompt)[1]:
            if call.kind == "hypernet":
                name, multiplier = hypernetwork_call(call)
                found.setdefault(name, multiplier)
    return list(found.items())


def request_hypernetworks(library: HypernetworkLibrary | None, request: Any) -> RequestHypernetworks:
    """The networks to apply for `request`, each at its tag's multiplier (read files are cached)."""
    found = RequestHypernetworks()
    folder = library.folder.name if library is not None else ""
    for name, multiplier in wanted_hypernetworks(request):
        if multiplier == 0:
            continue
        if library is None:
            found.notes.append(f"Hypernetwork {name!r} ignored: no hypernetworks folder.")
            continue
        try:
            network = library.load(library.find(name))
        except ModelNotFoundError:
            found.notes.append(f"Hypernetwork {name!r} is not in {folder}/: generated without it.")
            continue
        except ModelLoadError as error:
            found.notes.append(f"Hypernetwork {name!r} left out: {error}")
            continue
        network.set_multiplier(multiplier)
        found.networks.append(network)
    return found

