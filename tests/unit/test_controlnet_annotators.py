"""The preprocessors that run a network (softedge_hed, softedge_hedsafe, lineart_realistic,
lineart_coarse) on weight files of random values, saved as the real files are (a bare state dict,
`torch.save`, under the real name): the file is found in the annotator folders, loaded strictly,
and the map equals a forward pass written out here from the extension's networks (sd-webui-controlnet
v1.1.455, annotator/hed and annotator/lineart) with its post-processing (scripts/preprocessor/legacy/
processor.py: the resize to the resolution, the padding to multiples of 64 and its removal)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from modules.checkpoints.tensor_files import write_safetensors
from modules.controlnet.annotators import hed, lineart
from modules.controlnet.annotators.files import AnnotatorModels
from modules.controlnet.preprocess import PREPROCESSORS, PreprocessorError, detect, find_preprocessor
from modules.controlnet.service import ControlNets
from modules.controlnet.units import ControlUnit
from modules.errors import ModelLoadError, UnsafeCheckpointError

# The keys and shapes of ControlNetHED.pth (ControlNetHED_Apache2: norm, then five DoubleConvBlocks of
# 2, 2, 3, 3, 3 convolutions, each with a 1x1 projection to one channel).
HED_STAGES = {1: (3, 64, 2), 2: (64, 128, 2), 3: (128, 256, 3), 4: (256, 512, 3), 5: (512, 512, 3)}
HED_KEYS = {"norm": (1, 3, 1, 1)}
for _block, (_in, _out, _convs) in HED_STAGES.items():
    for _i in range(_convs):
        HED_KEYS[f"block{_block}.convs.{_i}.weight"] = (_out, _in if _i == 0 else _out, 3, 3)
        HED_KEYS[f"block{_block}.convs.{_i}.bias"] = (_out,)
    HED_KEYS[f"block{_block}.projection.weight"] = (1, _out, 1, 1)
    HED_KEYS[f"block{_block}.projection.bias"] = (1,)

# The keys and shapes of sk_model.pth and sk_model2.pth (Generator(3, 1, 3): the indices are the
# convolutions' places among padding, instance norm (no weights) and ReLU layers).
LINEART_KEYS = {
    "model0.1.weight": (64, 3, 7, 7), "model0.1.bias": (64,),
    "model1.0.weight": (128, 64, 3, 3), "model1.0.bias": (128,), "model1.3.weight": (256, 128, 3, 3), "model1.3.bias": (256,),
    **{f"model2.{r}.conv_block.{c}.{p}": (256, 256, 3, 3) if p == "weight" else (256,) for r in range(3) for c in (1, 5) for p in ("weight", "bias")},
    "model3.0.weight": (256, 128, 3, 3), "model3.0.bias": (128,), "model3.3.weight": (128, 64, 3, 3), "model3.3.bias": (64,),
    "model4.1.weight": (1, 64, 7, 7), "model4.1.bias": (1,),
}


def hed_state(seed: int) -> dict[str, torch.Tensor]:
    """Random HED weights in float16, as ControlNetHED.pth stores them (29 MB for 14.7M weights)."""
    torch.manual_seed(seed)
    network = hed.ControlNetHED()
    with torch.no_grad():
        network.norm.copy_(torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1) + torch.randn(1, 3, 1, 1))
    return {k: v.half() for k, v in network.state_dict().items()}


def lineart_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(lineart.Generator().state_dict())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple:
    """An annotators folder: ControlNetHED.pth and sk_model.pth in it, sk_model2.pth in lineart/ (the
    extension's downloads layout)."""
    root = tmp_path_factory.mktemp("annotators")
    states = {"hed": hed_state(1), "realistic": lineart_state(2), "coarse": lineart_state(3)}
    torch.save(states["hed"], root / "ControlNetHED.pth")
    torch.save(states["realistic"], root / "sk_model.pth")
    (root / "lineart").mkdir()
    torch.save(states["coarse"], root / "lineart" / "sk_model2.pth")
    return root, states


def picture(size=(53, 37)) -> Image.Image:
    rng = np.random.default_rng(4)
    image = Image.fromarray(rng.integers(90, 170, (size[1], size[0], 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((5, 4, 30, 30), fill=(240, 230, 20))
    draw.rectangle((32, 10, 50, 33), fill=(10, 30, 200))
    draw.line((0, 36, 52, 0), fill=(0, 0, 0), width=2)
    return image


def resized_padded(image: Image.Image, resolution: int) -> tuple[np.ndarray, int, int]:
    """The extension's resize_image_with_pad: short side to the resolution (cubic up, area down),
    then the edge repeated to multiples of 64; the unpadded size."""
    array = np.asarray(image.convert("RGB"))
    h, w = array.shape[:2]
    k = resolution / min(h, w)
    height, width = int(np.round(h * k)), int(np.round(w * k))
    array = cv2.resize(array, (width, height), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    return np.pad(array, ((0, -height % 64), (0, -width % 64), (0, 0)), mode="edge"), height, width


def hed_edges(state: dict[str, torch.Tensor], image: np.ndarray) -> np.ndarray:
    """The extension's apply_hed before its scaling: sigmoid of the mean of the five side outputs,
    each resized (bilinear) to the picture's size; float64 (H, W)."""
    weights = {k: v.float() for k, v in state.items()}
    x = torch.from_numpy(image).float().permute(2, 0, 1)[None] - weights["norm"]
    sides = []
    with torch.no_grad():
        for block, (_, _, convs) in HED_STAGES.items():
            if block > 1:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for i in range(convs):
                x = F.relu(F.conv2d(x, weights[f"block{block}.convs.{i}.weight"], weights[f"block{block}.convs.{i}.bias"], padding=1))
            sides.append(F.conv2d(x, weights[f"block{block}.projection.weight"], weights[f"block{block}.projection.bias"])[0, 0].numpy())
    h, w = image.shape[:2]
    stacked = np.stack([cv2.resize(side, (w, h), interpolation=cv2.INTER_LINEAR) for side in sides], axis=2)
    return 1 / (1 + np.exp(-np.mean(stacked, axis=2).astype(np.float64)))


def lineart_drawing(state: dict[str, torch.Tensor], image: np.ndarray) -> np.ndarray:
    """The Generator's output (H, W) in 0..1 for an RGB uint8 picture read as 0..1."""
    def conv(x, name, reflect=0, **options):
        if reflect:
            x = F.pad(x, (reflect,) * 4, mode="reflect")
        return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], **options)

    def block(x):
        return F.relu(F.instance_norm(x))

    with torch.no_grad():
        x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255.0
        x = block(conv(x, "model0.1", reflect=3))
        x = block(conv(block(conv(x, "model1.0", stride=2, padding=1)), "model1.3", stride=2, padding=1))
        for r in range(3):
            x = x + F.instance_norm(conv(block(conv(x, f"model2.{r}.conv_block.1", reflect=1)), f"model2.{r}.conv_block.5", reflect=1))
        for index in (0, 3):
            x = block(F.conv_transpose2d(x, state[f"model3.{index}.weight"], state[f"model3.{index}.bias"], stride=2, padding=1, output_padding=1))
        return torch.sigmoid(conv(x, "model4.1", reflect=3))[0, 0].numpy()


def grey(channel: np.ndarray) -> np.ndarray:
    return np.repeat(channel[:, :, None], 3, axis=2)


def run(name: str, annotators: AnnotatorModels, image: Image.Image, resolution: int) -> np.ndarray:
    return detect(find_preprocessor(name, "ControlNet unit 0", annotators), image, resolution, -1, -1, annotators=annotators)


def test_the_networks_have_the_keys_and_shapes_of_the_real_files():
    assert {k: tuple(v.shape) for k, v in hed.ControlNetHED().state_dict().items()} == HED_KEYS and len(HED_KEYS) == 37
    assert {k: tuple(v.shape) for k, v in lineart.Generator().state_dict().items()} == LINEART_KEYS and len(LINEART_KEYS) == 24
    assert PREPROCESSORS["softedge_hed"].weights == PREPROCESSORS["softedge_hedsafe"].weights == hed.WEIGHTS == "ControlNetHED.pth"
    assert PREPROCESSORS["lineart_realistic"].weights == lineart.REALISTIC == "sk_model.pth"
    assert PREPROCESSORS["lineart_coarse"].weights == lineart.COARSE == "sk_model2.pth"
    assert find_preprocessor("hed_safe", "unit").name == "softedge_hedsafe" and find_preprocessor("lineart", "unit").name == "lineart_realistic"
    assert all(PREPROCESSORS[name].needs_weights and PREPROCESSORS[name].resolution
               for name in ("softedge_hed", "softedge_hedsafe", "lineart_realistic", "lineart_coarse"))


@pytest.mark.parametrize("resolution", [64, 100])
def test_softedge_hed_is_the_extensions_map_of_its_network(folder, resolution):
    root, states = folder
    annotators = AnnotatorModels([root])
    image = picture()
    found = run("softedge_hed", annotators, image, resolution)
    padded, height, width = resized_padded(image, resolution)
    assert found.dtype == np.uint8 and found.shape == (height, width, 3)  # short side at the resolution, padding removed
    assert (height, width) == {64: (64, 92), 100: (100, 143)}[resolution]
    edges = hed_edges(states["hed"], padded)
    assert np.array_equal(found, grey((edges * 255.0).clip(0, 255).astype(np.uint8)[:height, :width]))
    assert found[..., 0].std() > 10  # a map with something in it, not a saturated sigmoid
    assert np.array_equal(run("softedge_hed", annotators, image, resolution), found)  # deterministic
    assert annotators.loaded() == [root / "ControlNetHED.pth"]


def test_softedge_hedsafe_keeps_the_clear_edges_of_the_same_network(folder):
    root, states = folder
    annotators = AnnotatorModels([root])
    safe = run("softedge_hedsafe", annotators, picture(), 64)
    padded, height, width = resized_padded(picture(), 64)
    stepped = (hed_edges(states["hed"], padded).astype(np.float32) * 3.0).astype(np.int32).astype(np.float32) / 2.0
    assert np.array_equal(safe, grey((stepped * 255.0).clip(0, 255).astype(np.uint8)[:height, :width]))
    assert set(np.unique(safe)) <= {0, 127, 255} and len(np.unique(safe)) >= 2
    assert annotators.loaded() == [root / "ControlNetHED.pth"]  # one network for both


@pytest.mark.parametrize("name, key, file", [("lineart_realistic", "realistic", "sk_model.pth"), ("lineart_coarse", "coarse", "lineart/sk_model2.pth")])
def test_lineart_is_the_extensions_inverted_drawing(folder, name, key, file):
    root, states = folder
    annotators = AnnotatorModels([root])
    image = picture((41, 70))
    found = run(name, annotators, image, 72)
    padded, height, width = resized_padded(image, 72)
    assert found.dtype == np.uint8 and found.shape == (height, width, 3) == (123, 72, 3)
    drawing = lineart_drawing(states[key], padded)
    assert np.array_equal(found, grey(255 - (drawing * 255.0).clip(0, 255).astype(np.uint8)[:height, :width]))
    assert found[..., 0].std() > 5 and np.array_equal(run(name, annotators, image, 72), found)
    assert annotators.loaded() == [root / file]


def test_the_last_two_networks_stay_and_a_replaced_file_is_read_again(folder, tmp_path):
    root, states = folder
    annotators = AnnotatorModels([root])
    first = annotators.network("sk_model.pth", lineart.Generator)
    assert annotators.network("sk_model.pth", lineart.Generator) is first
    annotators.network("sk_model2.pth", lineart.Generator)
    annotators.network(hed.WEIGHTS, hed.ControlNetHED)
    assert annotators.loaded() == [root / "lineart" / "sk_model2.pth", root / "ControlNetHED.pth"]
    assert next(first.parameters()).dtype == torch.float32 and not first.training
    own = tmp_path / "annotators"
    own.mkdir()
    torch.save(states["realistic"], own / "sk_model.pth")
    mine = AnnotatorModels([own])
    loaded = mine.network("sk_model.pth", lineart.Generator)
    torch.save(lineart_state(9), own / "sk_model.pth")
    later = os.stat(own / "sk_model.pth").st_mtime_ns + 5_000_000_000
    os.utime(own / "sk_model.pth", ns=(later, later))
    again = mine.network("sk_model.pth", lineart.Generator)
    assert again is not loaded and torch.equal(again.state_dict()["model0.1.weight"], lineart_state(9)["model0.1.weight"])


def test_files_are_found_in_every_annotator_folder_and_as_safetensors(folder, tmp_path):
    root, states = folder
    first, second = tmp_path / "a", tmp_path / "b"
    write_safetensors(second / "annotators" / "sk_model.safetensors", states["realistic"].items())
    controlnets = ControlNets([first, second])  # models/ControlNet and a --controlnet-dir
    assert controlnets.annotators.folders == [first / "annotators", second / "annotators"]
    assert controlnets.annotators.find("sk_model.pth") == second / "annotators" / "sk_model.safetensors"
    assert controlnets.annotators.find("ControlNetHED.pth") is None
    by_pth = run("lineart_realistic", AnnotatorModels([root]), picture(), 64)
    assert np.array_equal(run("lineart_realistic", controlnets.annotators, picture(), 64), by_pth)


def test_a_missing_file_is_named_with_the_folder_before_anything_runs(tmp_path):
    empty = AnnotatorModels([tmp_path / "annotators"])
    for name, file in [("softedge_hed", "ControlNetHED.pth"), ("softedge_hedsafe", "ControlNetHED.pth"), ("lineart_coarse", "sk_model2.pth")]:
        with pytest.raises(PreprocessorError, match=f"ControlNet unit 0: the {name} preprocessor needs its weights, {file}, "
                                                    "in models/ControlNet/annotators; Easel downloads nothing"):
            find_preprocessor(name, "ControlNet unit 0", empty)
        with pytest.raises(PreprocessorError, match=f"the {name} preprocessor needs its weights, {file}"):
            detect(PREPROCESSORS[name], picture(), 64, -1, -1, annotators=empty)
        with pytest.raises(PreprocessorError, match=f"the {name} preprocessor needs its weights, {file}"):
            detect(PREPROCESSORS[name], picture(), 64, -1, -1)  # no annotator folders at all
    controlnets = ControlNets([tmp_path])
    unit = ControlUnit(image=picture(), module="softedge_hed", model="some-controlnet")
    with pytest.raises(PreprocessorError, match="ControlNet unit 0: the softedge_hed preprocessor needs its weights, ControlNetHED.pth"):
        controlnets.check([unit], has_init_image=False)  # refused before the job is queued
    with pytest.raises(PreprocessorError, match="openpose preprocessor needs its weights, body_pose_model.pth"):
        find_preprocessor("openpose", "ControlNet unit 0", empty)  # still not run by Easel


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    annotators = AnnotatorModels([tmp_path / "annotators"])
    (tmp_path / "annotators").mkdir()
    torch.save({"norm": torch.zeros(1, 3, 1, 1), "block1.convs.0.weight": _Payload(str(marker))}, tmp_path / "annotators" / "ControlNetHED.pth")
    preprocessor = find_preprocessor("softedge_hed", "ControlNet unit 0", annotators)  # the file is there
    with pytest.raises(UnsafeCheckpointError, match="The annotator ControlNetHED.pth was refused: it is a pickle that would run code"):
        detect(preprocessor, picture(), 64, -1, -1, annotators=annotators)
    assert not marker.exists() and annotators.loaded() == []


def test_a_file_of_another_network_is_refused_with_a_sentence(folder, tmp_path):
    _, states = folder
    (tmp_path / "annotators").mkdir()
    torch.save(states["realistic"], tmp_path / "annotators" / "ControlNetHED.pth")
    annotators = AnnotatorModels([tmp_path / "annotators"])
    with pytest.raises(ModelLoadError, match="The annotator ControlNetHED.pth is not the network Easel reads under that name: "
                                             "37 weights missing, 24 unexpected, 0 of another shape"):
        run("softedge_hed", annotators, picture(), 64)
