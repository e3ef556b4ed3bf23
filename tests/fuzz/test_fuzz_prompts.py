"""Property tests of the prompt language (modules/prompts): emphasis, editing/alternation schedules,
AND, extra-network tags. Inputs mix the syntax's own characters, numbers that overflow, BREAK,
AND, tags and arbitrary unicode. The only error any of them may raise is PromptSyntaxError.

Budgets: see tests/fuzz/fuzzing.py (EASEL_FUZZ_SCALE; bench/fuzz.py runs these for minutes)."""

from __future__ import annotations

import math
import re

from hypothesis import example, strategies as st

from modules.prompts.extra_networks import extract_extra_networks, hypernetwork_call, lora_call
from modules.prompts.parser import _BREAK_SPLIT, BREAK, PromptSyntaxError, is_break, parse_emphasis
from modules.prompts.schedule import parse_schedule, prompt_schedule, split_and, text_at_step
from tests.fuzz.fuzzing import fuzz, timed

# Pieces prompts are made of, weighted towards the syntax: brackets, colons, numbers (huge, tiny,
# malformed), escapes, BREAK/AND in and out of words, tags, whitespace of all kinds, unicode.
SYNTAX_TOKENS = [
    "(", ")", "[", "]", ":", "|", "\\", "\\(", "\\)", "\\[", "\\\\", " ", "  ", "\t", "\n", "\u3000", ",",
    "a", "cat", "dog", "BREAK", "AND", "ANDREW", "xBREAK", "_BREAK", "break", "1", "5", "0.5", "1.", ".", ".5",
    "-1", "+2", "1e3", "1e309", "9" * 320, "0" * 30 + "1", "nan", "inf", "e", "<lora:x:0.8>", "<lora:", ">", "<",
    "<hypernet:h:nan>", "\u65e5\u672c", "\U0001f436", "\x00", "\u0663", "\ufe30", "\u200b",
]
prompts = st.one_of(
    st.lists(st.one_of(st.sampled_from(SYNTAX_TOKENS), st.text(max_size=3)), max_size=40).map("".join),
    st.text(max_size=200),
)
# What emphasis parsing may remove from a prompt: the brackets, backslashes, colons, the digits and
# signs of explicit weights, and whitespace (around BREAK and inside `:1.2 )`).
_REMOVABLE = set("()[]\\:.+-")


def _kept(text: str) -> str:
    return "".join(c for c in text if c not in _REMOVABLE and not c.isdigit() and not c.isspace())


@fuzz(200, text=prompts)
@example(text="(a:" + "9" * 400 + ")")  # explicit weight beyond float range: was inf (NaN image)
@example(text="(" * 8000 + "a")  # 1.1 ** 8000 overflows: was inf
@example(text="(BREAK:-1) a BREAK b")
def test_emphasis_gives_finite_weights_and_keeps_every_character(text):
    try:
        segments = parse_emphasis(text)
    except PromptSyntaxError:
        return
    assert segments, text
    for piece, weight in segments:
        assert isinstance(piece, str) and type(weight) is float
        assert math.isfinite(weight), (text, segments)
    assert all(a[1] != b[1] for a, b in zip(segments, segments[1:])), "equal neighbours are merged"
    assert _kept("".join(piece for piece, _ in segments)) == _kept(text)


# A model of emphasis: nested groups with known multipliers, compared with the parser exactly.
_words = st.text(alphabet="abcxyz ,.!\u00e9\u65e5", min_size=1, max_size=6).filter(lambda w: "BREAK" not in w)
_weights = st.sampled_from(["0", "0.5", "1", "1.25", "2", ".7", "3.", "10", "0.001", "+1.5", "-1.5"])


def _emphasis_tree(children):
    return st.one_of(
        st.tuples(st.just("round"), st.lists(children, max_size=3)),
        st.tuples(st.just("square"), st.lists(children, max_size=3)),
        st.tuples(st.just("weight"), st.lists(children, min_size=1, max_size=3), _weights),
    )


emphasis_trees = st.lists(st.recursive(_words, _emphasis_tree, max_leaves=12), max_size=5)


def _render_emphasis(nodes, multipliers, out):
    text = ""
    for node in nodes:
        if isinstance(node, str):
            weight = 1.0
            for multiplier in reversed(multipliers):  # inner groups close first
                weight *= multiplier
            out.append((node, weight))
            text += node
        elif node[0] == "round":
            text += "(" + _render_emphasis(node[1], multipliers + [1.1], out) + ")"
        elif node[0] == "square":
            text += "[" + _render_emphasis(node[1], multipliers + [1 / 1.1], out) + "]"
        else:
            text += "(" + _render_emphasis(node[1], multipliers + [float(node[2])], out) + ":" + node[2] + ")"
    return text


@fuzz(100, tree=emphasis_trees)
def test_emphasis_weights_are_the_products_of_the_groups_around_each_word(tree):
    expected: list[tuple[str, float]] = []
    text = _render_emphasis(tree, [], expected)
    merged: list[list] = []
    for piece, weight in expected:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += piece
        else:
            merged.append([piece, weight])
    assert parse_emphasis(text) == ([(p, w) for p, w in merged] or [("", 1.0)]), text


_A1111_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)
break_texts = st.lists(st.sampled_from(["BREAK", "B", "REAK", "BREAKS", " ", "  ", "\t", "\n", "\u3000", "a", "_", "1", ",", "("]),
                       max_size=30).map("".join)


@fuzz(200, text=break_texts)
@example(text="BREAK BREAK")
@example(text="a  \t BREAK\n b")
def test_break_split_is_a1111s_pattern(text):
    assert _BREAK_SPLIT.split(text) == _A1111_BREAK_SPLIT.split(text)


_long_units = st.lists(st.sampled_from([" ", "\t", "a", "(", "[", ":", "1", ".", "BREAK", "\\", ")", "]", "|", "AND", ","]),
                       min_size=1, max_size=6).map("".join)


@fuzz(12, shrink=False, unit=_long_units)
@example(unit=" ")  # 8,000 spaces took 3.4 s, 100,000 minutes (quadratic BREAK split and AND weight)
@example(unit="(|")  # 30,000 unclosed groups: minutes (each scaled every later segment)
@example(unit="a ")
def test_long_prompts_parse_in_linear_time(unit):
    text = "x" + unit * (20_000 // len(unit)) + "y"
    for function in (parse_emphasis, split_and, lambda t: prompt_schedule(t, 20)):
        result, seconds = timed(function, text)
        assert not isinstance(result, Exception) or isinstance(result, PromptSyntaxError), result
        assert seconds < 2.0, (function, unit, seconds)


@fuzz(150, text=prompts, steps=st.integers(1, 150), hires_steps=st.none() | st.integers(1, 150), old=st.booleans())
@example(text="[a:b:1e309] [c:d:-1e309] [e:f:0.5]", steps=20, hires_steps=None, old=False)
@example(text="[a:b:1e309]", steps=20, hires_steps=10, old=True)
def test_schedule_steps_are_sorted_and_within_the_pass(text, steps, hires_steps, old):
    try:
        schedule = prompt_schedule(text, steps, hires_steps=hires_steps, use_old_scheduling=old)
    except PromptSyntaxError:
        return
    total = hires_steps if hires_steps is not None and not old else steps
    ends = [end for end, _ in schedule]
    assert ends == sorted(set(ends)) and 1 <= ends[0] and ends[-1] == total, schedule
    assert all(isinstance(part, str) for _, part in schedule)
    if parse_schedule(text) is None:
        assert schedule == [(total, text)]
    for step in range(1, total + 1):
        assert isinstance(text_at_step(schedule, step), str)


# A model of editing and alternation: a tree rendered to prompt text, and the text the spec says
# each step sees (REFERENCE.md section 2).
_plain = st.text(alphabet="abc xyz,!\u00e9", max_size=5)
_when = st.one_of(
    st.integers(0, 60).map(str),
    st.integers(0, 100).map(lambda n: f"{n / 100}"),
    st.sampled_from(["1.0", "0.999", "5.", ".5", "1e1", "1e309"]),
)


def _schedule_tree(children):
    return st.one_of(
        st.tuples(st.just("edit"), st.lists(children, max_size=2), st.lists(children, max_size=2), _when,
                  st.sampled_from(["", " "]), st.booleans()),
        st.tuples(st.just("alt"), st.lists(st.lists(children, max_size=2), min_size=2, max_size=4)),
    )


schedule_trees = st.lists(st.recursive(_plain, _schedule_tree, max_leaves=10), max_size=4)


def _boundary(when: str, steps: int) -> int:
    value = float(when) * steps if "." in when else float(when)
    if math.isinf(value):
        return steps
    return min(steps, int(value))


def _render_schedule(nodes, step, steps):
    """(prompt text, the text at `step`)."""
    text, seen = "", ""
    for node in nodes:
        if isinstance(node, str):
            text, seen = text + node, seen + node
        elif node[0] == "edit":
            _, before, after, when, space, drop_before = node
            before = [] if drop_before else before
            before_text, before_seen = _render_schedule(before, step, steps)
            after_text, after_seen = _render_schedule(after, step, steps)
            head = f"[{after_text}:" if drop_before else f"[{before_text}:{after_text}:"
            text += f"{head}{space}{when}{space}]"
            seen += before_seen if step <= _boundary(when, steps) else after_seen
        else:
            rendered = [_render_schedule(option, step, steps) for option in node[1]]
            text += "[" + "|".join(option_text for option_text, _ in rendered) + "]"
            seen += rendered[(step - 1) % len(rendered)][1]
    return text, seen


@fuzz(80, tree=schedule_trees, steps=st.integers(1, 40))
@example(tree=[("edit", ["cat"], ["dog"], "0.25", "", False)], steps=20)
@example(tree=[("edit", ["cat"], ["dog"], "1", "", False)], steps=20)
def test_schedule_gives_each_step_the_text_the_spec_says(tree, steps):
    text, _ = _render_schedule(tree, 1, steps)
    schedule = prompt_schedule(text, steps)
    for step in range(1, steps + 1):
        assert text_at_step(schedule, step) == _render_schedule(tree, step, steps)[1], (text, step, schedule)


_A1111_SUBPROMPT = re.compile(r"(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*", re.S)
and_prompts = st.one_of(
    st.lists(st.sampled_from(["AND", " AND ", "a", "cat", ":", " : ", "1", "0.5", ".", "-", "+", "5.", " ", "\t", "\n",
                              "\u0663", "\uff11", "9" * 320, "e3", "ANDY"]), max_size=20).map("".join),
    prompts,
)


@fuzz(200, prompt=and_prompts)
@example(prompt="a cat:" + "9" * 400)  # weight beyond float range: was inf
@example(prompt="a : 1 :2 AND b:0.5  ")
def test_and_split_is_a1111s_pattern_with_finite_weights(prompt):
    expected = []
    for part in re.split(r"\bAND\b", prompt):
        match = _A1111_SUBPROMPT.fullmatch(part)
        expected.append((match.group(1), float(match.group(2)) if match.group(2) is not None else 1.0))
    try:
        parts = split_and(prompt)
    except PromptSyntaxError:
        assert not all(math.isfinite(weight) for _, weight in expected), prompt
        return
    assert parts == expected


tag_args = st.lists(st.one_of(st.sampled_from(["0.8", "1", "nan", "NaN", "inf", "-inf", "1e999", "te=0.5", "unet=nan", "dyn=4",
                                                "dyn=x", "te=", "=", "", "x", " 1 ", "1_0"]),
                              st.text(alphabet=st.characters(exclude_characters=">:"), max_size=4)), min_size=1, max_size=5)


@fuzz(120, before=prompts, args=tag_args, kind=st.sampled_from(["lora", "hypernet", "lyco", "x1"]))
@example(before="a ", args=["x", "nan"], kind="lora")  # was te=nan: NaN weights, a black image
@example(before="", args=["x", "1e999", "te=inf"], kind="lora")
@example(before="", args=["h", "inf"], kind="hypernet")
def test_extra_network_tags_are_removed_and_give_finite_multipliers(before, args, kind):
    tag = f"<{kind}:{':'.join(args)}>"
    remaining, calls = extract_extra_networks(before + tag)
    assert re.search(r"<(\w+):([^>]+)>", remaining) is None
    if ">" not in before and not re.search(r"<\w+:[^>]*$", before) and ":".join(args):
        assert calls[-1].kind == kind and list(calls[-1].items) == ":".join(args).split(":")
    for call in calls:
        try:
            if call.kind == "lora":
                lora = lora_call(call)
                assert math.isfinite(lora.te) and math.isfinite(lora.unet)
            else:
                assert math.isfinite(hypernetwork_call(call)[1])
        except PromptSyntaxError:
            pass


def test_break_marker_is_recognised_only_outside_brackets():
    assert [is_break(s) for s in parse_emphasis("a BREAK b")] == [False, True, False]
    assert not any(is_break(s) for s in parse_emphasis("(a BREAK b)"))
    assert BREAK == "BREAK"
