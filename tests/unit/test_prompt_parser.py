"""Emphasis parsing and extra-network tags, table-driven.

Every expected value below was checked against A1111 v1.10.1's `parse_prompt_attention` logic
(`modules/prompt_parser.py`) run on the same input; the first table holds its own doctests.
Weights are compared to 4 decimals except where the exact float is the point.
"""

from __future__ import annotations

import pytest

from modules.prompts.extra_networks import ExtraNetworkCall, LoraCall, extract_extra_networks, hypernetwork_call, lora_call
from modules.prompts.parser import BREAK, PromptSyntaxError, is_break, parse_emphasis


def rounded(segments):
    return [(text, round(weight, 4)) for text, weight in segments]


A1111_DOCTESTS = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
]


@pytest.mark.parametrize("prompt, expected", A1111_DOCTESTS)
def test_a1111_doctests(prompt, expected):
    assert parse_emphasis(prompt) == expected


def test_weights_are_a1111s_floats_bit_for_bit():
    # A1111's doctest, including its float rounding (multiplications in the same order).
    assert parse_emphasis("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a ", 1.0),
        ("house", 1.5730000000000004),
        (" ", 1.1),
        ("on", 1.0),
        (" a ", 1.1),
        ("hill", 0.55),
        (", sun, ", 1.1),
        ("sky", 1.4641000000000006),
        (".", 1.1),
    ]


EMPHASIS = [
    # (prompt, expected segments with weights rounded to 4 decimals); all checked against A1111
    ("(x)", [("x", 1.1)]),
    ("((x))", [("x", 1.21)]),
    ("[x]", [("x", 0.9091)]),
    ("[[x]]", [("x", 0.8264)]),
    ("(x:1.2)", [("x", 1.2)]),
    ("(x: 1.2 )", [("x", 1.2)]),  # spaces around an explicit weight are allowed
    ("((x:1.2))", [("x", 1.32)]),  # nesting multiplies
    ("[(x:1.5)]", [("x", 1.3636)]),
    ("((a:2)b:1.5)", [("a", 3.0), ("b", 1.5)]),
    ("((a)b)", [("a", 1.21), ("b", 1.1)]),
    ("(a:-1)", [("a", -1.0)]),
    ("(a:0)", [("a", 0.0)]),
    # unclosed brackets run to the end of the prompt
    ("[unclosed", [("unclosed", 0.9091)]),
    ("a ((b", [("a ", 1.0), ("b", 1.21)]),
    ("([a", [("a", 1.0)]),
    ("(x:1.2", [("x:1.2", 1.1)]),  # no ")" after the number: the colon is text, the group unclosed
    # closers without an opener, and colons that are not weights, are text
    ("a)b]", [("a)b]", 1.0)]),
    ("a:b", [("a:b", 1.0)]),
    ("(a:b)", [("a:b", 1.1)]),
    ("a:1.5)", [("a:1.5)", 1.0)]),
    ("[a:1.5]", [("a:1.5", 0.9091)]),
    ("(a:1.5:2)", [("a:1.5", 2.0)]),
    # escapes
    ("\\\\", [("\\", 1.0)]),
    ("\\(x\\)", [("(x)", 1.0)]),
    ("\\[x\\]", [("[x]", 1.0)]),
    ("a\\b", [("ab", 1.0)]),  # a backslash before anything else disappears
    ("(a)\\", [("a", 1.1), ("", 1.0)]),  # ...but still leaves an empty segment behind
    # neighbours with equal weights merge, others do not
    ("(a)(b)", [("ab", 1.1)]),
    ("[a](b)", [("a", 0.9091), ("b", 1.1)]),
    ("(a) [b]", [("a", 1.1), (" ", 1.0), ("b", 0.9091)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("prompt, expected", EMPHASIS)
def test_emphasis(prompt, expected):
    assert rounded(parse_emphasis(prompt)) == expected


BREAKS = [
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("a\nBREAK\nb", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),  # whitespace around it goes too
    ("BREAK", [("", 1.0), ("BREAK", -1.0), ("", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("aBREAK b", [("aBREAK b", 1.0)]),  # not a whole word
    ("a break b", [("a break b", 1.0)]),  # upper case only
    # Inside brackets the marker's weight is scaled like any segment, so it is no longer a BREAK
    # (A1111's chunker tests weight == -1); surprising, but it is what A1111 does.
    ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),
]


@pytest.mark.parametrize("prompt, expected", BREAKS)
def test_break(prompt, expected):
    assert rounded(parse_emphasis(prompt)) == expected


def test_break_marker_is_recognised_only_unscaled():
    markers = [is_break(segment) for segment in parse_emphasis("a BREAK b (c BREAK d)")]
    assert markers.count(True) == 1
    assert BREAK == "BREAK"


@pytest.mark.parametrize("prompt", ["(a:1.2.3)", "(a:.)", "(a:-.)"])
def test_weight_that_is_not_a_number_is_a_user_error(prompt):
    # A1111 raises ValueError from float() here; we say what to write instead.
    with pytest.raises(PromptSyntaxError, match="not a number"):
        parse_emphasis(prompt)


def test_malformed_weight_without_open_group_is_text():
    assert parse_emphasis("a:1.2.3)") == [("a:1.2.3)", 1.0)]


# Extra networks (A1111 `extra_networks.parse_prompt` and the built-in Lora extension's argument rules)

EXTRACT = [
    ("a <lora:x:0.8> b", "a  b", [("lora", ("x", "0.8"))]),
    ("<lora:a:1>, <hypernet:h:0.5> cat", ",  cat", [("lora", ("a", "1")), ("hypernet", ("h", "0.5"))]),
    ("[<lora:a:1>:dog:5]", "[:dog:5]", [("lora", ("a", "1"))]),  # removed before scheduling: active all steps
    ("<lora:x:te=0.5:unet=0.2>", "", [("lora", ("x", "te=0.5", "unet=0.2"))]),
    ("<lora:>", "<lora:>", []),  # needs at least one character of arguments
    ("<lo-ra:x>", "<lo-ra:x>", []),  # the kind is word characters only
    ("a <b> c", "a <b> c", []),
    ("<lora:a:1:b>", "", [("lora", ("a", "1", "b"))]),
]


@pytest.mark.parametrize("prompt, clean, calls", EXTRACT)
def test_extract_extra_networks(prompt, clean, calls):
    text, found = extract_extra_networks(prompt)
    assert text == clean
    assert [(call.kind, call.items) for call in found] == calls


LORA_ARGS = [
    ("<lora:x>", LoraCall("x", 1.0, 1.0, None)),
    ("<lora:x:0.8>", LoraCall("x", 0.8, 0.8, None)),  # unet defaults to te
    ("<lora:x:0.5:0.2>", LoraCall("x", 0.5, 0.2, None)),
    ("<lora:x:0.5:0.2:8>", LoraCall("x", 0.5, 0.2, 8)),
    ("<lora:x:te=0.3>", LoraCall("x", 0.3, 0.3, None)),  # unet defaults to the named te
    ("<lora:x:1:te=0.5>", LoraCall("x", 0.5, 0.5, None)),  # named wins over positional
    ("<lora:x:0.8:unet=0.1>", LoraCall("x", 0.8, 0.1, None)),
    ("<lora:x:0.8:0.7:unet=0.1:dyn=4>", LoraCall("x", 0.8, 0.1, 4)),
    ("<lora:x: 0.5 >", LoraCall("x", 0.5, 0.5, None)),  # float() ignores surrounding spaces
]


@pytest.mark.parametrize("tag, expected", LORA_ARGS)
def test_lora_arguments(tag, expected):
    _, (call,) = extract_extra_networks(tag)
    assert lora_call(call) == expected


def test_named_and_positional_split():
    call = ExtraNetworkCall("lora", ("x", "te=1", "a=b=c", "=2"))
    assert call.positional == ("x", "a=b=c")  # two '=' make it positional, as A1111's split('=', 2)
    assert call.named == {"te": "1", "": "2"}
    assert call.tag == "<lora:x:te=1:a=b=c:=2>"


@pytest.mark.parametrize("tag, message", [
    ("<lora:x:strong>", "'strong' should be a number"),
    ("<lora:x:1:1:1.5>", "'1.5' should be a whole number"),
    ("<lora:te=1>", "names no LoRA"),
])
def test_bad_lora_arguments_are_user_errors(tag, message):
    _, (call,) = extract_extra_networks(tag)
    with pytest.raises(PromptSyntaxError, match=message):
        lora_call(call)


def test_hypernetwork_arguments():
    _, calls = extract_extra_networks("<hypernet:anime:0.6> <hypernet:plain>")
    assert [hypernetwork_call(call) for call in calls] == [("anime", 0.6), ("plain", 1.0)]
