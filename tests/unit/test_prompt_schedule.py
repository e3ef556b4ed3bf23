"""Prompt editing, alternation, hires-pass addressing and AND, table-driven.

Every expected schedule below was checked against A1111 v1.10.1's
`get_learned_conditioning_prompt_schedules` (its lark grammar run on the same input), and every
AND split against its `re_AND`/`re_weight` logic. The first table holds A1111's own doctests.
"""

from __future__ import annotations

import pytest

from modules.prompts.parser import PromptSyntaxError
from modules.prompts.schedule import Alternation, Scheduled, parse_schedule, prompt_schedule, split_and, text_at_step

A1111_DOCTESTS = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    # A1111's docstring says [(5, "a  c"), (10, "a {b|d{ c")], but its doctests are not run: since
    # alternation took "|" out of plain text, its code gives this (a "|" outside [a|b] fails the parse).
    ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)"), (5, "a"), (6, "(b:1.1)"),
                     (7, "a"), (8, "(b:1.1)"), (9, "a"), (10, "(b:1.1)")]),
    ("[fe|]male", [(t, "female" if t % 2 else "male") for t in range(1, 11)]),
    ("[fe|||]male", [(t, "female" if t % 4 == 1 else "male") for t in range(1, 11)]),
]


@pytest.mark.parametrize("prompt, expected", A1111_DOCTESTS)
def test_a1111_doctests(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_a1111_hires_doctests():
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]


REFERENCE_EXAMPLES = [
    # REFERENCE.md §2 at 20 steps
    ("[cat:dog:0.25]", [(5, "cat"), (20, "dog")]),
    ("[cat:dog:5]", [(5, "cat"), (20, "dog")]),
    ("[cat:dog:1]", [(1, "cat"), (20, "dog")]),
    ("[cat:dog:1.0]", [(20, "cat")]),  # "." makes it a fraction: 1.0 * 20 = the whole run
]


@pytest.mark.parametrize("prompt, expected", REFERENCE_EXAMPLES)
def test_reference_examples(prompt, expected):
    assert prompt_schedule(prompt, 20) == expected


@pytest.mark.parametrize("prompt, cat_steps", [("[cat:dog:0.25]", 5), ("[cat:dog:5]", 5), ("[cat:dog:1]", 1), ("[cat:dog:1.0]", 20)])
def test_text_at_each_step(prompt, cat_steps):
    schedule = prompt_schedule(prompt, 20)
    texts = [text_at_step(schedule, step) for step in range(1, 21)]
    assert texts == ["cat"] * cat_steps + ["dog"] * (20 - cat_steps)


def test_text_past_the_end_is_the_first_entry_like_a1111():
    # reconstruct_cond_batch starts from index 0 and keeps it when no entry ends at/after the step
    assert text_at_step([(5, "cat"), (20, "dog")], 21) == "cat"
    assert text_at_step([(5, "cat"), (20, "dog")], 0) == "cat"


EDITING = [
    # (prompt, steps, expected)
    ("[x:3]", 10, [(3, ""), (10, "x")]),  # [to:when] is editing...
    ("[x]", 10, [(10, "[x]")]),  # ...[x] is emphasis and stays in the text
    ("a [b::3] c", 10, [(3, "a b c"), (10, "a  c")]),  # [from::when]
    ("[:b:3]", 10, [(3, ""), (10, "b")]),
    ("[a::3]", 10, [(3, "a"), (10, "")]),
    ("[a:b:50]", 20, [(20, "a")]),  # clamped to the step count
    ("[a:b:1.5]", 10, [(10, "a")]),  # fraction above 1 clamps too
    ("[a:b:0]", 20, [(20, "b")]),  # a boundary below 1 means "after" everywhere
    ("[a:b:-1]", 20, [(20, "b")]),
    ("[a:b:0.04]", 20, [(20, "b")]),  # int(0.8) = 0
    ("[a:b:0.33]", 10, [(3, "a"), (10, "b")]),  # int() truncates
    ("[a:b:+3]", 10, [(3, "a"), (10, "b")]),
    ("[a:b:3.]", 10, [(10, "a")]),  # "3." is a fraction (3 * 10, clamped)
    ("[a:b:1e1]", 20, [(10, "a"), (20, "b")]),  # no "." -> a step number
    ("[a:b:.5e1]", 10, [(10, "a")]),
    ("[a:b:1e-1]", 10, [(10, "b")]),  # no "." -> int(0.1) = 0
    ("[a:b: 3 ]", 10, [(3, "a"), (10, "b")]),
    ("\nx [a:\n3]", 10, [(3, "\nx "), (10, "\nx a")]),
    ("a [b:c:2] [d:e:2]", 10, [(2, "a b d"), (10, "a c e")]),
    ("(x [a:b:3])", 10, [(3, "(x a)"), (10, "(x b)")]),  # inside emphasis; brackets kept
    ("[a:(b:1.2):3]", 10, [(3, "a"), (10, "(b:1.2)")]),
    ("[(a:1.2):b:3]", 10, [(3, "(a:1.2)"), (10, "b")]),
    ("[[a:2]:3]", 10, [(2, ""), (3, ""), (10, "a")]),  # the outer construct is taken
    # not editing: the whole prompt is text at every step
    ("[a:b:c:3]", 10, [(10, "[a:b:c:3]")]),
    ("\\[a:3\\]", 10, [(10, "\\[a:3\\]")]),  # escaped brackets
    ("[a:b:3] x|y", 10, [(10, "[a:b:3] x|y")]),  # a stray | makes A1111 give up on the whole prompt
    ("[a:b:3] \\", 10, [(10, "[a:b:3] \\")]),  # so does a final lone backslash
    ("", 10, [(10, "")]),
]


@pytest.mark.parametrize("prompt, steps, expected", EDITING)
def test_editing(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


ALTERNATION = [
    ("[a|b|c]", 5, [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b")]),
    ("[a |b]", 3, [(1, "a "), (2, "b"), (3, "a ")]),
    ("[a|b] [c:d:2]", 4, [(1, "a c"), (2, "b c"), (3, "a d"), (4, "b d")]),
    ("[[a|b]:c:2]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "c")]),
    ("[a|[b:c:2]]", 4, [(1, "a"), (2, "b"), (3, "a"), (4, "c")]),
    ("[|x]", 3, [(1, ""), (2, "x"), (3, "")]),  # empty items are allowed
    ("[a|a]", 2, [(1, "a"), (2, "a")]),  # every step is listed even when the text repeats
]


@pytest.mark.parametrize("prompt, steps, expected", ALTERNATION)
def test_alternation(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


HIRES = [
    # (prompt, base steps, hires steps, expected schedule of the hires pass)
    ("[a:b:15]", 10, 10, [(5, "a"), (10, "b")]),  # integers count on from the first pass
    ("[a:b:5]", 10, 10, [(10, "b")]),  # a boundary in the first pass: "after" throughout
    ("[a:b:1.25]", 10, 8, [(2, "a"), (8, "b")]),  # fractions 1..2 address the second pass
    ("[a:b:0.5]", 10, 10, [(10, "b")]),
    ("[a|b]", 10, 4, [(1, "a"), (2, "b"), (3, "a"), (4, "b")]),
]


@pytest.mark.parametrize("prompt, base, hires, expected", HIRES)
def test_hires_pass(prompt, base, hires, expected):
    assert prompt_schedule(prompt, base, hires_steps=hires) == expected


OLD_SCHEDULING = [
    # A1111's "use old prompt editing timelines": below 1 a fraction, else a step, "." or not
    ("[a:b:3]", [(3, "a"), (10, "b")]),
    ("[a:b:0.5]", [(5, "a"), (10, "b")]),
    ("[a:b:1.0]", [(1, "a"), (10, "b")]),
    ("[a:b:1.5]", [(1, "a"), (10, "b")]),
]


@pytest.mark.parametrize("prompt, expected", OLD_SCHEDULING)
def test_old_scheduling(prompt, expected):
    assert prompt_schedule(prompt, 10, use_old_scheduling=True) == expected
    # old scheduling ignores the hires pass's own numbering
    assert prompt_schedule(prompt, 10, hires_steps=7, use_old_scheduling=True) == expected


def test_ambiguous_stray_brackets_take_the_construct():
    # With brackets or colons left over at the top level, A1111's result for these depends on
    # Python's string-hash seed (lark resolves the ambiguity by set order), so it changes from
    # one launch to the next. We always take the construct, one of A1111's answers.
    assert prompt_schedule("[a:1]))", 10) == [(1, "))"), (10, "a))")]
    assert prompt_schedule("[[a:1]:", 10) == [(1, "[:"), (10, "[a:")]


def test_parse_tree():
    assert parse_schedule("x [a:b:2] [c|d]") == ["x ", Scheduled(("a",), ("b",), "2"), " ", Alternation((("c",), ("d",)))]
    assert parse_schedule("a|b") is None


def test_infinite_boundary_does_not_crash():
    # A1111 raises OverflowError on int(inf); we read it as "before, at every step".
    assert prompt_schedule("[a:b:1e999]", 10) == [(10, "a")]
    assert prompt_schedule("[a:b:-1e999]", 10) == [(10, "b")]


def test_absurd_nesting_is_a_user_error():
    with pytest.raises(PromptSyntaxError, match="nests brackets"):
        prompt_schedule("[" * 150 + "a", 10)
    assert prompt_schedule("(" * 60 + "[a:b:2]" + ")" * 60, 4)[0] == (2, "(" * 60 + "a" + ")" * 60)


AND_SPLITS = [
    ("a cat AND a dog:0.5", [("a cat", 1.0), (" a dog", 0.5)]),  # leading space kept, trailing cut
    ("a AND b AND c", [("a", 1.0), (" b", 1.0), (" c", 1.0)]),
    ("x:1.5 AND y : 2", [("x", 1.5), (" y", 2.0)]),
    ("(x:1.2) AND y:-0.5", [("(x:1.2)", 1.0), (" y", -0.5)]),  # a weight must end the part
    ("a:.5", [("a", 0.5)]),
    ("a: 5.", [("a", 5.0)]),
    ("a:1.5.", [("a:1.5.", 1.0)]),
    ("a\nAND\nb:2\n", [("a", 1.0), ("\nb", 2.0)]),
    ("a AND", [("a", 1.0), ("", 1.0)]),
    ("cat,AND,dog", [("cat,", 1.0), (",dog", 1.0)]),  # \bAND\b: spaces are not required
    ("ANDROID AND BRAND", [("ANDROID", 1.0), (" BRAND", 1.0)]),  # ...but a whole word is
    ("a and b", [("a and b", 1.0)]),  # upper case only
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("prompt, expected", AND_SPLITS)
def test_split_and(prompt, expected):
    assert split_and(prompt) == expected


def test_and_parts_are_scheduled_separately():
    parts = split_and("[cat:dog:0.5] AND [x:y:3]")
    assert [prompt_schedule(text, 10) for text, _ in parts] == [[(5, "cat"), (10, "dog")], [(3, " x"), (10, " y")]]
