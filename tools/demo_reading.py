"""The demo model's reading stage: teaching it to take each word from where the word stands, so
that prompt emphasis means to it what it means to a real Stable Diffusion model.

CLIP's text encoder is causal: every token after "red" has seen "red", so after the first UNet
stage the demo read its colours from the tokens after the colour word ("circle", "on", the end and
padding tokens). Emphasis scales only the colour word's own hidden state, so `(red:0)` still drew
red and weighting one colour against another did nothing. Three changes, used by
tools/train_demo_model.py when it fine-tunes the first stage's EMA weights:

1. Context swap: for some captions, the hidden states of every position that is not a content word
   (colour, shape, position and size words; the start token is kept) are replaced by the empty
   caption's at the same positions. Those positions then say nothing, so only the content words'
   own states are always to be trusted, and the UNet learns to read them.
2. Emphasis jitter: for some captions, each content word's hidden state is scaled by a random
   weight and the whole context rescaled to its original mean, exactly as A1111's emphasis does, with
   the picture unchanged. A weight then moves a word's pull on the picture, not its meaning (with the
   context swap alone, `(green:2)` drew a blue circle).
3. Mean offset: a trained tiny encoder's hidden states average to about zero (-0.002 here), so
   emphasis's "restore the mean" divided by almost nothing: `(green:2)` scaled the whole context by
   0.6 and `(green:0)` by 2.9. Real CLIP's mean sits well away from zero. Adding a constant to the
   final layer norm's bias moves it there without changing the model: every cross-attention key
   shifts by the same vector (softmax ignores that), and every attention output by the same vector,
   taken back out of the output projection's bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modules.prompts.conditioning import apply_emphasis
from tools.demo_shapes import COLOURS, POSITIONS, SHAPES, SIZES


def content_words() -> list[str]:
    """Every word a caption uses to say what is drawn (not "a", "on", "background", ",")."""
    position_words = sorted({word for name in POSITIONS for word in name.split()})
    return [*COLOURS, *SHAPES, *position_words, *SIZES]


def content_token_ids(tokenizer: Any) -> torch.Tensor:
    """The token ids of the content words (a word of several tokens, like "cyan", gives them all)."""
    ids: set[int] = set()
    for word in content_words():
        ids.update(tokenizer(word, add_special_tokens=False).input_ids)
    return torch.tensor(sorted(ids))


@torch.no_grad()
def install_mean_offset(text_encoder: torch.nn.Module, unet: torch.nn.Module, offset: float) -> int:
    """Adds `offset` to every hidden state the text encoder hands out and compensates in each
    cross-attention, so the pair computes exactly what it did. Returns the cross-attentions changed."""
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    norm.bias += offset
    changed = 0
    for name, module in unet.named_modules():
        if name.endswith("attn2"):  # SD's cross-attention; attn1 is self-attention on the picture
            shift = module.to_v.weight @ torch.full((module.to_v.weight.shape[1],), offset, dtype=norm.bias.dtype, device=norm.bias.device)
            module.to_out[0].bias -= module.to_out[0].weight @ shift
            changed += 1
    return changed


def swap_context(context: torch.Tensor, empty: torch.Tensor, keep: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """`context` (B, T, C) with the positions not in `keep` (B, T) replaced by `empty` (1, T, C), for
    the captions in `chosen` (B,)."""
    replace = (~keep) & chosen.view(-1, 1)
    return torch.where(replace.unsqueeze(-1), empty.expand_as(context), context)


def jitter_emphasis(context: torch.Tensor, keep: torch.Tensor, chosen: torch.Tensor, rng: np.random.Generator, low: float, high: float) -> torch.Tensor:
    """A1111's emphasis with a random weight in [low, high) on each kept position (but the start
    token) of the captions in `chosen`: scale, then restore each caption's mean."""
    weights = torch.from_numpy(rng.uniform(low, high, size=tuple(keep.shape))).to(context)
    apply = keep & chosen.view(-1, 1)
    apply[:, 0] = False
    weights = torch.where(apply, weights, torch.ones_like(weights))
    # Easel's own emphasis, caption by caption (it restores the mean of what it is given)
    return torch.cat([apply_emphasis(hidden[None], row[None]) for hidden, row in zip(context, weights)])
