"""Easel's words in other languages: one translation table per language, English text -> translation.

Every string a user reads in the UI is written in English in the code and looked up here: labels
and tooltips (the page asks Gradio's i18n with the English text as the key), and the sentences
Python makes at run time (progress, notices, errors), translated for the caller's language.

- Easel's own tables are `modules/locales/<language>.json` (English and Simplified Chinese are
  complete: a test walks the page in zh-CN).
- A1111's localization files (`localizations/*.json`, `{"English text": "translation"}`, the file
  named after the language, e.g. `zh_CN.json`) can be dropped into the localizations folder; their
  entries are used for the texts Easel shares with A1111, and win over Easel's own.
- A key with `{name}` placeholders is a template: "Loaded {name} in {seconds} s" translates any
  sentence of that shape, its values carried over. Sentences made with f-strings in the code are
  matched this way, so the code keeps writing plain English.
- Infotext keys, API fields and file names are formats, not text: they are never translated.

The language: `--language` or the `language` setting when set, else the browser's (Gradio's page
follows `navigator.language`; run-time sentences follow the page's `lang`, which the page stores in
the `easel-language` cookie, else the request's Accept-Language header).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LOCALES = Path(__file__).with_name("locales")
ENGLISH = "en"
AUTO = "auto"
COOKIE = "easel-language"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def N_(text: str) -> str:
    """Marks an English text kept as data (a choice's hint, a state, a word put into a sentence) for the
    tables (tools/i18n_keys.py collects these); it is translated where it is shown."""
    return text


def normalise_language(code: str | None) -> str | None:
    """A language tag as Easel names its tables: "zh_CN", "zh-cn" -> "zh-CN"; "en-US" -> "en"; None for nothing."""
    if not code:
        return None
    parts = code.strip().replace("_", "-").split("-")
    language = parts[0].lower()
    if not language:
        return None
    if language == "en":
        return ENGLISH
    if language == "zh":  # Simplified unless the tag says Traditional
        region = parts[1].upper() if len(parts) > 1 else "CN"
        return "zh-TW" if region in ("TW", "HK", "MO", "HANT") else "zh-CN"
    return language if len(parts) == 1 else f"{language}-{parts[1].upper()}"


@dataclass
class Template:
    """A key with placeholders, as a pattern that matches the sentences it stands for."""

    key: str
    pattern: re.Pattern[str]
    names: list[str]

    @classmethod
    def of(cls, key: str) -> Template:
        names = _PLACEHOLDER.findall(key)
        regex = "".join(f"(?P<{part[1:-1]}__{i}>.+?)" if _PLACEHOLDER.fullmatch(part) else re.escape(part)
                        for i, part in enumerate(re.split(r"(\{\w+\})", key)) if part)
        return cls(key, re.compile(f"^{regex}$", re.S), names)


@dataclass
class Table:
    """One language: exact texts and templates."""

    language: str
    texts: dict[str, str] = field(default_factory=dict)
    templates: list[Template] = field(default_factory=list)

    def add(self, entries: dict[str, str]) -> None:
        for key, value in entries.items():
            if not isinstance(key, str) or not isinstance(value, str) or not value:
                continue
            self.texts[key] = value
            # A key of placeholders and punctuation only ("{title}: {error}") would match any sentence:
            # it is looked up exactly, never used as a pattern.
            wording = re.search(r"[A-Za-z]{2}", _PLACEHOLDER.sub("", key))
            if wording and _PLACEHOLDER.search(key) and not any(t.key == key for t in self.templates):
                self.templates.append(Template.of(key))
        self.templates.sort(key=lambda t: -len(t.key))  # the most specific shape first

    def translate(self, text: str) -> str | None:
        exact = self.texts.get(text)
        if exact is not None:
            return exact
        for template in self.templates:
            match = template.pattern.match(text)
            if match is None:
                continue
            # A captured value that is itself a text of the table ("Seed" in "{label} is empty") is translated too.
            values = {name.rsplit("__", 1)[0]: self.texts.get(value, value) for name, value in match.groupdict().items()}
            try:
                return self.texts[template.key].format(**values)
            except (KeyError, IndexError, ValueError):
                log.warning("Translation of %r (%s) has placeholders its English does not: left in English", template.key, self.language)
                return None
        return None


class Translations:
    """Every language's table; `text(english, language)` is the only way a sentence is translated."""

    def __init__(self, tables: dict[str, Table] | None = None, forced: str | None = None):
        self.tables = tables or {}
        self.forced = forced  # --language / the setting; None: the browser's

    @classmethod
    def load(cls, folders: list[Path] | None = None, forced: str | None = None) -> Translations:
        """Easel's tables, then the localization files in `folders` in order (an extension's
        `localizations/`, the user's A1111 files): a later file's entries win."""
        tables: dict[str, Table] = {}
        for path in sorted(LOCALES.glob("*.json")):
            _merge(tables, path)
        for folder in folders or []:
            if Path(folder).is_dir():
                for path in sorted(Path(folder).glob("*.json")):
                    _merge(tables, path)
        language = normalise_language(forced) if forced and forced != AUTO else None
        if language is not None and language != ENGLISH and language not in tables:
            log.warning("No translation for the language %r (have: %s); the page follows the browser.", forced, ", ".join(sorted(tables)) or "none")
            language = None
        return cls(tables, language)

    @property
    def languages(self) -> list[str]:
        return [ENGLISH, *sorted(self.tables)]

    def text(self, english: str, language: str | None) -> str:
        """`english` in `language` (the forced one wins); the English text when there is no translation."""
        chosen = self.forced or normalise_language(language) or ENGLISH
        table = self.tables.get(chosen)
        if table is None or not english:
            return english
        return table.translate(english) or english

    def language_for(self, cookie: str | None, accept_language: str | None) -> str:
        """The language of a request: the forced one, else the page's (cookie), else the browser's."""
        if self.forced:
            return self.forced
        for candidate in (cookie, *_accepted(accept_language)):
            language = normalise_language(candidate)
            if language == ENGLISH or language in self.tables:
                return language
        return ENGLISH


def _accepted(header: str | None) -> list[str]:
    """The languages of an Accept-Language header, most wanted first."""
    if not header:
        return []
    ranked = []
    for part in header.split(","):
        tag, _, quality = part.strip().partition(";q=")
        try:
            ranked.append((float(quality) if quality else 1.0, tag.strip()))
        except ValueError:
            continue
    return [tag for _, tag in sorted(ranked, key=lambda item: -item[0]) if tag and tag != "*"]


def _merge(tables: dict[str, Table], path: Path) -> None:
    language = normalise_language(path.stem)
    if language is None or language == ENGLISH:
        return
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("Localization file %s is unreadable (%s): skipped.", path, error)
        return
    if not isinstance(entries, dict):
        log.warning("Localization file %s is not a JSON object of texts: skipped.", path)
        return
    tables.setdefault(language, Table(language)).add(entries)

