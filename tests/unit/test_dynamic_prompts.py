"""Dynamic Prompts (modules/prompts/dynamic): templates expanded as sd-dynamic-prompts 2.17.1 expands
them (its dynamic_prompting.py, helpers.py and generator_builder.py over dynamicprompts 0.31.0),
wildcard files, the API's argument forms, A1111 syntax inside templates and the infotext keys.

The expected lists marked "extension" were computed by the extension's own `process()` logic
(helpers.py `get_seeds`/`generate_prompts` and `GeneratorBuilder`, run over dynamicprompts 0.31.0
with a stand-in for A1111's `p`)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from modules.infotext.create import join_infotext
from modules.infotext.parse import parse_infotext
from modules.prompts import extract_extra_networks, parse_emphasis, prompt_schedule, split_and
from modules.prompts.dynamic import (
    DynamicPromptsError,
    DynamicRequest,
    WildcardLibrary,
    expand,
    hires_prompts,
    is_dynamic_key,
    parse_alwayson,
    read_template,
    strip_template_info,
    template_params,
    wildcard_folders,
)
from modules.prompts.dynamic.args import FIELDS
from modules.prompts.dynamic.syntax import parse_template, protect, quick_wildcard_names, wildcard_commands

RANDOM = DynamicRequest()
COMBINATORIAL = DynamicRequest(combinatorial=True)


def combos(template: str, **settings) -> list[str]:
    return expand(template, "", DynamicRequest(combinatorial=True, **settings), 1, 1).prompts


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "wildcards"
    (root / "animals").mkdir(parents=True)
    (root / "colors.txt").write_text("# warm and cold\nred\n\nblue\n  # indented comment\ngreen\n", encoding="utf-8")
    (root / "animals" / "small.txt").write_text("cat\n狐狸\nsouris\n", encoding="utf-8")
    (root / "outfit.txt").write_text("a __colors__ hat\n{big|small} __animals/small__\n", encoding="utf-8")
    (root / "people.yaml").write_text("heroes:\n  - 3::knight\n  - wizard\n  - {text: archer, weight: 2}\nvillains: [orc, troll]\n", encoding="utf-8")
    (root / "moods.json").write_text('{"moods": {"good": ["happy", "calm"], "bad": ["sad"]}}', encoding="utf-8")
    return root


# --- variants, combinatorial mode ----------------------------------------------------------------


def test_combinatorial_lists_every_combination_in_order():
    assert combos("{a|b} {c|d|e}") == ["a c", "a d", "a e", "b c", "b d", "b e"]
    assert combos("{a|{b|c}} x") == ["a x", "b x", "c x"]  # nested variants
    assert combos("plain words") == ["plain words"]  # the extension makes it one image, whatever the batch count


def test_ranges_and_separators():
    assert combos("{2$$a|b|c}") == ["a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]
    assert len(combos("{1-2$$a|b|c}")) == 3 + 6
    assert combos("{2$$ and $$a|b}") == ["a and b", "b and a"]
    drawn = expand("{2$$a|b|c}", "", RANDOM, 20, 5).prompts
    assert all(len(set(p.split(","))) == 2 for p in drawn)


def test_weighted_variants():
    assert combos("{9::a|1::b}") == ["a", "b"]  # weights only weigh the random choice
    drawn = expand("{9::a|1::b}", "", RANDOM, 200, 3).prompts
    assert 150 < drawn.count("a") < 200 and "b" in drawn


def test_batches_and_max_generations_as_the_extension():
    # extension: batches repeat the list, max_generations cuts each repetition, seeds go seed + i
    got = expand("{red|green} {cat|dog|fox}", "{a|b}", DynamicRequest(combinatorial=True, max_generations=4), 1, 7)
    assert got.prompts == ["red cat", "red dog", "red fox", "green cat"]
    assert got.negatives == ["a", "b", "a", "b"] and got.seeds == [7, 8, 9, 10] and got.subseeds == [0, 1, 2, 3]
    # extension: with a fixed seed each repetition keeps one seed; a plain negative counts once per
    # batch, so 2 batches pair 12 prompts with 2 negatives: 24 images
    got = expand("{red|green} {cat|dog|fox}", "ugly", DynamicRequest(combinatorial=True, combinatorial_batches=2, use_fixed_seed=True), 1, 7)
    assert got.count == 24 and got.prompts[:4] == ["red cat", "red cat", "red dog", "red dog"]
    assert got.seeds == [7] * 12 + [8] * 12 and got.subseeds == [0] * 24
    # every prompt with every negative prompt when max_generations is 0
    got = expand("{a|b}", "{x|y}", COMBINATORIAL, 1, 0)
    assert list(zip(got.prompts, got.negatives)) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]


def test_a_billion_combinations_are_capped_quickly_and_in_little_memory():
    template = " ".join("{" + "|".join(f"w{i}{j}" for j in range(10)) + "}" for i in range(9))  # 10^9
    tracemalloc.start()
    start = time.perf_counter()
    try:
        got = expand(template, "", COMBINATORIAL, 1, 1)
        capped_max = expand(template, "", DynamicRequest(combinatorial=True, max_generations=10**9, combinatorial_batches=10), 1, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10
    assert peak < 50e6
    assert got.count == 1000 and got.capped and "stopped at 1000 images" in got.notes[0]
    assert got.prompts[0] == " ".join(f"w{i}0" for i in range(9))
    assert capped_max.count == 1000 and capped_max.capped
    assert expand(template, "", COMBINATORIAL, 1, 1, limit=50).count == 50
    assert not expand("{a|b}", "", COMBINATORIAL, 1, 1).capped


# --- random mode and seeds ------------------------------------------------------------------------


def test_random_mode_draws_as_the_extension():
    got = expand("{red|green|blue|gold} {cat|dog}", "{blurry|ugly}", RANDOM, 6, 1234)
    assert got.prompts == ["red dog", "blue cat", "blue cat", "gold cat", "green dog", "green cat"]  # extension
    assert got.negatives == ["blurry", "ugly", "ugly", "ugly", "blurry", "blurry"]  # extension
    assert got.seeds == list(range(1234, 1240)) and got.subseeds == list(range(6))


def test_a_picture_prompt_comes_back_from_its_seed():
    template = "{red|green|blue|gold} {cat|dog|fox|owl}, {1-2$$day|night|dusk}"
    job = expand(template, "", RANDOM, 8, 555)
    assert job == expand(template, "", RANDOM, 8, 555)
    for i, seed in enumerate(job.seeds):
        assert expand(template, "", RANDOM, 1, seed).prompts == [job.prompts[i]]


def test_fixed_seed_and_variation_seed():
    fixed = expand("{a|b|c|d|e|f}", "", DynamicRequest(use_fixed_seed=True), 5, 40, subseed=9)
    assert len(set(fixed.prompts)) == 1 and fixed.seeds == [40] * 5 and fixed.subseeds == [9] * 5
    # a variation seed freezes the prompt (extension: its first draw from the seed) and keeps the seed
    frozen = expand("{red|green|blue|gold} {cat|dog}", "", RANDOM, 3, 1234, subseed=99, subseed_strength=0.3)
    assert frozen.prompts == ["red dog"] * 3 and frozen.seeds == [1234] * 3 and frozen.subseeds == [99, 100, 101]


def test_unlinked_seed_draws_apart_from_the_seed():
    request = DynamicRequest(unlink_seed_from_prompt=True, use_fixed_seed=True)
    one = expand("{a|b|c|d|e|f|g|h}", "", request, 6, 1, unlinked_seed=11)
    two = expand("{a|b|c|d|e|f|g|h}", "", request, 6, 2, unlinked_seed=11)
    assert one.prompts == two.prompts and len(set(one.prompts)) > 1
    assert one.seeds == [1, 2, 3, 4, 5, 6] and two.seeds == [2, 3, 4, 5, 6, 7]  # A1111's seeds, fixed seed or not
    assert len(expand("{a|b|c|d|e|f|g|h}", "", request, 6, 1).prompts) == 6


def test_disabled_or_empty_templates_are_left_as_they_are():
    got = expand("{a|b}", "{x|y}", DynamicRequest(enabled=False), 2, 5)
    assert got.prompts == ["{a|b}", "{a|b}"] and got.negatives == ["{x|y}", "{x|y}"] and got.seeds == [5, 6]
    assert expand("", "", RANDOM, 2, 5).prompts == ["", ""]


def test_hires_prompts_follow_the_prompt_only_when_they_were_the_same():
    assert hires_prompts(["a", "b"], "{a|b}", "{a|b}") == ["a", "b"]
    assert hires_prompts(["a", "b"], "other", "{a|b}") == ["other", "other"]


# --- wildcards ---------------------------------------------------------------------------------


def test_wildcard_files_txt_yaml_json_nested_and_globs(folder: Path):
    library = WildcardLibrary([folder])
    assert [f.name for f in library.files()] == ["animals/small", "colors", "heroes", "moods/bad", "moods/good", "outfit", "villains"]
    assert library.entries("__colors__") == ["red", "blue", "green"]  # comments and blank lines skipped
    assert library.entries("heroes") == ["knight", "wizard", "archer"]
    lib = {"library": library}
    assert expand("__colors__", "", COMBINATORIAL, 1, 1, **lib).prompts == ["blue", "green", "red"]  # dynamicprompts sorts
    assert expand("__animals/small__", "", COMBINATORIAL, 1, 1, **lib).prompts == ["cat", "souris", "狐狸"]
    assert expand("__small__", "", COMBINATORIAL, 1, 1, **lib).prompts == ["cat", "souris", "狐狸"]  # `**/small` retry
    assert expand("__moods/*__", "", COMBINATORIAL, 1, 1, **lib).prompts == ["calm", "happy", "sad"]
    nested = expand("__outfit__", "", COMBINATORIAL, 1, 1, **lib).prompts
    assert nested[:3] == ["a blue hat", "a green hat", "a red hat"] and "small 狐狸" in nested and len(nested) == 3 + 6
    heroes = expand("__heroes__", "", RANDOM, 300, 1, **lib).prompts
    assert heroes.count("knight") > heroes.count("wizard")  # 3::knight is weighted


def test_earlier_folders_win_and_broken_files_are_reported(tmp_path: Path, folder: Path):
    extension = tmp_path / "extensions" / "sd-dynamic-prompts" / "wildcards"
    extension.mkdir(parents=True)
    (extension / "colors.txt").write_text("purple\n", encoding="utf-8")
    (extension / "extra.txt").write_text("only here\n", encoding="utf-8")
    (extension / "broken.yaml").write_text("a: [unclosed\n", encoding="utf-8")
    folders = wildcard_folders(tmp_path, tmp_path / "extensions")
    assert folders == [tmp_path / "wildcards", extension]
    library = WildcardLibrary(folders)
    assert library.entries("colors") == ["red", "blue", "green"]
    assert expand("__extra__", "", RANDOM, 1, 1, library=library).prompts == ["only here"]
    assert len(library.problems) == 1 and "broken.yaml" in library.problems[0]


def test_a_missing_wildcard_is_named(folder: Path):
    library = WildcardLibrary([folder])
    for template in ("__nothing__ here", "{a|b|c|d|__nothing__}", "{a|b} __nothing__"):
        for request in (RANDOM, COMBINATORIAL):
            with pytest.raises(DynamicPromptsError, match=r"Wildcard __nothing__ was not found in .*wildcards"):
                expand(template, "", request, 4, 1, library=library)
    (folder / "deep.txt").write_text("x __ghost__\n", encoding="utf-8")
    (folder / "empty.txt").write_text("# nothing yet\n", encoding="utf-8")
    library.refresh()
    with pytest.raises(DynamicPromptsError, match="__ghost__"):
        expand("__deep__", "", RANDOM, 1, 1, library=library)
    with pytest.raises(DynamicPromptsError, match="__empty__ has no entries"):
        expand("__empty__", "", RANDOM, 1, 1, library=library)
    with pytest.raises(DynamicPromptsError, match="__nothing__"):
        expand("a", "__nothing__", RANDOM, 1, 1, library=library)
    with pytest.raises(DynamicPromptsError, match="__nothing__"):
        library.entries("nothing")


def test_a_cycle_between_wildcard_files_is_refused_quickly(tmp_path: Path):
    (tmp_path / "a.txt").write_text("red\n__b__ x\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("blue\n{y|__c__}\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("__a__\n", encoding="utf-8")
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "all.txt").write_text("__loop/*__\n", encoding="utf-8")
    library = WildcardLibrary([tmp_path])
    start = time.perf_counter()
    for request in (RANDOM, COMBINATORIAL):
        with pytest.raises(DynamicPromptsError, match=r"loop \(__a__ -> __b__ -> __c__ -> __a__\)"):
            expand("{x|__a__}", "", request, 2, 1, library=library)
        with pytest.raises(DynamicPromptsError, match=r"loop \(__loop/all__ -> __loop/all__\)"):
            expand("__loop/all__", "", request, 2, 1, library=library)
    assert time.perf_counter() - start < 5


def test_wildcard_names_found_without_the_parser_match_the_parser():
    for text in ("__a__ and __b/c__", "x__y__z", "(masterpiece:1.2), __artist__ style", "a __*__", "no wildcard"):
        quick = quick_wildcard_names(text)
        assert quick is not None
        assert sorted(quick) == sorted(str(w.wildcard) for w in wildcard_commands(parse_template(text)))
    for text in ("{a|__b__}", "//__a__", "__a(x=1)__", "a #__b__"):
        assert quick_wildcard_names(text) is None


# --- A1111 syntax in templates -----------------------------------------------------------------


@pytest.mark.parametrize("request_", [RANDOM, COMBINATORIAL])
def test_a1111_syntax_passes_through(request_: DynamicRequest):
    plain = "(red:1.2) cat, [dog:fox:5], [a|b], ((sharp)) BREAK sky AND sea <lora:my-lora_v1:0.8> \\(paren\\)"
    assert expand(plain, "(worst quality:1.4)", request_, 2, 3).prompts == [plain] * (1 if request_.combinatorial else 2)
    got = expand("{(red:1.2)|[blue:green:0.5]} cat [x|y] BREAK {a [b|c]|d} AND 50% <lora:{one|two}:0.8>", "", request_, 40, 3).prompts
    for prompt in got:
        assert "[x|y]" in prompt and "50%" in prompt and ("a [b|c]" in prompt or " d " in prompt)
        assert prompt.startswith(("(red:1.2) cat", "[blue:green:0.5] cat"))
        text, networks = extract_extra_networks(prompt)
        assert [(n.kind, n.positional) for n in networks] in ([("lora", ("one", "0.8"))], [("lora", ("two", "0.8"))])
        parts = split_and(text)
        assert len(parts) == 2
        for part, _ in parts:
            assert prompt_schedule(part, 20) and parse_emphasis(part)
    assert len(set(got)) == 8 or not request_.combinatorial


def test_protect_keeps_dynamic_syntax():
    for template in ("{2$$a|b}", "${x=!{a|b}} ${x}", "%{wrap $$ {a|b}}", "[{a|b}:c:5]"):
        assert protect(template) == template
    assert expand("[{a|b}|c]", "", COMBINATORIAL, 1, 1).prompts == ["[a|c]", "[b|c]"]
    assert expand("a $5 bill, 50% off {x|y}", "", COMBINATORIAL, 1, 1).prompts == ["a $5 bill, 50% off x", "a $5 bill, 50% off y"]


def test_template_errors_say_where():
    with pytest.raises(DynamicPromptsError, match="cannot be read at character 1"):
        expand("{a|b", "", RANDOM, 1, 1)
    with pytest.raises(DynamicPromptsError, match="negative prompt template"):
        expand("a", "{x|", RANDOM, 1, 1)
    with pytest.raises(DynamicPromptsError, match="variable it never sets"):
        expand("${undefined}", "", RANDOM, 1, 1)


# --- arguments -----------------------------------------------------------------------------------

POSITIONAL = [True, True, 3, False, False, False, 1.1, 1.5, 100, 0.7, True, False, False, False, False, 12, "Gustavosta/MagicPrompt-Stable-Diffusion", ""]


def test_the_eighteen_positional_arguments():
    assert len(FIELDS) == len(POSITIONAL) == 18
    request = parse_alwayson("Dynamic Prompts v2.17.1", {"args": POSITIONAL})
    assert request == DynamicRequest(combinatorial=True, combinatorial_batches=3, use_fixed_seed=True, disable_negative_prompt=False, max_generations=12)
    assert parse_alwayson("dynamic prompts v2.10.0", POSITIONAL + ["ignored"]) == request  # A1111 drops extras
    assert parse_alwayson("DYNAMIC PROMPTS", {"args": [False]}) == DynamicRequest(enabled=False)  # the rest: UI defaults
    assert parse_alwayson("Dynamic Prompts v2.17.1", {}) == DynamicRequest()  # UI defaults: enabled
    assert parse_alwayson("Dynamic Prompts v2.17.1", {"args": ["true", 1, "2"]}).combinatorial_batches == 2


def test_easels_dict_form_and_bad_values():
    assert parse_alwayson("Dynamic Prompts", {"args": {"combinatorial": True, "max_generations": 5}}) == DynamicRequest(combinatorial=True, max_generations=5)
    assert parse_alwayson("Dynamic Prompts", {"use_fixed_seed": "yes"}).use_fixed_seed is True
    with pytest.raises(DynamicPromptsError, match="did you mean combinatorial_batches"):
        parse_alwayson("Dynamic Prompts", {"combinatorial_batch": 2})
    with pytest.raises(DynamicPromptsError, match="combinatorial_batches must be at least 1"):
        parse_alwayson("Dynamic Prompts", {"args": [True, True, 0]})
    with pytest.raises(DynamicPromptsError, match="max_generations must be a whole number"):
        parse_alwayson("Dynamic Prompts", {"max_generations": 2.5})
    with pytest.raises(DynamicPromptsError, match="enabled must be true or false"):
        parse_alwayson("Dynamic Prompts", ["maybe"])
    with pytest.raises(DynamicPromptsError, match="not a Dynamic Prompts script"):
        parse_alwayson("Regional Prompter", [True])
    with pytest.raises(DynamicPromptsError, match="must be a list"):
        parse_alwayson("Dynamic Prompts", {"args": 3})


def test_is_dynamic_key():
    assert is_dynamic_key("Dynamic Prompts v2.17.1") and is_dynamic_key(" dynamic prompts v3") and is_dynamic_key("Dynamic Prompts")
    assert not is_dynamic_key("Dynamic Thresholding") and not is_dynamic_key("ADetailer") and not is_dynamic_key(None)


@pytest.mark.parametrize("field", ["magic_prompt", "feeling_lucky", "attention_grabber", "enable_jinja_templates"])
def test_features_that_need_models_or_run_code_are_refused_by_name(field: str):
    request = DynamicRequest(**{field: True})
    with pytest.raises(DynamicPromptsError, match=field):
        expand("{a|b}", "", request, 1, 1)
    expand("{a|b}", "", DynamicRequest(enabled=False, **{field: True}), 1, 1)  # nothing is checked when off


def test_magic_prompt_without_a_model_is_off_as_in_the_extension():
    assert expand("{a|b}", "", DynamicRequest(magic_prompt=True, magic_model=""), 1, 1).count == 1


# --- infotext ------------------------------------------------------------------------------------


def test_template_infotext_round_trip():
    template = 'a {red|blue} "cat",\nby __artists__: (sharp:1.2)'
    negative = "{ugly|blurry}, text"
    job = expand(template.replace("__artists__", "someone"), negative, RANDOM, 1, 9)
    params = {"Steps": 20, "Seed": job.seeds[0], **template_params(template, negative)}
    parsed = parse_infotext(join_infotext(job.prompts[0], job.negatives[0], params))
    assert read_template(parsed) == (template, negative)
    assert parsed["Prompt"] == job.prompts[0]
    assert template_params(template, "", write=True) == {"Template": template}
    assert template_params(template, negative, write=False) == {}
    assert read_template({"Prompt": "a"}) is None
    assert read_template({"Negative Template": "x"}) == ("", "x")


def test_spilled_templates_are_stripped_as_the_extension_does():
    assert strip_template_info({"Prompt": "a red cat\nTemplate: a {red|blue} cat"})["Prompt"] == "a red cat"
    cleaned = strip_template_info({"Prompt": "a", "Negative prompt": "ugly\nTemplate: x\nNegative Template: y"})
    assert cleaned["Negative prompt"] == "ugly"
    assert strip_template_info({"Prompt": "a", "Negative prompt": "ugly\nNegative Template: y"})["Negative prompt"] == "ugly"
