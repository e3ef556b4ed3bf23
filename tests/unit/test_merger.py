"""The checkpoint merger (modules/merger) on tiny single-file checkpoints: weighted sum at M = 0 and
M = 1 is A and B bit for bit, add difference with C = B is A, a middle M is the hand computation;
fp16, a baked VAE, an inpainting A with a normal B, families that do not fit, a name already taken,
a stop halfway (no file left), A1111's metadata, and a malicious pickle refused without running."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from modules.checkpoints.tensor_files import SafetensorsFile
from modules.merger.merge import MergeInput, merge_checkpoints
from modules.merger.recipe import ADD_DIFFERENCE, NO_INTERPOLATION, WEIGHTED_SUM, MergeError, MergeRecipe
from tools.make_test_models import write_test_checkpoint, write_test_vae


def read_all(path: Path) -> dict[str, torch.Tensor]:
    file = SafetensorsFile(path)
    try:
        return {key: file.read(key) for key in file.shapes()}
    finally:
        file.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    paths = {name: root / f"{name}.safetensors" for name in ("a", "b", "c", "xl", "inpaint")}
    write_test_checkpoint(paths["a"], "sd1", seed=1)
    write_test_checkpoint(paths["b"], "sd1", seed=2)
    write_test_checkpoint(paths["c"], "sd1", seed=3)
    write_test_checkpoint(paths["xl"], "sdxl-base", seed=4)
    write_test_checkpoint(paths["inpaint"], "sd1", seed=5, in_channels=9)
    write_test_vae(root / "vae.safetensors", "sd1", seed=6)
    paths["vae"] = root / "vae.safetensors"
    return paths


def merge(models, out: Path, method: str, names: tuple[str, ...], multiplier: float = 0.3, **options) -> dict[str, torch.Tensor]:
    recipe = MergeRecipe(*names, method=method, multiplier=multiplier, **options) if len(names) == 3 else \
        MergeRecipe(names[0], names[1] if len(names) > 1 else "", method=method, multiplier=multiplier, **options)
    inputs = [MergeInput(models[name], name, sha256=f"{ord(name[0]):064x}", legacy_hash="0" * 8) for name in names]
    merge_checkpoints(recipe, inputs, out, vae=options.get("bake_in_vae") and models["vae"])
    return read_all(out)


def test_weighted_sum_ends_are_the_models_bit_for_bit_and_the_middle_is_the_mix(models, tmp_path):
    a, b = read_all(models["a"]), read_all(models["b"])
    at_zero = merge(models, tmp_path / "zero.safetensors", WEIGHTED_SUM, ("a", "b"), 0.0)
    at_one = merge(models, tmp_path / "one.safetensors", WEIGHTED_SUM, ("a", "b"), 1.0)
    assert at_zero.keys() == a.keys()
    assert all(torch.equal(at_zero[k], a[k]) for k in a) and all(torch.equal(at_one[k], b[k]) for k in a)
    middle = merge(models, tmp_path / "middle.safetensors", WEIGHTED_SUM, ("a", "b"), 0.3)
    key = "model.diffusion_model.input_blocks.1.1.proj_in.weight" if "model.diffusion_model.input_blocks.1.1.proj_in.weight" in a else next(iter(a))
    torch.testing.assert_close(middle[key], a[key] * 0.7 + b[key] * 0.3, rtol=0, atol=1e-7)


def test_add_difference_with_c_equal_to_b_is_a_and_otherwise_a_plus_the_difference(models, tmp_path):
    a, b, c = read_all(models["a"]), read_all(models["b"]), read_all(models["c"])
    same = merge(models, tmp_path / "same.safetensors", ADD_DIFFERENCE, ("a", "b", "b"), 0.8)
    assert all(torch.equal(same[k], a[k]) for k in a)
    moved = merge(models, tmp_path / "moved.safetensors", ADD_DIFFERENCE, ("a", "b", "c"), 0.5)
    key = next(k for k in a if k.startswith("model.diffusion_model."))
    torch.testing.assert_close(moved[key], a[key] + (b[key] - c[key]) * 0.5, rtol=0, atol=1e-6)


def test_half_precision_a_baked_vae_and_the_metadata(models, tmp_path):
    out = tmp_path / "baked.safetensors"
    merged = merge(models, out, NO_INTERPOLATION, ("a",), save_as_half=True, bake_in_vae="vae.safetensors")
    a = read_all(models["a"])
    assert all(t.dtype == torch.float16 for t in merged.values() if t.is_floating_point())
    unet = [k for k in a if k.startswith("model.diffusion_model.")]
    assert all(torch.equal(merged[k], a[k].half()) for k in unet)
    vae = read_all(models["vae"])  # bare LDM keys, as users download VAEs
    assert all(torch.equal(merged["first_stage_model." + k], vae[k].half()) for k in vae)
    file = SafetensorsFile(out)
    recipe = json.loads(file.metadata["sd_merge_recipe"])
    models_seen = json.loads(file.metadata["sd_merge_models"])
    file.close()
    assert recipe["interp_method"] == NO_INTERPOLATION and recipe["save_as_half"] is True and recipe["bake_in_vae"] == "vae.safetensors"
    assert recipe["primary_model_hash"] == f"{ord('a'):064x}"[:10]
    assert list(models_seen.values())[0]["name"] == "a"


def test_an_inpainting_a_takes_the_normal_models_first_four_channels(models, tmp_path):
    inpaint, b = read_all(models["inpaint"]), read_all(models["b"])
    merged = merge(models, tmp_path / "inpaint-mix.safetensors", WEIGHTED_SUM, ("inpaint", "b"), 1.0)
    conv = "model.diffusion_model.input_blocks.0.0.weight"
    assert merged[conv].shape[1] == 9
    assert torch.equal(merged[conv][:, :4], b[conv]) and torch.equal(merged[conv][:, 4:], inpaint[conv][:, 4:])
    with pytest.raises(MergeError, match="put the inpainting model in A"):
        merge(models, tmp_path / "wrong-way.safetensors", WEIGHTED_SUM, ("b", "inpaint"), 0.5)


def test_models_that_do_not_fit_and_names_taken_are_refused(models, tmp_path):
    with pytest.raises(MergeError, match="different model families.*a is SD1.*xl is SDXL"):
        merge(models, tmp_path / "mixed.safetensors", WEIGHTED_SUM, ("a", "xl"))
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"mine")
    with pytest.raises(MergeError, match="already exists"):
        merge(models, taken, WEIGHTED_SUM, ("a", "b"))
    assert taken.read_bytes() == b"mine"
    for recipe, words in ((MergeRecipe("a", "b", method="Average"), "Unknown merge method"), (MergeRecipe("a", "b", method=ADD_DIFFERENCE), "tertiary"),
                          (MergeRecipe("a", "", method=WEIGHTED_SUM), "secondary"), (MergeRecipe("a", "b", multiplier=1.5), "between 0 and 1"),
                          (MergeRecipe("a", "b", custom_name="../evil"), "cannot be a file name")):
        with pytest.raises(MergeError, match=words):
            recipe.check()
    assert MergeRecipe("a", "b", multiplier=0.3).output_stem(["a", "b"]) == "a_0.7-b_0.3-Weighted_sum-merged"


def test_a_merge_stopped_halfway_leaves_no_file(models, tmp_path):
    seen = []

    def stop_at_ten(progress):
        seen.append(progress.done)
        if progress.done == 10:
            raise KeyboardInterrupt("stop")

    out = tmp_path / "stopped.safetensors"
    with pytest.raises(KeyboardInterrupt):
        merge_checkpoints(MergeRecipe("a", "b"), [MergeInput(models["a"], "a"), MergeInput(models["b"], "b")], out, on_progress=stop_at_ten)
    assert seen[-1] == 10 and not out.exists() and os.listdir(tmp_path) == []


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_nothing_runs(models, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload(marker)}, evil)
    with pytest.raises(MergeError, match="Cannot read evil.*refused"):
        merge_checkpoints(MergeRecipe("a", "evil"), [MergeInput(models["a"], "a"), MergeInput(evil, "evil")], tmp_path / "out.safetensors")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_discarded_weights_are_left_out_and_a_bad_pattern_is_named(models, tmp_path):
    a = read_all(models["a"])
    kept = merge(models, tmp_path / "slim.safetensors", NO_INTERPOLATION, ("a",), discard_weights=r"first_stage_model\.decoder\.")
    gone = [k for k in a if k.startswith("first_stage_model.decoder.")]
    assert gone and not any(k in kept for k in gone) and len(kept) == len(a) - len(gone)
    with pytest.raises(MergeError, match=r"Discard weights '\(' is not a regular expression"):
        MergeRecipe("a", "b", discard_weights="(").check()
    recipe = json.loads(SafetensorsFile(tmp_path / "slim.safetensors").metadata["sd_merge_recipe"])
    assert recipe["discard_weights"] == r"first_stage_model\.decoder\."
