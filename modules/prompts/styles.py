"""Prompt styles: named prompt/negative-prompt snippets kept in A1111's `styles.csv`.

File format (A1111 `modules/styles.py`): CSV with a header row `name,prompt,negative_prompt`, UTF-8
with or without a byte-order mark, read with spaces after commas skipped. Older files name the
prompt column `text`. Rows whose name starts with `#` are comments. Other columns are allowed;
Easel keeps them when it writes the file back (A1111 drops them).

Applying a style (A1111 `merge_prompts`): a style text containing `{prompt}` has every `{prompt}`
replaced by the user's text; any other style text is appended after `", "`, with both sides
stripped and an empty side left out. Styles apply in the order given, each to the result of the
previous one, and the same way to the negative prompt. A name that is not in the file counts as
an empty style, which still strips the text.

Reading infotext back, A1111 removes the styles whose texts wrap the prompt and reports them
(`extract_styles`); Easel does the same.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from modules.errors import UserError
from modules.files import write_atomically

PLACEHOLDER = "{prompt}"
FIELDS = ("name", "prompt", "negative_prompt")


class StyleFileError(UserError):
    """styles.csv could not be read (or, after that, is protected from being overwritten)."""


@dataclass(frozen=True)
class PromptStyle:
    """One row of styles.csv. `extra` holds any other columns, in file order, to write back."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    extra: tuple[tuple[str, str], ...] = ()


def merge_style_text(style_text: str, prompt: str) -> str:
    """One style text applied to one prompt, as A1111's `merge_prompts`."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_style_texts(prompt: str, style_texts: Iterable[str]) -> str:
    """Applies style texts in order, each to the result of the previous one."""
    for style_text in style_texts:
        prompt = merge_style_text(style_text, prompt)
    return prompt


def unwrap_style_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """The reverse of `merge_style_text`, as A1111 reads it from infotext: (matched, prompt without
    the style). Matching compares stripped texts; a matched prompt comes back stripped, an
    unmatched one unchanged. A style text with more than one `{prompt}` never matches (A1111
    raises there)."""
    stripped_prompt = prompt.strip()
    stripped_style = style_text.strip()
    if PLACEHOLDER in stripped_style:
        pieces = stripped_style.split(PLACEHOLDER)
        if len(pieces) != 2:
            return False, prompt
        left, right = pieces
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left):len(stripped_prompt) - len(right)]
        return False, prompt
    if stripped_prompt.endswith(stripped_style):
        rest = stripped_prompt[:len(stripped_prompt) - len(stripped_style)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


def _unwrap_style(style: PromptStyle, prompt: str, negative: str) -> tuple[bool, str, str]:
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative
    matched, new_prompt = unwrap_style_text(style.prompt, prompt)
    if not matched:
        return False, prompt, negative
    matched, new_negative = unwrap_style_text(style.negative_prompt, negative)
    if not matched:
        return False, prompt, negative
    return True, new_prompt, new_negative


def parse_styles_csv(text: str, source: str = "styles.csv") -> tuple[list[PromptStyle], list[str]]:
    """The styles in a styles.csv text (later rows replace earlier ones of the same name) and the
    names of its extra columns. Raises StyleFileError for a file that is cut off inside a quoted
    field or has no name/prompt columns."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:  # A truncated write usually ends inside a quoted field; the lenient reader hides that.
        for _ in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True):
            pass
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise StyleFileError(
                f"{source} ends in the middle of a quoted field, so it was probably cut off while being "
                f"written. Restore it from {source}.bak or fix it in a text editor; Easel will not overwrite it."
            ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = reader.fieldnames or []
    if not header:
        return [], []
    prompt_column = "prompt" if "prompt" in header else "text" if "text" in header else None
    if "name" not in header or prompt_column is None:
        raise StyleFileError(
            f"{source} has the columns {', '.join(header)}; it needs a header row 'name,prompt,negative_prompt'. "
            f"Fix the first line in a text editor; Easel will not overwrite the file."
        )
    extra_columns = [column for column in header if column not in FIELDS and column != prompt_column]
    styles: dict[str, PromptStyle] = {}
    for row in reader:
        name = row.get("name") or ""
        if not name or name.startswith("#"):
            continue
        extra = tuple((column, row.get(column) or "") for column in extra_columns)
        styles[name] = PromptStyle(name, row.get(prompt_column) or "", row.get("negative_prompt") or "", extra)
    return list(styles.values()), extra_columns


def format_styles_csv(styles: Sequence[PromptStyle], extra_columns: Sequence[str] = ()) -> str:
    """styles.csv text for these styles, with A1111's header and quoting (CRLF line ends)."""
    columns = list(FIELDS) + [column for column in extra_columns if column not in FIELDS]
    for style in styles:
        columns += [column for column, _ in style.extra if column not in columns]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for style in styles:
        row = dict(style.extra)
        row.update(name=style.name, prompt=style.prompt, negative_prompt=style.negative_prompt)
        writer.writerow(row)
    return buffer.getvalue()


class StyleStore:
    """The styles of one styles.csv file.

    Nothing is read until `load()`. A missing file is an empty store; a file that cannot be read
    raises StyleFileError from `load()` and from then on `save()` refuses to replace it, so a
    damaged file is never overwritten with less. Writes are atomic (temporary file, then rename),
    and the previous file is kept as `styles.csv.bak`, as A1111 does.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._styles: dict[str, PromptStyle] = {}
        self._extra_columns: list[str] = []
        self._load_error: StyleFileError | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        """(Re)reads the file."""
        with self._lock:
            self._styles, self._extra_columns, self._load_error = {}, [], None
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                self._loaded = True
                return
            try:
                text = data.decode("utf-8-sig")
                styles, extra_columns = parse_styles_csv(text, self.path.name)
            except UnicodeDecodeError:
                self._load_error = StyleFileError(
                    f"{self.path.name} is not UTF-8 text. Save it as UTF-8 (CSV UTF-8 in a spreadsheet program); "
                    f"Easel will not overwrite it."
                )
                raise self._load_error from None
            except StyleFileError as error:
                self._load_error = error
                raise
            self._styles = {style.name: style for style in styles}
            self._extra_columns = extra_columns
            self._loaded = True

    @property
    def names(self) -> list[str]:
        """Style names in file order."""
        return list(self._styles)

    def get(self, name: str) -> PromptStyle | None:
        """The style of that name, or None."""
        return self._styles.get(name)

    def styles(self) -> list[PromptStyle]:
        """All styles in file order."""
        return list(self._styles.values())

    def put(self, style: PromptStyle) -> None:
        """Adds a style, or replaces the one with the same name in place. Call `save()` to write."""
        if not style.name or style.name.startswith("#"):
            raise UserError("A style needs a name that does not start with '#'.")
        with self._lock:
            self._styles[style.name] = style

    def save_new(self, name: str, prompt: str, negative_prompt: str) -> None:
        """Saves the prompt and negative prompt as the style `name` (replacing one of that name);
        UserError for an empty name or two empty prompts."""
        name = (name or "").strip()
        if not name:
            raise UserError("Type a name for the style first.")
        if not prompt.strip() and not negative_prompt.strip():
            raise UserError("The prompt and negative prompt are both empty: nothing to save as a style.")
        self.put(PromptStyle(name, prompt, negative_prompt))
        self.save()

    def delete(self, name: str) -> bool:
        """Removes a style; False when there was none of that name. Call `save()` to write."""
        with self._lock:
            return self._styles.pop(name, None) is not None

    def save(self) -> None:
        """Writes the file atomically (UTF-8 with a byte-order mark, as A1111 writes it)."""
        with self._lock:
            if self._load_error is not None:
                raise StyleFileError(f"{self.path.name} was not saved: {self._load_error}")
            if not self._loaded and self.path.exists():
                raise StyleFileError(f"{self.path.name} was not saved: it exists but was never loaded, so saving would lose its styles.")
            text = format_styles_csv(list(self._styles.values()), self._extra_columns)
            if self.path.exists():
                shutil.copyfile(self.path, self.path.with_name(self.path.name + ".bak"))
            # fsync: a power cut right after a save must not lose the user's styles; the file's mode is kept.
            write_atomically(self.path, text.encode("utf-8-sig"), fsync=True)

    def apply_styles(self, prompt: str, negative_prompt: str, names: Sequence[str]) -> tuple[str, str]:
        """The prompt and negative prompt with the named styles applied in order."""
        chosen = [self._styles.get(name) or PromptStyle(name) for name in names]
        return (apply_style_texts(prompt, [style.prompt for style in chosen]),
                apply_style_texts(negative_prompt, [style.negative_prompt for style in chosen]))

    def extract_styles(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Finds the styles a prompt was built from (A1111's `extract_styles_from_prompt`):
        repeatedly removes the first style, in file order, whose texts wrap both prompts.
        Returns the style names in the order they were applied and the prompts without them."""
        remaining = list(self._styles.values())
        found: list[str] = []
        while True:
            for style in remaining:
                matched, new_prompt, new_negative = _unwrap_style(style, prompt, negative_prompt)
                if matched:
                    prompt, negative_prompt = new_prompt, new_negative
                    remaining.remove(style)
                    found.append(style.name)
                    break
            else:
                return list(reversed(found)), prompt, negative_prompt
