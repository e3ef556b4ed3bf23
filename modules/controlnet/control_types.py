"""Control types, as the extension groups preprocessors and models under them (`/controlnet/control_types`
and the unit's "Control Type" choice): a type's preprocessors are those tagged with it, its models the
ones whose name contains the type's name (the extension's own filter)."""

from __future__ import annotations

from dataclasses import dataclass

from modules.controlnet.preprocess import PREPROCESSORS

ALL = "All"


@dataclass(frozen=True)
class ControlType:
    name: str
    modules: list[str]
    models: list[str]  # titles, without "None"

    @property
    def default_module(self) -> str:
        return self.modules[1] if len(self.modules) > 1 else "none"

    @property
    def default_model(self) -> str:
        return self.models[0] if self.models else "None"


def control_types(models: list[str]) -> dict[str, ControlType]:
    """The types, "All" first, for the model titles `models`."""
    tags: dict[str, list[str]] = {ALL: list(PREPROCESSORS)}
    for name, preprocessor in PREPROCESSORS.items():
        if preprocessor.tag and preprocessor.tag != ALL:
            tags.setdefault(preprocessor.tag, ["none"]).append(name)
    return {tag: ControlType(tag, modules, models if tag == ALL else [m for m in models if tag.lower() in m.lower()])
            for tag, modules in tags.items()}
