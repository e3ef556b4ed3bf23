"""ControlNet's rules as sd-webui-controlnet applies them, checked by hand computation on a tiny
ControlNet made from a tiny UNet: the guidance window, the per-layer scales of each control mode,
the conditional-row masking, several units summed, and the units clients send."""

from __future__ import annotations

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from modules.controlnet.apply import ControlPlan, PreparedUnit, in_window, layer_scales, soft_scales
from modules.controlnet.units import ControlNetError, parse_unit, parse_units
from modules.generation.guidance import GuidedDenoiser, StepConditions, UNetEps
from modules.prompts.conditioning import Conditioning


def tiny_pair(seed: int = 0) -> tuple[UNet2DConditionModel, ControlNetModel]:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()
    control = ControlNetModel.from_unet(unet).eval()  # the real hint encoder: 8x the latent, as SD ControlNets
    with torch.no_grad():
        for parameter in control.parameters():  # its zero convolutions start at zero: make them say something
            parameter.normal_(0, 0.05)
    return unet, control


def inputs(batch: int = 2):
    torch.manual_seed(1)
    return torch.randn(batch, 4, 8, 8), torch.full((batch,), 500.0), torch.randn(batch, 7, 32), torch.rand(1, 3, 64, 64)


def raw_residuals(control, x, t, hidden, hint):
    with torch.no_grad():
        return control(x, t, encoder_hidden_states=hidden, controlnet_cond=hint.expand(x.shape[0], -1, -1, -1), return_dict=False)


def test_the_guidance_window_is_the_extensions_not_diffusers():
    steps = [i for i in range(20) if in_window(i, 20, 0.1, 0.5)]
    assert steps == list(range(2, 11))  # 2/20 = 0.1 ... 10/20 = 0.5: nine steps
    diffusers_rule = [i for i in range(20) if i / 20 >= 0.1 and (i + 1) / 20 <= 0.5]
    assert diffusers_rule == list(range(2, 10))  # one step fewer at the end
    assert [i for i in range(20) if in_window(i, 20, 0.0, 1.0)] == list(range(20))


def test_soft_weights_are_0825_to_the_power_of_the_depth():
    assert soft_scales(1.0, 13) == pytest.approx([0.825 ** (12 - i) for i in range(13)])
    assert soft_scales(0.5, 13)[0] == pytest.approx(0.5 * 0.0995, abs=1e-4) and soft_scales(0.5, 13)[-1] == 0.5
    assert soft_scales(1.0, 10, sdxl=True) == pytest.approx([0.825 ** (12 - i) for i in range(10)])  # the extension's quirk
    assert layer_scales(0.7, "Balanced", 13) == [0.7] * 13


@pytest.mark.parametrize("mode", ["Balanced", "My prompt is more important", "ControlNet is more important"])
def test_each_control_mode_scales_each_layer_and_masks_rows_as_by_hand(mode):
    _, control = tiny_pair()
    x, t, hidden, hint = inputs()
    down, mid = raw_residuals(control, x, t, hidden, hint)
    count = len(down) + 1
    scales = [0.7] * count if mode == "Balanced" else [0.7 * 0.825 ** (count - 1 - i) for i in range(count)]
    rows = torch.tensor([False, True])  # row 1 is the negative prompt's
    plan = ControlPlan([PreparedUnit(control, hint, 0.7, mode, 0.0, 1.0)], total_steps=10, step=lambda: 0)
    got_down, got_mid = plan.residuals(x, t, hidden, rows, None)
    keep = torch.tensor([1.0, 0.0 if mode == "ControlNet is more important" else 1.0]).view(-1, 1, 1, 1)
    for got, raw, scale in zip(got_down, down, scales[:-1]):
        assert torch.allclose(got, raw * scale * keep, atol=1e-6)
    assert torch.allclose(got_mid, mid * scales[-1] * keep, atol=1e-6)


def tiny_sdxl_pair() -> tuple[UNet2DConditionModel, ControlNetModel]:
    """SDXL's layout at a tiny width: three levels of two resnets (attention on the last two), size
    and pooled-text embeddings, so the ControlNet gives SDXL's 9 down residuals + the middle."""
    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 16,
    ).eval()
    control = ControlNetModel.from_unet(unet).eval()
    assert (control.config.addition_embed_type, control.config.addition_time_embed_dim, control.config.projection_class_embeddings_input_dim) == (
        "text_time", 8, 64)
    with torch.no_grad():
        for parameter in control.parameters():
            parameter.normal_(0, 0.05)
    return unet, control


@pytest.mark.parametrize("mode", ["My prompt is more important", "ControlNet is more important", "Balanced"])
def test_sdxl_takes_the_first_ten_of_the_13_soft_factors(mode, monkeypatch):
    import modules.controlnet.apply as apply

    _, control = tiny_sdxl_pair()
    x, t, hidden, hint = inputs()
    added = {"text_embeds": torch.randn(2, 16), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]).expand(2, -1)}
    with torch.no_grad():
        down, mid = control(x, t, encoder_hidden_states=hidden, controlnet_cond=hint.expand(2, -1, -1, -1), added_cond_kwargs=added, return_dict=False)
    assert len(down) + 1 == 10  # SDXL's count
    given = []
    real = apply.layer_scales
    monkeypatch.setattr(apply, "layer_scales", lambda *a: given.append(real(*a)) or given[-1])
    plan = ControlPlan([PreparedUnit(control, hint, 0.7, mode, 0.0, 1.0, sdxl=True)], total_steps=10, step=lambda: 0)
    got_down, got_mid = plan.residuals(x, t, hidden, torch.tensor([False, True]), added)
    scales = [0.7] * 10 if mode == "Balanced" else [0.7 * 0.825 ** (12 - i) for i in range(10)]  # the middle block gets 0.825^3, not 1
    assert len(given) == 1 and given[0] == pytest.approx(scales) and len(given[0]) == len(down) + 1
    keep = torch.tensor([1.0, 0.0 if mode == "ControlNet is more important" else 1.0]).view(-1, 1, 1, 1)
    for got, raw, scale in zip(got_down, down, scales[:-1]):
        assert torch.allclose(got, raw * scale * keep, atol=1e-6)
    assert torch.allclose(got_mid, mid * scales[-1] * keep, atol=1e-6)


def test_several_units_sum_and_a_unit_outside_its_window_adds_nothing():
    _, first = tiny_pair(0)
    _, second = tiny_pair(1)
    x, t, hidden, hint = inputs()
    a_down, a_mid = raw_residuals(first, x, t, hidden, hint)
    b_down, b_mid = raw_residuals(second, x, t, hidden, 1 - hint)
    step = {"now": 3}
    units = [PreparedUnit(first, hint, 1.0, "Balanced", 0.0, 1.0), PreparedUnit(second, 1 - hint, 0.5, "Balanced", 0.0, 0.2)]
    plan = ControlPlan(units, total_steps=10, step=lambda: step["now"])
    down, mid = plan.residuals(x, t, hidden, None, None)  # step 3/10 > 0.2: only the first
    assert torch.allclose(mid, a_mid, atol=1e-6)
    step["now"] = 2
    down, mid = plan.residuals(x, t, hidden, None, None)  # 2/10 <= 0.2: both
    assert torch.allclose(mid, a_mid + 0.5 * b_mid, atol=1e-6)
    assert all(torch.allclose(d, a + 0.5 * b, atol=1e-6) for d, a, b in zip(down, a_down, b_down))
    plan_off = ControlPlan([units[1]], total_steps=10, step=lambda: 5)
    assert plan_off.residuals(x, t, hidden, None, None) is None


def test_the_unet_takes_the_residuals_and_weight_zero_changes_nothing():
    unet, control = tiny_pair()
    x, t, hidden, hint = inputs()
    plain = UNetEps(unet)(x, t, hidden)
    controlled = UNetEps(unet, control=ControlPlan([PreparedUnit(control, hint, 1.0, "Balanced", 0, 1)], 10, lambda: 0))(x, t, hidden)
    zero = UNetEps(unet, control=ControlPlan([PreparedUnit(control, hint, 0.0, "Balanced", 0, 1)], 10, lambda: 0))(x, t, hidden)
    assert not torch.allclose(plain, controlled, atol=1e-4)
    assert torch.allclose(plain, zero, atol=1e-6)


def test_the_guided_denoiser_says_which_rows_are_unconditional():
    seen = []

    def denoise(x, sigma, hidden, pooled, **roles):
        seen.append(roles.get("uncond_rows"))
        return x

    conds = StepConditions([(99, [(Conditioning(torch.zeros(1, 77, 8), None), 1.0)])])
    unconds = StepConditions([(99, [(Conditioning(torch.ones(1, 77, 8), None), 1.0)])])
    guided = GuidedDenoiser(denoise, conds, unconds, 7.0, 0.1, 10.0, row_roles=True)
    guided(torch.zeros(2, 4, 8, 8), torch.tensor(1.0))
    assert seen[0].tolist() == [False, False, True, True]


def test_units_as_clients_send_them():
    webuiapi = {"image": "", "mask": None, "module": "canny", "model": "control_canny", "weight": 1.0, "resize_mode": "Resize and Fill",
                "low_vram": False, "processor_res": 512, "threshold_a": 64, "threshold_b": 64, "guidance_start": 0.0, "guidance_end": 1.0,
                "control_mode": 0, "pixel_perfect": False, "hr_option": "Both", "enabled": True}
    unit = parse_unit(webuiapi, 0)
    assert (unit.image, unit.resize_mode, unit.control_mode, unit.processor_res) == (None, "Resize and Fill", "Balanced", 512)
    old = parse_unit({"input_image": "abc", "mask_image": "m", "lowvram": True, "guidance": 0.4, "resize_mode": 1, "control_mode": 2,
                      "module": "none", "something_new": 1}, 1)
    assert (old.image, old.mask, old.low_vram, old.guidance_end, old.resize_mode, old.control_mode) == (
        "abc", "m", True, 0.4, "Crop and Resize", "ControlNet is more important")
    assert old.enabled  # missing: on, as before v1.1.448 and in Forge
    assert parse_unit({"resize_mode": "Envelope (Outer Fit)"}, 0).resize_mode == "Resize and Fill"
    assert parse_units({"args": [{"enabled": False}, {"module": "canny"}]}) == [parse_unit({"module": "canny"}, 1)]


@pytest.mark.parametrize("raw, words", [
    ({"weight": 5}, ["unit 0", "weight must be between 0 and 2, not 5"]),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, ["unit 0", "guidance_start and guidance_end", "0.8 and 0.2"]),
    ({"control_mode": "Strong"}, ["unit 0", "control_mode must be one of Balanced"]),
    ({"resize_mode": 7}, ["resize_mode"]),
    ({"weight": "heavy"}, ["weight must be a number"]),
])
def test_bad_units_name_the_unit_and_the_field(raw, words):
    with pytest.raises(ControlNetError) as raised:
        parse_unit(raw, 0)
    for word in words:
        assert word in str(raised.value)


def test_more_units_than_the_setting_allows_are_refused_not_dropped():
    with pytest.raises(ControlNetError, match="4 ControlNet units were sent; at most 3"):
        parse_units({"args": [{}, {}, {}, {}]})
    with pytest.raises(ControlNetError, match="unit 1: a unit must be a JSON object"):
        parse_units([{}, [1, 2]])
