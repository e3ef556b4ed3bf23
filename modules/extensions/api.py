"""The extension API, version 1: everything an extension may use. extensions/README.md documents it.

An extension's `extension.py` defines `setup(api: ExtensionApi)` and registers what it adds through
`api`. Nothing here imports gradio or torch: an extension that adds a tab brings its own gradio
code; scripts declare their controls as data and the UI builds them.

Hooks get one argument, a small dataclass; the ones marked "mutable" may be changed in place (the
engine uses what the hook leaves there). An exception in a hook is caught at the boundary, logged
with the extension's name, shown once, and the generation goes on without that hook's effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modules.extensions.grids import labelled_grid, side_by_side  # noqa: F401  (part of the API)

API_VERSION = 1

# -- script controls: declared as data, built by the UI, filled from the API's script_args --------


@dataclass(frozen=True)
class Control:
    """One input of a script. `name` is the key of the value the script receives."""

    name: str
    label: str
    default: Any
    kind: str = "text"  # "slider", "number", "checkbox", "dropdown", "text", "upscaler", "note"
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    lines: int = 1
    tooltip: str = ""  # one line under the label: what the control does (translated like every label)

    def convert(self, value: Any) -> Any:
        """`value` (from the UI or an API client) as this control's type; ValueError if it is not one."""
        if value is None:
            return self.default
        if self.kind == "checkbox":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if self.kind in ("slider", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"{self.label} must be a number, not {value!r}")
            number = float(value)
            if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
                raise ValueError(f"{self.label} must be between {self.minimum:g} and {self.maximum:g}, not {number:g}")
            whole = isinstance(self.default, int) and not isinstance(self.default, bool)
            return int(number) if whole and number == int(number) else number
        if self.kind == "upscaler":  # a name, or A1111's index into the upscaler list: ScriptRun.canonical("upscaler", ...) resolves it
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"{self.label} must be an upscaler's name or index, not {value!r}")
            return str(value)
        if self.kind == "dropdown":
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.choices or ()):
                return (self.choices or ())[value]  # A1111 clients send some choices by index
            if str(value) not in (self.choices or ()):
                raise ValueError(f"{self.label} must be one of {', '.join(self.choices or ())}, not {value!r}")
            return str(value)
        return str(value)


def Slider(name: str, label: str, minimum: float, maximum: float, default: float, step: float = 1, tooltip: str = "") -> Control:  # noqa: N802
    return Control(name, label, default, "slider", minimum, maximum, step, tooltip=tooltip)


def Number(name: str, label: str, default: float, tooltip: str = "") -> Control:  # noqa: N802
    return Control(name, label, default, "number", tooltip=tooltip)


def Checkbox(name: str, label: str, default: bool = False, tooltip: str = "") -> Control:  # noqa: N802
    return Control(name, label, default, "checkbox", tooltip=tooltip)


def Dropdown(name: str, label: str, choices: list[str] | tuple[str, ...], default: str | None = None, tooltip: str = "") -> Control:  # noqa: N802
    choices = tuple(choices)
    return Control(name, label, default if default is not None else choices[0], "dropdown", choices=choices, tooltip=tooltip)


def Textbox(name: str, label: str, default: str = "", lines: int = 1, tooltip: str = "") -> Control:  # noqa: N802
    return Control(name, label, default, "text", lines=lines, tooltip=tooltip)


def Upscaler(name: str, label: str, default: str = "Lanczos", tooltip: str = "") -> Control:  # noqa: N802
    """A choice among the installed upscalers (the list the Extras tab shows); the script gets the
    name as given, to resolve with `run.canonical("upscaler", value)` (names and A1111's indexes)."""
    return Control(name, label, default, "upscaler", tooltip=tooltip)


def Note(name: str, text: str) -> Control:  # noqa: N802
    """A line of text shown among the controls (A1111 scripts' info line); its value is ignored."""
    return Control(name, text, "", "note")


# -- hook arguments ----------------------------------------------------------------------------


@dataclass
class JobStart:
    """before_job. Mutable: `request` (a copy; replace fields with dataclasses.replace or set them)."""

    task: str  # "txt2img", "img2img", "outpaint"
    request: Any
    script_values: dict[str, Any] = field(default_factory=dict)  # this extension's always-on values


@dataclass
class BatchStart:
    """before_batch: a batch of `len(seeds)` images is about to be sampled."""

    task: str
    request: Any
    batch_index: int
    seeds: list[int]


@dataclass
class DenoiseStep:
    """on_step, before every model evaluation (a second-order sampler evaluates twice a step).
    Mutable: `x` (the noisy latent), `conds` / `unconds` (prompt conditioning schedules)."""

    x: Any  # torch.Tensor (B, 4, h, w)
    sigma: Any  # torch.Tensor
    step: int  # sampler steps done so far in this pass
    total_steps: int
    conds: Any
    unconds: Any
    request: Any


@dataclass
class ImageDone:
    """after_image. Mutable: `image` (a PIL image) and `infotext_extra` (keys added to its infotext)."""

    task: str
    request: Any
    image: Any
    seed: int
    index: int
    infotext_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobDone:
    """after_job: the job's result (images, seeds, infotexts, paths)."""

    task: str
    request: Any
    result: Any


@dataclass
class ImageSaved:
    """on_image_saved: a file was written to the outputs folder."""

    path: Path
    infotext: str


@dataclass
class ModelLoaded:
    """on_model_loaded: a checkpoint became the active model."""

    name: str
    family: str
    model: Any  # the LoadedModel


def combine_results(results: list[Any], grid: Any = None) -> Any:
    """One GenerationResult from the results of several `ScriptRun.generate` calls (their images,
    seeds and infotexts in order), with `grid` (e.g. a labelled_grid) shown and saved first."""
    from modules.generation.engine import GenerationResult

    combined = GenerationResult(grid=grid)
    for result in results:
        combined.images += result.images
        combined.image_seeds += result.image_seeds
        combined.seeds += result.seeds
        combined.subseeds += result.subseeds
        combined.infotexts += result.infotexts
        combined.notes += [note for note in result.notes if note not in combined.notes]
        combined.interrupted |= result.interrupted
        combined.timings["total"] = combined.timings.get("total", 0.0) + result.timings.get("total", 0.0)
    return combined


HOOKS = ("before_job", "before_batch", "on_step", "after_image", "after_job", "on_image_saved", "on_model_loaded")


# -- scripts -----------------------------------------------------------------------------------


@dataclass
class ScriptRun:
    """What a selectable script's `run` gets: the request the tab built, the script's values, and
    `generate`, which runs one job's worth of images on the held model (with progress and hooks)
    and returns a result whose images already carry their infotexts."""

    task: str
    request: Any
    values: dict[str, Any]
    generate: Callable[..., Any]  # (request, infotext_extra: dict | None = None) -> GenerationResult; the dict's keys go into each image's infotext
    switch_checkpoint: Callable[[str], object]  # what it returns is not part of the contract
    switch_vae: Callable[[str], object]
    show: Callable[..., None]  # (images so far, a line of text, fraction done 0-1): the UI shows them at once
    interrupted: Callable[[], bool]
    canonical: Callable[[str, str], str]  # (kind, text) -> the name Easel uses; UserError if unknown. kind: sampler, schedule, checkpoint, vae, upscaler
    upscale: Callable[[Any, str, float], Any] | None = None  # (PIL image, upscaler name, scale) -> PIL image, with tile progress


@dataclass
class Script:
    """Controls in txt2img / img2img. `always_on`: a section always shown; its values reach the
    extension's hooks (`JobStart.script_values`). Otherwise selectable in the "Script" dropdown;
    `run(ScriptRun) -> GenerationResult` then makes the job's images."""

    title: str
    controls: list[Control]
    tabs: tuple[str, ...] = ("txt2img", "img2img")
    always_on: bool = False
    run: Callable[[ScriptRun], Any] | None = None
    extension: str = ""  # filled in by the registry

    @property
    def name(self) -> str:
        """How the API names it (A1111: the title in lower case)."""
        return self.title.lower()

    def values_from(self, args: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        """Typed values from positional `args` (A1111's script_args) or a dict by control name;
        missing ones take their defaults. ValueError names the bad one."""
        if args is None:
            args = []
        if isinstance(args, dict):
            unknown = set(args) - {c.name for c in self.controls}
            if unknown:
                raise ValueError(f"{self.title!r} has no argument {sorted(unknown)[0]!r} (it takes {', '.join(c.name for c in self.controls)})")
            return {c.name: c.convert(args.get(c.name)) for c in self.controls}
        if not isinstance(args, (list, tuple)):
            raise ValueError(f"the arguments of {self.title!r} must be a list, not {args!r}")
        if len(args) > len(self.controls):
            raise ValueError(f"{self.title!r} takes at most {len(self.controls)} arguments, not {len(args)}")
        values = list(args) + [None] * (len(self.controls) - len(args))
        return {c.name: c.convert(v) for c, v in zip(self.controls, values)}


@dataclass(frozen=True)
class Tab:
    title: str
    build: Callable[[Any], None]  # (services) -> None, called inside the gr.Tab: gradio code of the extension's own


@dataclass(frozen=True)
class ExtensionSetting:
    key: str  # stored as "<extension>.<key>" in config.json
    default: Any
    label: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ApiRoute:
    path: str  # under /ext/<extension name>
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)


class ExtensionApi:
    """What `setup(api)` receives: register hooks, scripts, tabs, settings and API routes."""

    version = API_VERSION

    def __init__(self, name: str, folder: Path, settings: Callable[[str], Any]):
        self.name = name
        self.folder = folder
        self._settings = settings
        self.hooks: dict[str, list[Callable[[Any], Any]]] = {hook: [] for hook in HOOKS}
        self.scripts: list[Script] = []
        self.tabs: list[Tab] = []
        self.settings: list[ExtensionSetting] = []
        self.routes: list[ApiRoute] = []

    def on(self, hook: str, function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Registers `function` for `hook` (one of HOOKS); returns it (usable as a decorator factory's body)."""
        if hook not in self.hooks:
            raise ValueError(f"Unknown hook {hook!r}: use one of {', '.join(HOOKS)}")
        self.hooks[hook].append(function)
        return function

    def add_script(self, script: Script) -> Script:
        if not script.always_on and script.run is None:
            raise ValueError(f"Script {script.title!r} is selectable but has no run function")
        script.extension = self.name
        self.scripts.append(script)
        return script

    def add_tab(self, title: str, build: Callable[[Any], None]) -> None:
        self.tabs.append(Tab(title, build))

    def add_setting(self, key: str, default: Any, label: str, choices: list[str] | None = None) -> None:
        self.settings.append(ExtensionSetting(key, default, label, tuple(choices) if choices else None))

    def setting(self, key: str) -> Any:
        """The current value of one of this extension's settings (its default until changed)."""
        value = self._settings(f"{self.name}.{key}")
        if value is None:
            declared = next((s for s in self.settings if s.key == key), None)
            return declared.default if declared is not None else None
        return value

    def add_api_route(self, path: str, endpoint: Callable[..., Any], methods: list[str] | None = None) -> None:
        """Serves `endpoint` (a FastAPI endpoint function) at /ext/<extension name><path> with --api."""
        if not path.startswith("/"):
            raise ValueError(f"API route paths start with '/', not {path!r}")
        self.routes.append(ApiRoute(path, endpoint, tuple(methods or ["GET"])))
