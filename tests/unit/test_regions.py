"""Regional prompts (modules/regions): the Regional Prompter's ratio grammar, prompt keywords, masks,
API arguments and infotext, and Attention mode on tiny UNets (exact against the plain model where
the regions make no difference, and against a hand computation at one attention layer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from PIL import Image

from modules.errors import UserError
from modules.infotext.create import format_parameters
from modules.infotext.parse import parse_infotext
from modules.prompts.conditioning import Conditioning
from modules.regions.args import RegionalRequest, find_regional_args, parse_regional_args
from modules.regions.attention import RegionPlan, layer_grid, regional_attention
from modules.regions.conditioning import join_parts, regional_schedule, row_spans
from modules.regions.errors import RegionalPromptError
from modules.regions.grammar import ranges, split_grid, split_weighted_grid, swap_delimiters
from modules.regions.infotext import parse_regional_infotext, regional_infotext
from modules.regions.layout import RegionLayout
from modules.regions.masks import palette_colour
from modules.regions.prompt import (
    OPT_BREAK_CHUNKS,
    OPT_FLIP_PROMPTS,
    OPT_HIRES_ONLY,
    OPT_KEEP_AND,
    OPT_NOT_HIRES,
    activates,
    template_keys,
)
from modules.regions.setup import prepare_regions


def regions(prompt: str, negative: str = "", **settings):
    prepared = prepare_regions(RegionalRequest(active=True, **settings), prompt, negative)
    assert prepared is not None
    return prepared


def grid(prompt: str, height: int, width: int, **settings) -> list[list[int]]:
    return regions(prompt, **settings).layout.assignment(height, width).tolist()


# --- the ratio grammar -------------------------------------------------------------------------


def test_each_semicolon_group_starts_with_its_own_weight():
    assert split_weighted_grid("1,2,1,1;2,4,6", ";", ",", float) == ([1.0, 2.0], [[2.0, 1.0, 1.0], [4.0, 6.0]])
    assert split_weighted_grid("1,2;1,1", ";", ",", float) == ([1.0, 1.0], [[2.0], [1.0]])  # two rows of one cell each
    assert split_weighted_grid("3", ";", ",", float) == ([3.0], [[3.0]])  # a lone value is both
    # flipped (Rows mode): "," separates the groups
    assert split_weighted_grid("1;2,3", ";", ",", float, flip=True) == ([1.0, 3.0], [[2.0], [3.0]])


def test_values_are_broadcast_onto_the_prompts_shape():
    shape = [[0, 0, 0], [0, 0]]
    assert split_grid("0.2", ";", ",", float, shape=shape) == [[0.2] * 3, [0.2] * 2]  # the last value repeats
    assert split_grid("1,2,3,4,5", ";", ",", float, shape=shape) == [[1, 2, 3], [4, 5]]  # overflow to the next group
    assert split_grid("1;2,3,4", ";", ",", float, shape=shape) == [[1, 1, 1], [2, 3]]  # too many: dropped
    weights, cells = split_weighted_grid("1,5,6,7,2,8", ";", ",", float, shape=shape)
    assert (weights, cells) == ([1.0, 2.0], [[5.0, 6.0, 7.0], [8.0, 8.0]])  # the overflow's first value is the next weight


def test_shares_are_summed_as_the_extension_sums_them():
    assert ranges([1, 1], "RP Ratios") == [(0.0, 0.5), (0.5, 1.0)]
    assert ranges([2, 1, 1], "RP Ratios") == [(0.0, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert ranges([1] * 6, "RP Ratios")[-1][1] == 0.9999999999999999  # why the last range always reaches the edge
    with pytest.raises(RegionalPromptError, match="RP Ratios"):
        ranges([0, 0], "RP Ratios")
    assert swap_delimiters("1,1;2,3,2") == "1;1,2;3;2"


# --- Matrix layouts, hand computed -------------------------------------------------------------


def test_two_equal_columns_and_a_one_two_split():
    assert grid("left BREAK right", 2, 8) == [[0] * 4 + [1] * 4] * 2
    assert grid("left BREAK right", 2, 6, ratios="1,2") == [[0, 0, 1, 1, 1, 1]] * 2  # int(6/3) = 2
    assert grid("top BREAK bottom", 4, 2, matrix_submode="Rows") == [[0, 0], [0, 0], [1, 1], [1, 1]]
    assert grid("top BREAK bottom", 6, 1, ratios="1,2", matrix_submode="Vertical") == [[0], [0], [1], [1], [1], [1]]


def test_the_readme_2d_layout_in_columns():
    prompt = "a BREAK b BREAK c BREAK d BREAK e"
    # row 1 (weight 1 of 3: 2 of 6 rows) cells 2:1:1 of 8 = 4, 2, 2; row 2 cells 4:6 = int(3.2) = 3, 5
    expected = [[0, 0, 0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4, 4, 4]] * 4
    assert grid(prompt, 6, 8, ratios="1,2,1,1;2,4,6") == expected
    assert regions(prompt, ratios="1,2,1,1;2,4,6").prompt.structure == "a ADDCOL b ADDCOL c ADDROW d ADDCOL e"


def test_rows_mode_reads_commas_as_columns_and_flip_turns_the_layout():
    # Rows: "," separates columns, each column's first value its weight: six columns 1,2,1,1,4,6 of 15
    six = grid("a BREAK b BREAK c BREAK d BREAK e BREAK f", 1, 15, ratios="1,2,1,1;2,4,6", matrix_submode="Rows")
    assert six == [[0, 1, 1, 2, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5]]
    # flip swaps "," and ";": the Columns layout of the same text, turned 90 degrees
    columns = torch.tensor(grid("a BREAK b BREAK c BREAK d BREAK e", 6, 8, ratios="1,2,1,1;2,4,6"))
    rows = torch.tensor(grid("a BREAK b BREAK c BREAK d BREAK e", 8, 6, ratios="1,2,1,1;2,4,6", matrix_submode="Rows", flip=True))
    assert torch.equal(rows, columns.T)


def test_explicit_keywords_set_the_cells_and_ratios_are_broadcast():
    # only ADDCOL with commas: one row; the ratios are the cells
    assert grid("a ADDCOL b ADDCOL c", 1, 8, ratios="2,1,1") == [[0, 0, 0, 0, 1, 1, 2, 2]]
    # ADDROW in Columns mode with commas: the values are the rows' weights
    assert grid("a ADDROW b", 3, 1, ratios="1,2") == [[0], [1], [1]]
    # more BREAKs than the ratios have cells: the cell skips the extra part
    prepared = regions("a BREAK b BREAK c", ratios="1,1")
    assert prepared.prompt.structure == "a ADDCOL b BREAK c" and prepared.layout.parts == [0, 1]


# --- prompt keywords ----------------------------------------------------------------------------


def test_the_extension_acts_only_on_a_keyword_or_and():
    assert not activates("a red circle") and activates("a AND b") and activates("x ADDCOMM y")
    assert not activates("a <lora:ANDY:1> cat")  # keywords inside extra-network tags do not count
    assert prepare_regions(RegionalRequest(active=True), "plain prompt", "") is None
    assert prepare_regions(RegionalRequest(active=False), "a BREAK b", "") is None


def test_base_and_common_prompts():
    prepared = regions("best quality ADDCOMM forest ADDBASE red BREAK blue", "bad BREAK worse BREAK worst", use_base=True, base_ratios="0.3")
    assert prepared.prompt.parts == ["best quality ,  forest ", "best quality ,  red ", "best quality ,  blue"]
    assert (prepared.layout.base_part, prepared.layout.parts, prepared.layout.base_weights) == (0, [1, 2], [0.3, 0.3])
    assert prepared.prompt.negative_parts == ["bad ", " worse ", " worst"] and prepared.negative_is_regional
    # Use common turns the first BREAK into ADDCOMM; Use Ncommon the negative's
    prepared = regions("q BREAK l BREAK r", "n BREAK m", use_common=True, use_ncommon=True)
    assert prepared.prompt.parts == ["q ,  l ", "q ,  r"] and prepared.prompt.negative_parts == ["n ,  m"]
    # "Flip prompts" reverses the parts (with a common prompt)
    assert regions("q BREAK l BREAK r", use_common=True, options=(OPT_FLIP_PROMPTS,)).prompt.parts == ["q ,  r", "q ,  l "]


def test_and_breaks_blanks_and_chunk_breaks():
    assert regions("red AND blue").prompt.parts == ["red ", " blue"]
    assert regions("red BREAK ").prompt.parts == ["red ", "  _"]  # an empty last region gets " _"
    with pytest.raises(RegionalPromptError, match="AND"):
        regions("red AND blue", options=(OPT_KEEP_AND,))
    chunks = regions("red BREAK shiny ADDCOL blue", options=(OPT_BREAK_CHUNKS,))
    assert chunks.prompt.parts == ["red BREAK shiny ", " blue"] and chunks.layout.parts == [0, 1]
    assert template_keys("1,1", rows=False, use_common=True, use_base=True) == ["ADDCOMM", "ADDBASE", "ADDCOL"]
    # the hires options: the pass without regions still gets the parts (plain attention over them all)
    hires_only = regions("red BREAK blue", options=(OPT_HIRES_ONLY,))
    assert hires_only.plan() is None and hires_only.plan(hires=True) is not None
    assert regions("red BREAK blue", options=(OPT_NOT_HIRES,)).plan(hires=True) is None


def test_settings_easel_cannot_run_are_refused_by_name():
    for settings, word in (({"mode": "Prompt", "calc_mode": "Latent"}, "Prompt mode"), ({"matrix_submode": "Random"}, "Random")):
        with pytest.raises(RegionalPromptError, match=word):
            regions("a BREAK b", **settings)
    assert regions("a ADDP b").request.mode == "Prompt"  # ADDP turns Prompt mode on, as in the extension
    with pytest.raises(RegionalPromptError, match="base prompt, then BREAK"):
        regions("a, BREAK", mode="Prompt", options=(OPT_BREAK_CHUNKS,))
    with pytest.raises(RegionalPromptError, match="negative prompt has 2 parts"):
        regions("a BREAK b BREAK c", "n1 BREAK n2", ratios="1,1,1")
    assert issubclass(RegionalPromptError, UserError)


# --- masks ---------------------------------------------------------------------------------------


def mask_picture(width: int = 8, height: int = 4, white_right: bool = False) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = palette_colour(0)
    array[:, width // 2 :] = (255, 255, 255) if white_right else palette_colour(1)
    return Image.fromarray(array)


def test_the_palette_and_a_painted_mask():
    assert [palette_colour(n) for n in range(3)] == [(128, 64, 64), (64, 128, 128), (96, 128, 64)]
    prepared = regions("left BREAK right", mode="Mask", mask=mask_picture())
    assert prepared.layout.assignment(2, 4).tolist() == [[0, 0, 1, 1]] * 2
    # without a base the first colour also takes the unpainted pixels; with one, the base takes them
    assert regions("left BREAK x", mode="Mask", mask=mask_picture(white_right=True)).layout.assignment(1, 4).tolist() == [[0] * 4]
    based = regions("base BREAK left", mode="Mask", mask=mask_picture(white_right=True), use_base=True, base_ratios="0.25")
    weights = based.layout.weights(1, 4)
    assert weights[0].tolist() == [[0.75, 0.75, 0, 0]] and weights[1].tolist() == [[0.25, 0.25, 1, 1]]
    with pytest.raises(RegionalPromptError, match="no region colour"):
        regions("a BREAK b", mode="Mask", mask=Image.new("RGB", (4, 4), "white"))
    with pytest.raises(RegionalPromptError, match="mask picture"):
        regions("a BREAK b", mode="Mask")


# --- API arguments and infotext ------------------------------------------------------------------


README_ARGS = [True, False, "Matrix", "Vertical", "Mask", "Prompt", "1,1,1", "", False, False, False, "Attention", False, "0", "0", "0", ""]


def test_the_readme_args_and_the_defaults_of_missing_ones():
    request = parse_regional_args({"args": README_ARGS})
    assert (request.active, request.mode, request.matrix_submode, request.ratios, request.rows) == (True, "Matrix", "Vertical", "1,1,1", True)
    assert (request.lora_stop, request.flip, request.mask, request.options) == ("0", False, None, ())
    assert parse_regional_args([True]).ratios == "1,1" and parse_regional_args([True]).base_ratios == "0.2"
    assert find_regional_args({"regional prompter": {"args": [True]}}) == {"args": [True]}


def test_argument_forms_and_errors_name_the_argument():
    assert parse_regional_args([True, False, "matrix", "colums"]).matrix_submode == "Columns"
    assert parse_regional_args([True, True] + README_ARGS[2:12] + [True]).options == (OPT_KEEP_AND, "debug")
    assert parse_regional_args(README_ARGS[:12] + ["Flip prompts, Use BREAK to change chunks"]).options == (OPT_FLIP_PROMPTS, OPT_BREAK_CHUNKS)
    assert parse_regional_args(README_ARGS[:6] + [2]).ratios == "2"
    for args, named in (([True, False, "Grid"], "arg 3 (mode)"), (["yes please"], "arg 1 (active)"), (README_ARGS[:12] + [["nope"]], "arg 13"),
                        (README_ARGS + ["x"], "arg 18 (LoRA stop step)"), ([True] * 21, "at most 20")):
        with pytest.raises(RegionalPromptError, match=named.replace("(", r"\(").replace(")", r"\)")):
            parse_regional_args(args)
    picture = mask_picture()
    decoded = parse_regional_args(README_ARGS[:16] + ["BASE64"], decode=lambda text: picture)
    assert decoded.mask is picture
    with pytest.raises(RegionalPromptError, match="base64"):
        parse_regional_args(README_ARGS[:16] + ["mask.png"])


def test_infotext_round_trip_and_older_keys():
    request = RegionalRequest(active=True, ratios="1,2;1,1", base_ratios="0.2", use_base=True, options=(OPT_FLIP_PROMPTS, "debug"), flip=True)
    keys = regional_infotext(request)
    assert list(keys) == ["RP Active", "RP Divide mode", "RP Matrix submode", "RP Mask submode", "RP Prompt submode", "RP Calc Mode",
                          "RP Ratios", "RP Base Ratios", "RP Use Base", "RP Use Common", "RP Use Ncommon", "RP Options",
                          "RP LoRA Neg Te Ratios", "RP LoRA Neg U Ratios", "RP threshold", "RP LoRA Stop Step",
                          "RP LoRA Hires Stop Step", "RP Flip"]
    line = format_parameters({"Steps": 20, **keys})
    assert 'RP Ratios: "1,2;1,1"' in line and 'RP Options: "Flip prompts,debug"' in line and "RP Flip: True" in line
    assert parse_regional_infotext(parse_infotext("a BREAK b\n" + line)) == request
    assert regional_infotext(RegionalRequest(active=True))["RP Options"] == "No Options"
    old = parse_regional_infotext({"RP Active": "True", "RP Divide mode": "Horizontal", "RP Ratios": "1,1", "RP Change AND": "True"})
    assert old is not None and (old.mode, old.matrix_submode, old.options) == ("Matrix", "Horizontal", (OPT_KEEP_AND,))
    assert parse_regional_infotext({"Steps": "20"}) is None


# --- Attention mode on tiny models ---------------------------------------------------------------


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()


class Holder(AttentionMixin, torch.nn.Module):
    """One attention layer with the UNet's processor API."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.attn2 = attn


def two_columns(**settings) -> RegionLayout:
    return regions("left BREAK right", **settings).layout


def test_one_region_over_everything_is_the_plain_prompt_and_processors_come_back():
    unet = tiny_unet()
    torch.manual_seed(1)
    x, t, hidden = torch.randn(2, 4, 10, 6), torch.full((2,), 500.0), torch.randn(1, 77, 32)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=hidden.expand(2, -1, -1)).sample
    before = unet.attn_processors
    single = RegionLayout(parts=[0], base_weights=[0.0], mask=np.zeros((3, 3), dtype=np.int64))
    plan = RegionPlan(single)
    with torch.no_grad(), regional_attention(unet, plan), plan.bound((10, 6), [((0, 77),), ((0, 77),)]):
        kinds = {type(p).__name__ for name, p in unet.attn_processors.items() if ".attn2." in name}
        regional = unet(x, t, encoder_hidden_states=hidden.expand(2, -1, -1)).sample
    assert kinds == {"RegionalAttnProcessor"}
    torch.testing.assert_close(regional, plain, rtol=0, atol=1e-5)
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_the_same_prompt_in_every_region_is_the_plain_prompt_and_plain_rows_stay_plain():
    unet = tiny_unet()
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 300.0)
    prompt, negative = torch.randn(1, 77, 32), torch.randn(1, 154, 32)
    joined = join_parts([Conditioning(prompt)] * 2)
    hidden = torch.cat([joined.hidden, negative])
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=torch.cat([torch.cat([prompt, prompt], 1), negative])).sample
        plain_prompt = unet(x[:1], t[:1], encoder_hidden_states=prompt).sample
    plan = RegionPlan(two_columns())
    with torch.no_grad(), regional_attention(unet, plan), plan.bound((8, 8), [joined.spans, None]):
        regional = unet(x, t, encoder_hidden_states=hidden).sample
    torch.testing.assert_close(regional[:1], plain_prompt, rtol=0, atol=1e-5)  # each region sees exactly the prompt
    torch.testing.assert_close(regional[1:], plain[1:], rtol=0, atol=1e-5)  # the negative row runs plain


def test_two_columns_at_one_attention_layer_equal_the_hand_computation():
    torch.manual_seed(3)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8).eval()
    attn.set_processor(AttnProcessor2_0())
    hidden = torch.randn(1, 4 * 6, 16)  # a 4x6 token grid
    left, right, base = torch.randn(1, 77, 8), torch.randn(1, 77, 8), torch.randn(1, 77, 8)
    with torch.no_grad():
        out_left, out_right, out_base = (attn(hidden, encoder_hidden_states=c).reshape(4, 6, 16) for c in (left, right, base))
        plan = RegionPlan(two_columns())
        with regional_attention(Holder(attn), plan), plan.bound((4, 6), [((0, 77), (77, 154))]):
            mixed = attn(hidden, encoder_hidden_states=torch.cat([left, right], 1)).reshape(4, 6, 16)
        torch.testing.assert_close(mixed[:, :3], out_left[:, :3], rtol=0, atol=1e-6)
        torch.testing.assert_close(mixed[:, 3:], out_right[:, 3:], rtol=0, atol=1e-6)
        # with a base prompt at 0.3: every cell is 0.7 of its region + 0.3 of the base
        plan = RegionPlan(regions("b BREAK l BREAK r", use_base=True, base_ratios="0.3").layout)
        with regional_attention(Holder(attn), plan), plan.bound((4, 6), [((0, 77), (77, 154), (154, 231))]):
            based = attn(hidden, encoder_hidden_states=torch.cat([base, left, right], 1)).reshape(4, 6, 16)
        torch.testing.assert_close(based[:, :3], 0.7 * out_left[:, :3] + 0.3 * out_base[:, :3], rtol=0, atol=1e-6)
        torch.testing.assert_close(based[:, 3:], 0.7 * out_right[:, 3:] + 0.3 * out_base[:, 3:], rtol=0, atol=1e-6)
    assert isinstance(attn.processor, AttnProcessor2_0)


def test_regions_change_the_output_and_each_layer_finds_its_grid():
    unet = tiny_unet()
    torch.manual_seed(4)
    x, t = torch.randn(1, 4, 9, 7), torch.full((1,), 700.0)
    left, right = torch.randn(1, 77, 32), torch.randn(1, 77, 32)
    plan = RegionPlan(two_columns())
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=torch.cat([left, right], 1)).sample
        with regional_attention(unet, plan), plan.bound((9, 7), [((0, 77), (77, 154))]):
            regional = unet(x, t, encoder_hidden_states=torch.cat([left, right], 1)).sample
    assert regional.shape == plain.shape and not torch.allclose(regional, plain, atol=1e-3)
    assert layer_grid((9, 7), 63) == (9, 7) and layer_grid((9, 7), 20) == (5, 4) and layer_grid((9, 7), 6) == (3, 2)
    assert {key[0] for key in plan._maps} == {(9, 7), (5, 4)}


def test_parts_are_encoded_one_by_one_like_the_whole_prompt(tokenizer_cache):
    from transformers import CLIPTextConfig, CLIPTextModel

    from modules.checkpoints.tokenizer import load_clip_tokenizer
    from modules.prompts.conditioning import EncoderPlan, PromptEncoder
    from modules.prompts.parser import parse_emphasis

    tokenizer = load_clip_tokenizer(tokenizer_cache)
    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=49408,
                            max_position_embeddings=77, hidden_act="quick_gelu")
    encoder = PromptEncoder([(CLIPTextModel(config).eval(), EncoderPlan(1, True, tokenizer.eos_token_id))], tokenizer, torch.device("cpu"),
                            parse_emphasis)
    parts = ["a (red:1.2) circle ", " " + "blue square, " * 30, " [cat:dog:5]"]
    schedule = regional_schedule(encoder, parts, steps=10)
    assert [end for end, _ in schedule] == [5, 10]
    first = schedule[0][1][0][0]
    assert first.spans == ((0, 77), (77, 231), (231, 308))
    whole = encoder.encode(" BREAK ".join(["a (red:1.2) circle", "blue square, " * 30, "cat"]))
    torch.testing.assert_close(first.hidden, whole.hidden, rtol=0, atol=1e-6)
    negative = regional_schedule(encoder, ["ugly"], steps=10, plain_when_single=True)[0][1][0][0]
    assert not hasattr(negative, "spans")
    assert row_spans([first, negative], 2) == [first.spans, first.spans, None, None]
    assert row_spans([negative], 1) is None


@pytest.mark.parametrize("variant", ["sdxl", "fused", "sliced"])
def test_the_pass_processors_and_sdxl_run_under_regions(variant):
    from tools.make_test_models import tiny_spec

    if variant == "sdxl":
        torch.manual_seed(5)
        unet = UNet2DConditionModel(**tiny_spec("sdxl-base").components["unet"].config).eval()
        width = unet.config.cross_attention_dim
        added = {"text_embeds": torch.randn(1, unet.config.projection_class_embeddings_input_dim - 6 * 8), "time_ids": torch.rand(1, 6) * 64}
    else:
        unet, width, added = tiny_unet(), 32, None
        if variant == "fused":
            unet.fuse_qkv_projections()
        else:
            unet.set_attention_slice(1)
    torch.manual_seed(6)
    x, t, prompt = torch.randn(1, 4, 8, 6), torch.full((1,), 400.0), torch.randn(1, 77, width)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=prompt, added_cond_kwargs=added).sample
        plan = RegionPlan(regions("base BREAK l BREAK r", use_base=True, base_ratios="0.5").layout)
        with regional_attention(unet, plan), plan.bound((8, 6), [((0, 77), (77, 154), (154, 231))]):
            regional = unet(x, t, encoder_hidden_states=torch.cat([prompt] * 3, 1), added_cond_kwargs=added).sample
    torch.testing.assert_close(regional, plain, rtol=0, atol=1e-5)  # three parts, one text: the plain output
