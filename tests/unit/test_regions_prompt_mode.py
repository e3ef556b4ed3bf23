"""Regional Prompt mode (modules/regions/prompt_mode.py): the target words' tokens found in the base
prompt, the attention maps collected against a hand computation, the masks and weights (Prompt and
Prompt-Ex, base ratios, per picture), and the probe's phases at a real attention layer."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from modules.prompts.conditioning import PromptEncoder
from modules.prompts.parser import parse_emphasis
from modules.regions.args import RegionalRequest
from modules.regions.attention import RegionCall, regional_attention
from modules.regions.errors import RegionalPromptError
from modules.regions.prompt_mode import PromptRegionPlan, prompt_layout, target_positions, target_word, thresholds
from modules.regions.setup import prepare_regions


@pytest.fixture(scope="module")
def chunks(tokenizer_cache):
    from modules.checkpoints.tokenizer import load_clip_tokenizer

    return PromptEncoder([], load_clip_tokenizer(tokenizer_cache), torch.device("cpu"), parse_emphasis).chunks


def test_the_target_words_tokens_are_found_in_the_base_prompt(chunks):
    base = "a girl holding an umbrella, blue sky"
    words = [target_word(part) for part in (" (red:1.7), umbrella ", "(cloudy:1.2), sky")]
    assert words == ["umbrella", "sky"]
    positions = target_positions(chunks, base, words)
    tokens = chunks(base)[0].tokens
    assert [tokens[p - 1] for p in positions[0]] == list(chunks("umbrella")[0].tokens[:1])  # hidden position = 1 + token index
    assert positions[1] == [1 + tokens.index(chunks("sky")[0].tokens[0])]
    long_base = "word, " * 40 + "umbrella"  # the second chunk: 77 positions further on
    assert target_positions(chunks, long_base, ["umbrella"])[0][0] > 77
    with pytest.raises(RegionalPromptError, match="region 1's target word 'hat'"):
        target_positions(chunks, base, ["hat"])


def test_settings_of_prompt_mode():
    prepared = prepare_regions(RegionalRequest(active=True, mode="Prompt", use_base=True, base_ratios="0.3"), "a girl BREAK red, dress BREAK blue, hat", "")
    assert prepared is not None
    assert prepared.layout.context_parts == [1, 2, 0] and prepared.layout.base_weights == [0.3, 0.3]
    assert prompt_layout(2, "0.3", use_base=False).base_weights == [0.0, 0.0]  # no base: the extension's bratios "0"
    assert thresholds("0.5", 3) == [0.5, 0.5, 0.5] and thresholds("0.5,0.7", 2) == [0.5, 0.7]
    with pytest.raises(RegionalPromptError, match="arg 16"):
        thresholds("high", 1)


def attention_layer(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8).eval()
    attn.set_processor(AttnProcessor2_0())
    return attn


def hand_map(attn: Attention, hidden: torch.Tensor, context: torch.Tensor, positions: list[int], power: float) -> torch.Tensor:
    heads = attn.heads
    q = attn.to_q(hidden).reshape(1, hidden.shape[1], heads, -1).transpose(1, 2)
    k = attn.to_k(context).reshape(1, context.shape[1], heads, -1).transpose(1, 2)
    probabilities = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1)
    return probabilities[..., positions].pow(power).sum(-1).mean(1)[0]


def test_collected_maps_are_the_attention_on_the_targets_and_masks_threshold_them():
    attn = attention_layer()
    plan = PromptRegionPlan(prompt_layout(2, "0", False), targets=[[3, 4], [7]], thresholds=[0.5, 0.6], exclusive=False, sdxl=False)
    hidden, context = torch.randn(2, 4 * 6, 16), torch.randn(2, 77, 8)
    plan.start()
    with torch.no_grad():
        plan.collect(attn, hidden, context, (4, 6), images=[0, 1])
        plan.collect(attn, hidden[:, ::4], context, (2, 3), images=[0, 1])  # a smaller layer, resized to the first one's grid
        first = hand_map(attn, hidden[1:], context[1:], [3, 4], 1.2)
    summed = plan._sums[(1, 0)]
    assert summed.shape == (4, 6)
    small = hand_map(attn, hidden[1:, ::4], context[1:], [3, 4], 1.2).reshape(1, 1, 2, 3)
    expected = first.reshape(4, 6) + torch.nn.functional.interpolate(small, size=(4, 6), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(summed, expected, rtol=1e-5, atol=1e-6)
    plan.make_masks(2, lowered=0.1)
    assert plan.masks is not None and plan.masks.shape == (2, 2, 4, 6)
    torch.testing.assert_close(plan.masks[1, 0], (expected / expected.max() > 0.4).float())


def ready_plan(exclusive: bool, base: str = "0", use_base: bool = False) -> PromptRegionPlan:
    plan = PromptRegionPlan(prompt_layout(2, base, use_base), targets=[[1], [2]], thresholds=[0.5, 0.5], exclusive=exclusive, sdxl=False)
    masks = torch.zeros(2, 2, 2, 2)
    masks[0, 0, 0, :] = 1  # picture 0: region 1 on the top row, region 2 on the left column
    masks[0, 1, :, 0] = 1
    masks[1, 1] = 1  # picture 1: region 2 everywhere
    plan.masks, plan.version = masks, 1
    return plan


def test_weights_per_picture_prompt_and_prompt_ex():
    cpu = torch.device("cpu")
    summed, _ = ready_plan(exclusive=False).image_weights((2, 2), [0, 1], cpu, torch.float32)
    assert summed[0].tolist() == [[1, 1, 0, 0], [1, 0, 1, 0], [-1, 0, 0, 1]]  # top-left in both: the sum, as the extension adds them
    assert summed[1].tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    later, _ = ready_plan(exclusive=True).image_weights((2, 2), [0], cpu, torch.float32)
    assert later[0].tolist() == [[0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]  # Prompt-Ex: the later region covers the earlier
    based, _ = ready_plan(exclusive=True, base="0.25", use_base=True).image_weights((2, 2), [1], cpu, torch.float32)
    assert based[0].tolist() == [[0, 0, 0, 0], [0.75, 0.75, 0.75, 0.75], [0.25, 0.25, 0.25, 0.25]]
    follower = ready_plan(exclusive=False).follower(probes=False)
    follower.source.masks = torch.ones(1, 2, 2, 2)  # type: ignore[union-attr]
    follower.source.version = 2  # type: ignore[union-attr]
    assert follower.image_weights((4, 4), [0], cpu, torch.float32)[0].shape == (1, 3, 16)  # the first pass's masks at the hires grid


class Holder(AttentionMixin, torch.nn.Module):
    """One attention layer with the UNet's processor API."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.attn2 = attn


def test_the_first_calls_run_the_base_alone_then_the_regions_mix_by_masks_from_the_maps():
    attn = attention_layer(1)
    base, red, blue = torch.randn(1, 77, 8), torch.randn(1, 77, 8), torch.randn(1, 77, 8)
    joined = torch.cat([base, red, blue], dim=1)
    spans = ((0, 77), (77, 154), (154, 231))
    hidden = torch.randn(1, 4 * 6, 16)
    plan = PromptRegionPlan(prompt_layout(2, "0", False), targets=[[5], [9]], thresholds=[0.3, 0.3], exclusive=False, sdxl=False)
    plan.start()
    outputs, phases = [], []
    with torch.no_grad(), regional_attention(Holder(attn), plan):
        for _ in range(3):
            with plan.bound((4, 6), [spans], images=[0], conditional=[True]):
                phases.append(plan.phase)
                outputs.append(attn(hidden, encoder_hidden_states=joined))
        plain = {name: AttnProcessor2_0()(attn, hidden, encoder_hidden_states=c) for name, c in (("base", base), ("red", red), ("blue", blue))}
        with plan.bound((4, 6), [spans], images=[0], conditional=[False]):  # a negative-only call: no new call counted
            pass
    assert phases == ["base", "collect", "ready"] and plan.calls == 3
    torch.testing.assert_close(outputs[0], plain["base"], rtol=0, atol=1e-6)  # the first calls: the base prompt alone
    torch.testing.assert_close(outputs[1], plain["base"], rtol=0, atol=1e-6)
    assert plan.masks is not None and 0 < float(plan.masks.sum()) < plan.masks.numel()  # made before call 3 from call 2's maps
    maps, _ = plan.row_weights((4, 6), RegionCall((4, 6), [spans], [0], [True]), [0], torch.device("cpu"), torch.float32)
    expected = sum(plain[name] * maps[0, j][None, :, None] for j, name in enumerate(("red", "blue", "base")))
    torch.testing.assert_close(outputs[2], expected, rtol=0, atol=1e-5)
    version = plan.version
    with plan.bound((4, 6), [spans], images=[0], conditional=[True]):  # call 3 read maps too: the masks are made again
        pass
    assert plan.version == version + 1
