"""Prompt styles: applying them as A1111 does, finding them again in a prompt, and styles.csv
reading and writing (missing, extra columns, old format, damaged files never overwritten).

Expected texts were checked against A1111 v1.10.1's `merge_prompts`, `apply_styles_to_prompt`,
`extract_style_text_from_prompt` and `extract_styles_from_prompt` (modules/styles.py).
"""

from __future__ import annotations

import os

import pytest

from modules.prompts.styles import (
    PromptStyle,
    StyleFileError,
    StyleStore,
    apply_style_texts,
    format_styles_csv,
    merge_style_text,
    unwrap_style_text,
)

MERGE = [
    # (style text, prompt, result)
    ("masterpiece", "a cat", "a cat, masterpiece"),  # appended after ", "
    ("masterpiece, {prompt}, 8k", "a cat", "masterpiece, a cat, 8k"),  # placeholder replaced
    ("{prompt} and {prompt}", "x", "x and x"),  # every placeholder
    ("  masterpiece ", "  a cat  ", "a cat, masterpiece"),  # both sides stripped when appending
    ("masterpiece", "", "masterpiece"),  # empty prompt: no leading ", "
    ("", "  a cat ", "a cat"),  # empty style still strips
    ("", "", ""),
    ("photo of {prompt}", "", "photo of "),  # placeholder texts are not stripped
    ("{prompt}", " a cat ", " a cat "),
]


@pytest.mark.parametrize("style, prompt, expected", MERGE)
def test_merge_style_text(style, prompt, expected):
    assert merge_style_text(style, prompt) == expected


def test_styles_apply_in_order_each_to_the_previous_result():
    assert apply_style_texts("cat", ["photo of {prompt}", "8k"]) == "photo of cat, 8k"
    assert apply_style_texts("cat", ["8k", "photo of {prompt}"]) == "photo of cat, 8k"
    assert apply_style_texts("cat", ["8k", "{prompt}, sharp"]) == "cat, 8k, sharp"


@pytest.fixture
def store(tmp_path):
    (tmp_path / "styles.csv").write_text(
        "name,prompt,negative_prompt\n"
        'cinematic,"cinematic still of {prompt}, film grain","cartoon, {prompt}"\n'
        "sharp,8k,blurry\n"
        "# a comment row,ignored,\n"
        "pos only,vivid,\n",
        encoding="utf-8",
    )
    styles = StyleStore(tmp_path / "styles.csv")
    styles.load()
    return styles


def test_apply_styles_to_prompt_and_negative(store):
    assert store.apply_styles("a cat", "ugly", ["cinematic"]) == ("cinematic still of a cat, film grain", "cartoon, ugly")
    assert store.apply_styles("a cat", "", ["sharp"]) == ("a cat, 8k", "blurry")
    assert store.apply_styles("a cat", "ugly", ["cinematic", "sharp"]) == (
        "cinematic still of a cat, film grain, 8k", "cartoon, ugly, blurry")
    # a style with no negative text and an unknown name leave the text stripped, as in A1111
    assert store.apply_styles(" a cat ", " ugly ", ["pos only", "no such style"]) == ("a cat, vivid", "ugly")


def test_load_reads_names_in_order_and_skips_comments(store):
    assert store.names == ["cinematic", "sharp", "pos only"]
    assert store.get("sharp") == PromptStyle("sharp", "8k", "blurry")
    assert store.get("# a comment row") is None


EXTRACT = [
    # (prompt, negative, styles found, prompt left, negative left)
    ("cinematic still of a cat, film grain", "cartoon, ugly", ["cinematic"], "a cat", "ugly"),
    ("a cat, 8k", "blurry", ["sharp"], "a cat", ""),
    ("cinematic still of a cat, film grain, 8k", "cartoon, ugly, blurry", ["cinematic", "sharp"], "a cat", "ugly"),
    ("a cat, 8k", "ugly", [], "a cat, 8k", "ugly"),  # both texts must match
    ("a dog", "", [], "a dog", ""),
]


@pytest.mark.parametrize("prompt, negative, found, left, negative_left", EXTRACT)
def test_extract_styles(store, prompt, negative, found, left, negative_left):
    assert store.extract_styles(prompt, negative) == (found, left, negative_left)


def test_extract_round_trips_apply(store):
    for names in (["sharp"], ["cinematic"], ["cinematic", "sharp"], ["pos only", "sharp"]):
        prompt, negative = store.apply_styles("a red fox", "lowres", names)
        assert store.extract_styles(prompt, negative) == (names, "a red fox", "lowres")


UNWRAP = [
    ("masterpiece", "1girl, art by greg, masterpiece", (True, "1girl, art by greg")),  # A1111's docstring
    ("masterpiece, {prompt}", "masterpiece, 1girl, art by greg", (True, "1girl, art by greg")),
    ("masterpiece, {prompt}", "exquisite, 1girl, art by greg", (False, "exquisite, 1girl, art by greg")),
    ("x", "  a, x  ", (True, "a")),
    ("", " a ", (True, "a")),  # an empty text matches anything (stripped)
    ("{prompt} and {prompt}", "x and x", (False, "x and x")),  # A1111 raises here
]


@pytest.mark.parametrize("style, prompt, expected", UNWRAP)
def test_unwrap_style_text(style, prompt, expected):
    assert unwrap_style_text(style, prompt) == expected


def test_missing_file_is_an_empty_store_and_save_creates_it(tmp_path):
    path = tmp_path / "sub" / "styles.csv"
    styles = StyleStore(path)
    styles.load()
    assert styles.names == []
    styles.put(PromptStyle("new", "a, {prompt}", 'say "hi"'))
    styles.save()
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, CRLF, as A1111 writes it
    assert raw[3:] == b'name,prompt,negative_prompt\r\nnew,"a, {prompt}","say ""hi"""\r\n'
    again = StyleStore(path)
    again.load()
    assert again.styles() == [PromptStyle("new", "a, {prompt}", 'say "hi"')]
    assert not path.with_name("styles.csv.bak").exists()


def test_extra_columns_and_bom_are_tolerated_and_kept(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes("\ufeffname,prompt,negative_prompt,author\r\nneon,neon {prompt},dull,me\r\n".encode("utf-8"))
    styles = StyleStore(path)
    styles.load()
    assert styles.get("neon") == PromptStyle("neon", "neon {prompt}", "dull", (("author", "me"),))
    styles.put(PromptStyle("plain", "p", "n"))
    styles.save()
    assert path.read_bytes().decode("utf-8-sig") == "name,prompt,negative_prompt,author\r\nneon,neon {prompt},dull,me\r\nplain,p,n,\r\n"
    assert path.with_name("styles.csv.bak").read_bytes().startswith(b"\xef\xbb\xbfname,prompt,negative_prompt,author")


def test_old_text_column_short_rows_and_duplicates(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name, text\nold, a b\nshort\nold, newer\n,nameless\n", encoding="utf-8")
    styles = StyleStore(path)
    styles.load()
    # spaces after commas are skipped (A1111 reads with skipinitialspace); the last duplicate wins
    assert styles.styles() == [PromptStyle("old", "newer", ""), PromptStyle("short", "", "")]


def test_delete_and_put_replace_in_place(store):
    store.put(PromptStyle("sharp", "16k", "noise"))
    assert store.delete("cinematic") and not store.delete("cinematic")
    assert store.names == ["sharp", "pos only"]
    assert store.get("sharp").prompt == "16k"


@pytest.mark.parametrize("content, message", [
    (b'name,prompt,negative_prompt\r\nneon,"neon {prompt}, gl', "cut off"),  # truncated mid-field
    (b"nom,texte\r\nx,y\r\n", "needs a header row"),
    (b"name,prompt\r\n\xff\xfe bad bytes\r\n", "not UTF-8"),
])
def test_damaged_file_gives_a_clear_error_and_is_not_overwritten(tmp_path, content, message):
    path = tmp_path / "styles.csv"
    path.write_bytes(content)
    styles = StyleStore(path)
    with pytest.raises(StyleFileError, match=message):
        styles.load()
    styles.put(PromptStyle("x", "y", "z"))
    with pytest.raises(StyleFileError, match="was not saved"):
        styles.save()
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["styles.csv"]  # no temporary or backup left behind


def test_existing_file_is_not_overwritten_before_it_was_loaded(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nkeep,me,\n", encoding="utf-8")
    with pytest.raises(StyleFileError, match="never loaded"):
        StyleStore(path).save()
    assert "keep" in path.read_text(encoding="utf-8")


def test_empty_file_is_an_empty_store(tmp_path):
    (tmp_path / "styles.csv").write_bytes(b"")
    styles = StyleStore(tmp_path / "styles.csv")
    styles.load()
    assert styles.names == []


def test_format_styles_csv_quotes_like_a1111():
    text = format_styles_csv([PromptStyle("a,b", "line\nbreak", "")])
    assert text == 'name,prompt,negative_prompt\r\n"a,b","line\nbreak",\r\n'


def test_names_starting_with_hash_are_refused(store):
    with pytest.raises(Exception, match="does not start with '#'"):
        store.put(PromptStyle("#x", "y", "z"))
