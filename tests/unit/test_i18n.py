"""The translation tables (modules/i18n.py): exact texts and templates, the caller's language from
the page's cookie or the browser's header, a forced language, and A1111 localization files dropped
into localizations/ (their format: {"English text": "translation"}, named after the language)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modules.i18n import Table, Translations, normalise_language

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "localizations"


def table(**entries: str) -> Translations:
    zh = Table("zh-CN")
    zh.add(entries)
    return Translations({"zh-CN": zh})


@pytest.mark.parametrize("code, expected", [
    ("zh_CN", "zh-CN"), ("zh-cn", "zh-CN"), ("zh", "zh-CN"), ("zh-Hans", "zh-CN"), ("zh-TW", "zh-TW"), ("zh-HK", "zh-TW"),
    ("en-US", "en"), ("EN", "en"), ("ja_JP", "ja-JP"), ("fr", "fr"), ("", None), (None, None),
])
def test_language_tags_are_normalised(code, expected):
    assert normalise_language(code) == expected


def test_exact_texts_and_templates_with_their_values():
    words = table(**{"Sampling steps": "迭代步数", "Done: {count} image(s) in {seconds} s": "完成：{count} 张图，用时 {seconds} 秒",
                     "{label} is empty: enter a number.": "{label}为空：请输入数字。", "Seed": "随机数种子"})
    assert words.text("Sampling steps", "zh-CN") == "迭代步数"
    assert words.text("Done: 3 image(s) in 1.5 s", "zh-CN") == "完成：3 张图，用时 1.5 秒"  # a sentence the code made
    assert words.text("Seed is empty: enter a number.", "zh-CN") == "随机数种子为空：请输入数字。"  # its value translated too
    assert words.text("Sampling steps", "en") == "Sampling steps"
    assert words.text("Not in the table", "zh-CN") == "Not in the table"  # English rather than nothing
    assert words.text("Sampling steps", "fr") == "Sampling steps"  # a language without a table: English


def test_a_template_whose_translation_names_other_placeholders_is_left_in_english(caplog):
    words = table(**{"Loaded {name}": "已加载 {model}"})
    assert words.text("Loaded tiny.safetensors", "zh-CN") == "Loaded tiny.safetensors"
    assert "placeholders" in caplog.text


def test_the_language_of_a_request_cookie_then_browser_then_english():
    words = table()
    assert words.language_for(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert words.language_for(None, "de-DE,de;q=0.9,zh;q=0.5") == "zh-CN"  # the first language there is a table for
    assert words.language_for("en", "zh-CN,zh;q=0.9") == "en"  # the page's own language (Gradio's picker) wins
    assert words.language_for(None, "de-DE") == "en" and words.language_for(None, None) == "en"
    words.forced = "zh-CN"
    assert words.language_for("en", "en-US") == "zh-CN" and words.text("x", "en") == "x"


def test_a1111_localization_files_load_and_win_over_easels_own(tmp_path):
    translations = Translations.load([FIXTURES])
    assert "zh-CN" in translations.languages
    assert translations.text("Generate", "zh-CN") == "生成！"  # the dropped-in file's word
    assert translations.text("A1111 only text", "zh-CN") == "只有 A1111 才有的文字"
    easel_only = json.loads((Path("modules/locales/zh-CN.json")).read_text(encoding="utf-8"))
    some_key = next(key for key in easel_only if "{" not in key and key not in ("Generate", "Interrupt", "Sampling steps"))
    assert translations.text(some_key, "zh-CN") == easel_only[some_key]  # Easel's own table still answers the rest
    assert translations.text("Batch count", "zh-CN") != 3  # a non-text entry is skipped


def test_broken_localization_files_are_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "ja_JP.json").write_text("{broken", encoding="utf-8")
    (tmp_path / "ko_KR.json").write_text("[1, 2]", encoding="utf-8")
    translations = Translations.load([tmp_path, tmp_path / "missing-folder"])
    assert "ja-JP" not in translations.languages and "ko-KR" not in translations.languages
    assert "ja_JP.json is unreadable" in caplog.text and "ko_KR.json is not a JSON object" in caplog.text


def test_a_forced_language_without_a_table_falls_back_to_the_browser(caplog):
    translations = Translations.load([], forced="xx")
    assert translations.forced is None and "No translation for the language 'xx'" in caplog.text
    assert Translations.load([], forced="zh_CN").forced == "zh-CN"
    assert Translations.load([], forced="auto").forced is None


def test_the_page_gets_every_table_or_the_forced_one_under_every_locale():
    from modules.ui.text import GRADIO_GAPS, Words

    translations = Translations.load([])
    zh = Words(translations).gradio_i18n().translations_dict
    assert zh["zh-CN"]["Sampling steps"] != "Sampling steps"
    # English needs no table, only Gradio's own keys its locales lack (a screen reader hears "Done")
    assert zh["en"] == GRADIO_GAPS and zh["en"]["common.complete"] == "Done"
    assert zh["zh-CN"]["image_editor.clear_canvas"] == "清空画布"  # the mask canvas's tools, which Gradio's Chinese table lacks
    assert zh["zh-CN"]["common.complete"] == "完成"
    translations.forced = "zh-CN"
    forced = Words(translations).gradio_i18n().translations_dict
    assert forced["en"]["Sampling steps"] == forced["zh-CN"]["Sampling steps"] == zh["zh-CN"]["Sampling steps"]


def test_every_text_the_page_and_its_messages_show_has_a_chinese_translation():
    """tools/i18n_keys.py lists every text: the page as built, the texts the code hands to the page,
    and the error sentences below it (as templates)."""
    from tools.i18n_keys import all_texts

    table = json.loads(Path("modules/locales/zh-CN.json").read_text(encoding="utf-8"))
    missing = sorted(text for text in all_texts() if text not in table)
    assert missing == [], f"{len(missing)} texts without Chinese, e.g. {missing[:10]} (run tools/i18n_keys.py)"
    placeholders = lambda text: sorted(re.findall(r"\{(\w+)\}", text))  # noqa: E731
    for key, value in table.items():
        assert placeholders(key) == placeholders(value), key
        assert len(set(placeholders(key))) == len(placeholders(key)), f"two values share a name in {key!r}"


def test_a_sentence_whose_translation_reorders_its_values_keeps_each_in_its_place():
    translations = Translations.load([])
    english = "LoRA 'cat' was not found in models/Lora/. Put the file there and press refresh."
    assert translations.text(english, "zh-CN") == "在 models/Lora/ 中找不到 LoRA 'cat'。请将文件放入该文件夹，然后点击刷新。"
    # a value the code fills in from a short list of words is translated too
    missing = "No checkpoint named 'x' in models/Stable-diffusion (available: a.safetensors). Press refresh after adding files."
    assert translations.text(missing, "zh-CN").startswith("models/Stable-diffusion 中没有名为 'x' 的模型 (checkpoint)")


def test_a_key_of_placeholders_only_is_never_a_pattern():
    translations = table(**{"{title}: {error}": "{title}：{error}", "Prompt matrix": "提示词矩阵"})
    # an extension's English sentence must not come out half translated
    assert translations.text("Prompt matrix: makes every combination.", "zh-CN") == "Prompt matrix: makes every combination."
    assert translations.text("{title}: {error}", "zh-CN") == "{title}：{error}"


def test_every_parameter_of_the_generation_tabs_says_what_it_does():
    """A tooltip (modules/ui/tooltips.py, by elem id suffix) or a line under the label (`info`)."""
    import gradio as gr

    from modules.ui.tooltips import TOOLTIPS
    from tools.i18n_keys import built_page

    kinds = (gr.Slider, gr.Number, gr.Dropdown, gr.Radio, gr.Checkbox, gr.CheckboxGroup, gr.Textbox, gr.Button)
    parameters = [block for block in built_page().blocks.values()
                  if isinstance(block, kinds) and (block.elem_id or "").startswith(("txt2img-", "img2img-", "outpaint-"))
                  and block.visible is not False]
    silent = [block.elem_id for block in parameters if not block.info and not any(block.elem_id.endswith(suffix) for suffix in TOOLTIPS)]
    assert len(parameters) > 80 and silent == [], silent


def test_the_sections_under_the_parameters_come_in_their_fixed_order():
    from modules.ui.sections import SECTION_ORDER
    from tools.i18n_keys import built_page

    ids = [block.elem_id for block in built_page().blocks.values() if getattr(block, "elem_id", None)]  # in the order built
    for prefix in ("txt2img", "img2img"):
        present = [name for name, suffix in SECTION_ORDER if f"{prefix}{suffix}" in ids]
        placed = sorted(present, key=lambda name: ids.index(prefix + dict(SECTION_ORDER)[name]))
        assert placed == present and "script" in present and "networks" in present, (prefix, placed)
