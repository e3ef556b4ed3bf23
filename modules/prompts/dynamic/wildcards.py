"""Wildcard files: `__name__` in a template picks an entry of the file `name` (dynamicprompts 0.31.0's
formats, read by its own classes):

- `name.txt`: one entry per line; blank lines and lines starting with `#` are skipped (UTF-8);
- `.yaml` / `.json`: a mapping whose keys name wildcards (nested mappings give `a/b`), each a list
  of entries (or one string); an entry `"2::text"` or `{"text": ..., "weight": 2}` is weighted. The
  names are prefixed with the file's folder, not its file name (dynamicprompts' "pantry" rule);
  a top-level list is one wildcard named after the file;
- nested folders give `__folder/name__`; a name is a glob (`__colors/*__`, `__*__`); a name that
  matches nothing is retried as `**/name` (any folder), as dynamicprompts does.

The folders (`wildcard_folders`): `<data-dir>/wildcards/` first, then `extensions/*/wildcards/`
(where the extension's users keep theirs, `extensions/sd-dynamic-prompts/wildcards`); when two
folders hold the same name the earlier folder's file is used.

Where Easel differs on purpose from dynamicprompts (which logs a warning and leaves the text as it
is, or recurses until Python's recursion limit):

- a wildcard that matches no file, or only files without entries, is a `DynamicPromptsError`
  naming it; this is checked for every reference reachable from the template before anything is
  generated, so the answer does not depend on which variants the random choices took;
- wildcard files that refer to each other in a loop (`a` holds `__b__`, `b` holds `__a__`, or
  a file that matches its own glob) are refused, naming the loop, even where random choices
  might have stopped it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from dynamicprompts.commands import Command, WildcardCommand
from dynamicprompts.enums import SamplingMethod
from dynamicprompts.sampling_context import SamplingContext
from dynamicprompts.wildcards import WildcardManager
from dynamicprompts.wildcards.collection import WildcardCollection, WildcardTextFile
from dynamicprompts.wildcards.collection.structured import parse_structured_file
from dynamicprompts.wildcards.item import WildcardItem
from dynamicprompts.wildcards.utils import clean_wildcard
from dynamicprompts.wildcards.values import WildcardValues

from modules.prompts.dynamic.args import DynamicPromptsError
from modules.prompts.dynamic.syntax import parse_template, protect, quick_wildcard_names, wildcard_commands

log = logging.getLogger(__name__)

KINDS = {".txt": "txt", ".yaml": "yaml", ".json": "json"}
WRAP = "__"
DYNAMIC_NAME_LIMIT = 100  # names a wildcard name built from variants (`__colors_{a|b}__`) may expand to


def wildcard_folders(data_dir: Path, extensions_dir: Path | None = None) -> list[Path]:
    """`<data-dir>/wildcards` then every `extensions/*/wildcards` folder (sorted), in that priority."""
    folders = [Path(data_dir) / "wildcards"]
    if extensions_dir is not None and Path(extensions_dir).is_dir():
        folders += sorted(p for p in Path(extensions_dir).glob("*/wildcards") if p.is_dir())
    return folders


@dataclass(frozen=True)
class WildcardFile:
    """One wildcard name as the UI lists it: `__name__`, the file it comes from, its folder."""

    name: str
    path: Path
    folder: Path
    kind: str  # "txt", "yaml" or "json"

    @property
    def token(self) -> str:
        return f"{WRAP}{self.name}{WRAP}"


def _protected(item: str | WildcardItem) -> str | WildcardItem:
    if isinstance(item, WildcardItem):
        return WildcardItem(content=protect(item.content), weight=item.weight)
    return protect(item)


class StrictWildcardManager(WildcardManager):
    """dynamicprompts' manager over Easel's folders that refuses a wildcard without entries (where the
    library would leave `__name__` in the prompt) and hands out entries with A1111's `|`, `%`, `$`
    protected (syntax.py)."""

    def __init__(self, collections: dict[str, WildcardCollection], where: str) -> None:
        self._protected_values: dict[str, WildcardValues] = {}
        super().__init__(root_map={"": [dict(collections)]})
        self._where = where

    def clear_cache(self) -> None:
        super().clear_cache()
        self._protected_values = {}

    def get_values(self, wildcard: str) -> WildcardValues:
        found = self._protected_values.get(wildcard)
        if found is None:
            values = super().get_values(wildcard)
            if not values:
                raise missing_wildcard(wildcard, self._where, exists=bool(list(self.match_collections(wildcard))))
            found = WildcardValues.from_items([_protected(item) for item in values.items])
            self._protected_values[wildcard] = found
        return found


def missing_wildcard(name: str, where: str, exists: bool) -> DynamicPromptsError:
    token = f"{WRAP}{name.strip('_')}{WRAP}"
    if exists:
        return DynamicPromptsError(f"Wildcard {token} has no entries (only blank lines or # comments): add some, or remove it from the prompt.")
    return DynamicPromptsError(f"Wildcard {token} was not found in {where}: add a file for it there, or correct the name.")


class WildcardLibrary:
    """The wildcard files of some folders (earlier folders win), read when first needed."""

    def __init__(self, folders: Sequence[Path | str]) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.problems: list[str] = []  # files that could not be read, for the UI
        self._files: dict[str, WildcardFile] = {}
        self._collections: dict[str, WildcardCollection] | None = None
        self._manager: StrictWildcardManager | None = None
        self._edges: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        self._checked: set[str] = set()

    def refresh(self) -> None:
        """Forget what was read (after files changed)."""
        self.problems = []
        self._files = {}
        self._collections = None
        self._manager = None
        self._edges = {}
        self._checked = set()

    @property
    def where(self) -> str:
        return ", ".join(str(folder) for folder in self.folders) or "no wildcard folder"

    def _scan(self) -> dict[str, WildcardCollection]:
        if self._collections is None:
            collections: dict[str, WildcardCollection] = {}
            for folder in reversed(self.folders):  # earlier folders overwrite later ones
                for name, collection, file in self._read_folder(folder):
                    collections[name] = collection
                    self._files[name] = file
            self._collections = collections
        return self._collections

    def _read_folder(self, folder: Path) -> Iterable[tuple[str, WildcardCollection, WildcardFile]]:
        if not folder.is_dir():
            return
        seen: set[str] = set()
        for here, dirnames, filenames in os.walk(folder, followlinks=True):
            real = os.path.realpath(here)
            if real in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                path = Path(here) / filename
                kind = KINDS.get(path.suffix)
                if kind is not None:
                    yield from self._read_file(folder, path, kind)

    def _read_file(self, folder: Path, path: Path, kind: str) -> Iterable[tuple[str, WildcardCollection, WildcardFile]]:
        relative = path.relative_to(folder)
        if kind == "txt":
            name = relative.with_suffix("").as_posix()
            yield name, WildcardTextFile(path), WildcardFile(name, path, folder, kind)
            return
        prefix = relative.parent.as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        try:
            parsed = list(parse_structured_file(path))
        except Exception as error:  # yaml/json syntax: listed as a problem, the other files still work
            log.warning("Unreadable wildcard file %s: %s", path, error)
            self.problems.append(f"{path}: {error}")
            return
        for key, collection in parsed:
            yield prefix + key, collection, WildcardFile(prefix + key, path, folder, kind)

    @property
    def manager(self) -> StrictWildcardManager:
        if self._manager is None:
            self._manager = StrictWildcardManager(self._scan(), self.where)
        return self._manager

    def files(self) -> list[WildcardFile]:
        """Every wildcard name, sorted, with its file."""
        self._scan()
        return [self._files[name] for name in sorted(self._files)]

    def entries(self, name: str) -> list[str]:
        """The entries of the wildcard `name` (with or without `__`), in file order, for a preview."""
        collections = self._scan()
        key = clean_wildcard(name, wildcard_wrap=WRAP)
        if key not in collections:
            raise missing_wildcard(key, self.where, exists=False)
        return [str(item) for item in collections[key].get_values()]

    def match(self, pattern: str) -> list[str]:
        """The names a wildcard reference picks from, as dynamicprompts matches them (`**/` retry)."""
        collections = self._scan()
        try:
            cleaned = clean_wildcard(pattern, wildcard_wrap=WRAP)
        except ValueError:
            return []
        names = [name for name in collections if fnmatch.fnmatch(name, cleaned)]
        if not names and not cleaned.startswith("**"):
            names = [name for name in collections if fnmatch.fnmatch(name, f"**/{cleaned}")]
        return sorted(names)

    # --- checking a template: every reachable wildcard exists and none refers back to itself ---

    def _reference_names(self, command: WildcardCommand) -> list[str]:
        if isinstance(command.wildcard, str):
            return [command.wildcard]
        context = SamplingContext(wildcard_manager=self.manager, default_sampling_method=SamplingMethod.COMBINATORIAL)
        try:
            return [str(result) for result in context.sample_prompts(command.wildcard, DYNAMIC_NAME_LIMIT)]
        except (KeyError, RecursionError, DynamicPromptsError):
            return []  # built from a variable set elsewhere: checked when it is generated

    def references(self, command: Command) -> list[tuple[str, tuple[str, ...]]]:
        """(reference as written, the wildcard names it matches) for each wildcard in `command`;
        a reference that matches nothing (or only empty files) raises `DynamicPromptsError`."""
        found: list[tuple[str, tuple[str, ...]]] = []
        for wildcard in wildcard_commands(command):
            found += [(reference, self._matching(reference)) for reference in self._reference_names(wildcard)]
        return found

    def _matching(self, reference: str) -> tuple[str, ...]:
        names = tuple(self.match(reference))
        if not names or not any(self._scan()[name].get_values() for name in names):
            raise missing_wildcard(reference, self.where, exists=bool(names))
        return names

    def _edges_of(self, name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if name not in self._edges:
            edges: list[tuple[str, tuple[str, ...]]] = []
            for entry in self._scan()[name].get_values():
                text = protect(str(entry))
                if WRAP not in text:  # only a `__` can reach another file (variants and variables are checked when drawn)
                    continue
                quick = quick_wildcard_names(text)
                if quick is not None:
                    edges += [(reference, self._matching(reference)) for reference in quick]
                else:
                    edges += self.references(parse_template(text, wildcard=name))
            self._edges[name] = tuple(edges)
        return self._edges[name]

    def check(self, command: Command) -> None:
        """Refuse a template whose wildcards (followed through the files) are missing or loop."""
        for _, names in self.references(command):
            for name in names:
                self._check_from(name)

    def _check_from(self, start: str) -> None:
        if start in self._checked:
            return
        path: list[str] = [start]
        on_path = {start}
        pending: list[list[str]] = [sorted({n for _, names in self._edges_of(start) for n in names})]
        while pending:
            if not pending[-1]:
                pending.pop()
                done = path.pop()
                on_path.discard(done)
                self._checked.add(done)
                continue
            name = pending[-1].pop()
            if name in on_path:
                loop = path[path.index(name):] + [name]
                shown = " -> ".join(f"{WRAP}{n}{WRAP}" for n in loop)
                raise DynamicPromptsError(f"Wildcard files refer to each other in a loop ({shown}), so the prompt would never end: remove one of these references.")
            if name in self._checked:
                continue
            path.append(name)
            on_path.add(name)
            pending.append(sorted({n for _, names in self._edges_of(name) for n in names}))
