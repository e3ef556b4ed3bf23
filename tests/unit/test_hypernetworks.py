"""Hypernetworks (modules/hypernetworks): A1111's module layout (activations, layer norm, dropout
indices, `activate_output`), files with new and old key names read without running code, the
attention processor against a hand computation, multiplier 0, exact restore of the processors, and
the UNet output changed on a tiny UNet and bit-identical after removal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from modules.checkpoints.tensor_files import read_weights_file
from modules.errors import ModelLoadError, UnsafeCheckpointError
from modules.generation.request import GenerationRequest
from modules.hypernetworks.files import HypernetworkLibrary
from modules.hypernetworks.network import Structure, hypernetwork_from_data
from modules.hypernetworks.processor import HypernetworkAttnProcessor, hypernetworks_applied
from modules.hypernetworks.request import request_hypernetworks
from modules.infotext.legacy import legacy_hypernet_tag
from tools.make_test_hypernetworks import write_test_hypernetwork


def kinds(structure: Structure) -> list[str]:
    return [type(m).__name__ for m in structure.build(8)]


def test_the_mlp_is_laid_out_as_a1111_lays_it_out():
    assert kinds(Structure((1, 2, 1), "relu")) == ["Linear", "ReLU", "Linear", "ReLU"]  # activate_output: True when a file does not say
    assert kinds(Structure((1, 2, 1), "relu", activate_output=False)) == ["Linear", "ReLU", "Linear"]
    assert kinds(Structure((1, 2, 1), "linear")) == ["Linear", "Linear"] == kinds(Structure((1, 2, 1), None))
    assert kinds(Structure((1, 2, 2, 1), "swish", layer_norm=True, dropout=True)) == [
        "Linear", "Hardswish", "LayerNorm", "Dropout", "Linear", "Hardswish", "LayerNorm", "Linear", "Hardswish", "LayerNorm"]
    assert kinds(Structure((1, 2, 1), "gelu", dropout=True, last_layer_dropout=True)) == ["Linear", "GELU", "Dropout", "Linear", "GELU"]
    assert Structure.from_file({}, "x") == Structure((1.0, 2.0, 1.0), None, False, False, False, True)
    with pytest.raises(ModelLoadError, match="start and end with 1"):
        Structure.from_file({"layer_structure": [2, 1]}, "x")
    with pytest.raises(ModelLoadError, match="activation 'wobble'"):
        Structure.from_file({"activation_func": "wobble"}, "x")


def test_files_with_new_and_old_keys_load(tmp_path):
    new = write_test_hypernetwork(tmp_path / "new.pt", (32, 64), layer_norm=True, dropout=True, layers=(1, 2, 2, 1))
    network = hypernetwork_from_data(read_weights_file(tmp_path / "new.pt", "hypernetwork"), "new")
    assert sorted(network.layers) == [32, 64] and network.metadata["step"] == 100
    key_mlp = network.layers[64][0]
    assert torch.equal(key_mlp.linear[0].weight, new[64][0]["linear.0.weight"])
    write_test_hypernetwork(tmp_path / "old.pt", (32,), old_keys=True)
    old = hypernetwork_from_data(read_weights_file(tmp_path / "old.pt", "hypernetwork"), "old")
    assert kinds(old.structure) == ["Linear", "Linear"] and old.layers[32][1].linear[1].weight.shape == (32, 64)
    with pytest.raises(ModelLoadError, match="no layers"):
        hypernetwork_from_data({"name": "empty"}, "empty")
    with pytest.raises(ModelLoadError, match="do not fit its structure"):
        hypernetwork_from_data({32: ({"linear.0.weight": torch.zeros(64, 32)}, {}), "layer_structure": [1, 2, 1]}, "bad")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_noted(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "hypernetworks"
    folder.mkdir()
    torch.save({32: ({}, {}), "payload": _Payload(marker)}, folder / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused.*Nothing from it was executed"):
        read_weights_file(folder / "evil.pt", "hypernetwork")
    library = HypernetworkLibrary(folder)
    library.refresh()
    found = request_hypernetworks(library, GenerationRequest(prompt="a cat <hypernet:evil:1> <hypernet:missing:0.5>"))
    assert found.networks == [] and "evil" in found.notes[0] and "refused" in found.notes[0] and "missing" in found.notes[1]
    assert not marker.exists()


def test_the_processor_is_the_hand_computation_and_multiplier_zero_is_the_layer_itself(tmp_path):
    write_test_hypernetwork(tmp_path / "h.pt", (16, 8), seed=3)
    network = hypernetwork_from_data(read_weights_file(tmp_path / "h.pt", "hypernetwork"), "h")
    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8).eval()
    attn.set_processor(AttnProcessor2_0())
    hidden, context = torch.randn(2, 12, 16), torch.randn(2, 5, 8)
    processor = HypernetworkAttnProcessor(AttnProcessor2_0(), [network])
    with torch.no_grad():
        out = processor(attn, hidden, context)
        key_mlp, value_mlp = network.layers[8]
        ck, cv = context + key_mlp.linear(context), context + value_mlp.linear(context)
        q = attn.to_q(hidden).view(2, -1, 2, 8).transpose(1, 2)
        k, v = (f(c).view(2, -1, 2, 8).transpose(1, 2) for f, c in ((attn.to_k, ck), (attn.to_v, cv)))
        expected = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v
        expected = attn.to_out[0](expected.transpose(1, 2).reshape(2, -1, 16))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        network.set_multiplier(0.0)
        torch.testing.assert_close(processor(attn, hidden, context), attn(hidden, encoder_hidden_states=context), rtol=0, atol=0)
        untouched = HypernetworkAttnProcessor(AttnProcessor2_0(), [network])(attn, hidden, torch.randn(2, 5, 8)[..., :8])
        assert untouched.shape == (2, 12, 16)


def test_on_a_tiny_unet_the_output_changes_and_comes_back_bit_for_bit(tmp_path):
    from diffusers import UNet2DConditionModel

    from tools.make_test_models import tiny_spec

    torch.manual_seed(1)
    unet = UNet2DConditionModel(**tiny_spec("sd1").components["unet"].config).eval()
    write_test_hypernetwork(tmp_path / "h.pt", (32, 64), seed=4)
    network = hypernetwork_from_data(read_weights_file(tmp_path / "h.pt", "hypernetwork"), "h")
    x, t, text = torch.randn(1, 4, 8, 8), torch.full((1,), 500.0), torch.randn(1, 77, 32)
    before = unet.attn_processors
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=text).sample
        with hypernetworks_applied(unet, [network]):
            changed = unet(x, t, encoder_hidden_states=text).sample
            assert {type(p).__name__ for p in unet.attn_processors.values()} == {"HypernetworkAttnProcessor"}
        again = unet(x, t, encoder_hidden_states=text).sample
    assert (changed - plain).abs().mean() > 1e-3
    assert torch.equal(again, plain)
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_old_infotext_keys_become_the_tag():
    assert legacy_hypernet_tag({"Hypernet": "anime", "Hypernet strength": "0.6"}) == "<hypernet:anime:0.6>"
    assert legacy_hypernet_tag({"Hypernet": "anime"}) == "<hypernet:anime:1.0>"  # A1111's default when the strength is not written
    assert legacy_hypernet_tag({"Hypernet": "None"}) is None and legacy_hypernet_tag({}) is None


def test_pasting_an_old_picture_puts_the_tag_into_the_prompt():
    from modules.infotext.restore import restore_request

    restored = restore_request({"Prompt": "a cat", "Steps": "20", "Hypernet": "anime", "Hypernet strength": "0.6", "Hypernet hash": "0123456789"},
                               {"prompt", "steps"})
    assert restored.fields["prompt"] == "a cat<hypernet:anime:0.6>"  # appended as A1111's paste appends it
    assert not [item for item in restored.not_applied if item.key.startswith("Hypernet")]
