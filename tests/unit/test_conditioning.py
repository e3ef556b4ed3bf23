"""Prompt -> conditioning as A1111 builds it: chunks of 75, BREAK, comma backtrack, padding per
encoder, emphasis with the mean restored, and equality with the plain encode for simple prompts."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from modules.checkpoints.tokenizer import load_clip_tokenizer
from modules.prompts.conditioning import (
    PAD,
    EncoderPlan,
    PromptEncoder,
    TokenChunk,
    apply_emphasis,
    chunk_ids,
    pack_chunks,
    token_count,
    tokenize_weighted,
)

COMMA = 267


@pytest.fixture(scope="module")
def tokenizer(tokenizer_cache):
    return load_clip_tokenizer(tokenizer_cache)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu")
    return CLIPTextModel(config).eval()


def test_short_prompt_is_one_padded_chunk():
    chunks = pack_chunks([(320, 1.0), (1929, 1.0)], PAD, COMMA)
    assert len(chunks) == 1 and chunks[0].tokens[:2] == (320, 1929) and chunks[0].tokens[2:] == (PAD,) * 73
    assert pack_chunks([], PAD, COMMA)[0].tokens == (PAD,) * 75  # empty prompt: one chunk


def test_long_prompt_splits_at_75():
    chunks = pack_chunks([(1000 + i, 1.0) for i in range(80)], PAD, COMMA)
    assert [len([t for t in c.tokens if t != PAD]) for c in chunks] == [75, 5]
    assert chunks[1].tokens[0] == 1075


def test_comma_backtrack_moves_the_phrase_after_the_last_comma():
    tokens = [(1000 + i, 1.0) for i in range(70)] + [(COMMA, 1.0)] + [(2000 + i, 1.0) for i in range(10)]
    chunks = pack_chunks(tokens, PAD, COMMA)
    first = [t for t in chunks[0].tokens if t != PAD]
    assert first[-1] == COMMA and len(first) == 71
    assert chunks[1].tokens[:10] == tuple(2000 + i for i in range(10))
    far = [(COMMA, 1.0)] + [(1000 + i, 1.0) for i in range(80)]  # comma more than 20 back: no move
    assert len([t for t in pack_chunks(far, PAD, COMMA)[0].tokens if t != PAD]) == 75


def test_break_closes_the_chunk(tokenizer):
    weighted = tokenize_weighted(tokenizer, [("a red", 1.0), ("BREAK", -1), ("circle", 1.0)])
    chunks = pack_chunks(weighted, PAD, COMMA)
    assert len(chunks) == 2 and chunks[1].tokens[0] == tokenizer.convert_tokens_to_ids("circle</w>")
    assert token_count(tokenizer, [("word " * 80, 1.0)]) == (80, 150)


def test_padding_per_encoder_style():
    chunk = TokenChunk((320, PAD, PAD) + (PAD,) * 72, (1.0,) * 75)
    sd1 = chunk_ids(chunk, 49406, 49407, 49407)
    assert sd1[:3] == [49406, 320, 49407] and set(sd1[2:]) == {49407} and len(sd1) == 77
    openclip = chunk_ids(chunk, 49406, 49407, 0)
    assert openclip[:3] == [49406, 320, 49407] and set(openclip[3:]) == {0}


def test_plain_prompt_equals_the_usual_encode(tokenizer, encoder):
    prompt = "a red circle on a blue background"
    ours = PromptEncoder([(encoder, EncoderPlan(1, True, tokenizer.pad_token_id))], tokenizer, torch.device("cpu"), lambda p: [(p, 1.0)])
    cond = ours.encode(prompt)
    ids = tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state
    assert cond.hidden.shape == (1, 77, 32)
    assert torch.allclose(cond.hidden, expected, atol=1e-6)
    assert ours.encode(prompt) is cond  # cached


def test_long_prompt_concatenates_chunks(tokenizer, encoder):
    ours = PromptEncoder([(encoder, EncoderPlan(1, True, tokenizer.pad_token_id))], tokenizer, torch.device("cpu"), lambda p: [(p, 1.0)])
    assert ours.encode("word, " * 60).hidden.shape == (1, 154, 32)


def test_clip_skip_takes_an_earlier_layer_with_final_norm(tokenizer, encoder):
    skip2 = PromptEncoder([(encoder, EncoderPlan(2, True, tokenizer.pad_token_id))], tokenizer, torch.device("cpu"), lambda p: [(p, 1.0)])
    ids = tokenizer("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(ids, output_hidden_states=True)
        expected = getattr(encoder, "text_model", encoder).final_layer_norm(out.hidden_states[-2])
    assert torch.allclose(skip2.encode("a cat").hidden, expected, atol=1e-6)


def test_emphasis_scales_tokens_and_restores_the_mean():
    hidden = torch.randn(1, 77, 8) + 0.5
    weights = torch.ones(1, 77)
    weights[0, 3] = 1.5
    out = apply_emphasis(hidden, weights)
    assert torch.allclose(out.mean(), hidden.mean(), atol=1e-6)
    ratio = (out[0, 3] / hidden[0, 3]) / (out[0, 4] / hidden[0, 4])
    assert torch.allclose(ratio, torch.full_like(ratio, 1.5), atol=1e-4)
