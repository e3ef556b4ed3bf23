"""The demo model's reading stage (tools/demo_reading.py): the mean offset changes nothing the
model computes, the context swap and emphasis jitter touch only what they say."""

from __future__ import annotations

import numpy as np
import torch

from modules.checkpoints.tokenizer import load_clip_tokenizer
from modules.prompts.conditioning import apply_emphasis
from tools.demo_reading import content_token_ids, content_words, install_mean_offset, jitter_emphasis, swap_context
from tools.train_demo_model import build, model_configs


def tiny_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    specs = model_configs()
    return build(specs["text_encoder"], 2).eval(), build(specs["unet"], 1).eval()


def test_the_mean_offset_moves_the_mean_and_changes_nothing_else():
    text_encoder, unet = tiny_pair()
    with torch.no_grad():  # give the output projections' biases something to be (they start at zero)
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                module.to_out[0].bias.normal_()
    ids = torch.tensor([[49406, 736, 7117, 525, 320, 1746, 5994] + [49407] * 70])
    latent, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        hidden = text_encoder(input_ids=ids).last_hidden_state
        before = unet(latent, t, encoder_hidden_states=hidden).sample
        changed = install_mean_offset(text_encoder, unet, 1.0)
        shifted = text_encoder(input_ids=ids).last_hidden_state
        after = unet(latent, t, encoder_hidden_states=shifted).sample
    assert changed == 7  # the demo UNet's cross-attentions: 2 down, 1 mid, 4 up (an up block has one layer more)
    assert abs(hidden.mean().item()) < 0.1
    assert torch.allclose(shifted, hidden + 1.0, atol=1e-5)
    assert (after - before).abs().max().item() < 1e-4
    assert before.abs().mean().item() > 0.1  # the comparison is of something


def test_content_words_cover_every_caption_word_but_the_glue(tokenizer_cache):
    from tools.demo_shapes import Scene, caption

    scene = Scene("triangle", "cyan", "magenta", "bottom right", "small", (0.7, 0.7), 0.15)
    words = set(caption(scene, background=True, position=True, size=True).replace(",", "").split())
    assert words - set(content_words()) == {"a", "on", "background"}
    tokenizer = load_clip_tokenizer(tokenizer_cache)
    ids = content_token_ids(tokenizer).tolist()
    assert tokenizer("cyan", add_special_tokens=False).input_ids[0] in ids and len(tokenizer("cyan", add_special_tokens=False).input_ids) == 2
    assert tokenizer("on", add_special_tokens=False).input_ids[0] not in ids


def test_swap_context_replaces_only_the_unkept_positions_of_chosen_captions():
    context, empty = torch.randn(3, 6, 4), torch.randn(1, 6, 4)
    keep = torch.tensor([[1, 1, 0, 0, 1, 0]] * 3, dtype=torch.bool)
    chosen = torch.tensor([True, False, True])
    out = swap_context(context, empty, keep, chosen)
    assert torch.equal(out[1], context[1])
    for row in (0, 2):
        assert torch.equal(out[row, keep[row]], context[row, keep[row]])
        assert torch.equal(out[row, ~keep[row]], empty[0, ~keep[row]])


def test_jitter_is_a1111_emphasis_on_the_kept_words_of_chosen_captions():
    context = torch.randn(2, 5, 4) + 0.5
    keep = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    chosen = torch.tensor([True, False])
    out = jitter_emphasis(context, keep, chosen, np.random.default_rng(3), 0.5, 1.5)
    assert torch.equal(out[1], context[1])
    # the weights it drew: position 0 (the start token) and unkept positions are 1
    weights = torch.from_numpy(np.random.default_rng(3).uniform(0.5, 1.5, size=(2, 5))).float()[0]
    weights[0], weights[2], weights[4] = 1, 1, 1
    expected = apply_emphasis(context[0:1], weights.view(1, 5))
    assert torch.allclose(out[0:1], expected, atol=1e-6)
    assert abs(out[0].mean().item() - context[0].mean().item()) < 1e-5
