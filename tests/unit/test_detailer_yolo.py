"""YOLO detectors: ultralytics-format pickles read without running them (and malicious ones refused),
Easel's safetensors format, the network's names and outputs, letterbox/NMS as ultralytics does them,
and the shipped demo detector finding shapes."""

from __future__ import annotations

import copy
import os
import pickletools
import sys
import types
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from modules.detailer.detection import Detections, DetectorError
from modules.detailer.yolo import network as yolo_network
from modules.detailer.yolo.detector import Letterbox, YoloCache, YoloDetector, box_iou, boxes_to_picture, build_network, letterbox, nms, select
from modules.detailer.yolo.files import DetectorFileError, load_yolo_file, save_safetensors
from modules.detailer.yolo.network import YoloNetwork

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "adetailer" / "easel-demo-shapes.safetensors"


def architecture(nc: int = 2, segment: bool = False) -> dict:
    """yolov8.yaml / yolov8-seg.yaml as ultralytics stores them (strings for nc and None), tiny scale."""
    last = [[15, 18, 21], 1, "Segment", ["nc", 32, 256]] if segment else [[15, 18, 21], 1, "Detect", ["nc"]]
    return {
        "nc": nc, "scales": {"t": [0.33, 0.0625, 1024], "n": [0.33, 0.25, 1024]}, "scale": "t", "ch": 3, "yaml_file": "yolov8n.yaml",
        "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C2f", [128, True]], [-1, 1, "Conv", [256, 3, 2]],
                     [-1, 6, "C2f", [256, True]], [-1, 1, "Conv", [512, 3, 2]], [-1, 6, "C2f", [512, True]], [-1, 1, "Conv", [1024, 3, 2]],
                     [-1, 3, "C2f", [1024, True]], [-1, 1, "SPPF", [1024, 5]]],
        "head": [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 6], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
                 [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 4], 1, "Concat", [1]], [-1, 3, "C2f", [256]],
                 [-1, 1, "Conv", [256, 3, 2]], [[-1, 12], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
                 [-1, 1, "Conv", [512, 3, 2]], [[-1, 9], 1, "Concat", [1]], [-1, 3, "C2f", [1024]], last],
    }


def random_network(arch: dict, seed: int = 0) -> YoloNetwork:
    torch.manual_seed(seed)
    network = YoloNetwork(arch)
    with torch.no_grad():  # batch-norm statistics too, so a wrong buffer mapping would show
        for name, tensor in network.state_dict().items():
            if name.endswith(("running_mean", "bn.bias")):
                tensor.normal_(0, 0.1)
            elif name.endswith(("running_var", "bn.weight")):
                tensor.uniform_(0.5, 1.5)
    return network.eval()


# Where ultralytics defines each layer class (ultralytics/nn/modules/{conv,block,head}.py, nn/tasks.py).
ULTRALYTICS_HOMES = {
    "Conv": "ultralytics.nn.modules.conv", "Concat": "ultralytics.nn.modules.conv",
    "C2f": "ultralytics.nn.modules.block", "Bottleneck": "ultralytics.nn.modules.block", "SPPF": "ultralytics.nn.modules.block",
    "DFL": "ultralytics.nn.modules.block", "Proto": "ultralytics.nn.modules.block",
    "Detect": "ultralytics.nn.modules.head", "Segment": "ultralytics.nn.modules.head",
}


def stand_in_modules(extra: dict[str, type] | None = None) -> tuple[dict[str, types.ModuleType], dict[type, type]]:
    """Throwaway `ultralytics.*` modules holding stand-in classes (subclasses of ours with ultralytics'
    names), so pickle writes the same GLOBAL references a real file has."""
    names = ["ultralytics", "ultralytics.nn", "ultralytics.nn.modules", "ultralytics.nn.tasks", "ultralytics.utils", *ULTRALYTICS_HOMES.values()]
    modules = {name: types.ModuleType(name) for name in names}
    swaps: dict[type, type] = {}
    for name, home in ULTRALYTICS_HOMES.items():
        ours = getattr(yolo_network, name)
        stand_in = type(name, (ours,), {"__module__": home, "__qualname__": name})
        setattr(modules[home], name, stand_in)
        swaps[ours] = stand_in
    for qualified, cls in (extra or {}).items():
        home, _, name = qualified.rpartition(".")
        cls.__module__, cls.__qualname__ = home, name
        setattr(modules[home], name, cls)
    return modules, swaps


def write_ultralytics_file(path: Path, network: YoloNetwork, arch: dict, names: dict[int, str], model_class: str = "DetectionModel") -> Path:
    """A checkpoint as ultralytics' trainer saves it: a pickled dict whose `ema` is the whole model object, fp16."""
    model_type = type(model_class, (nn.Module,), {})
    namespace_type = type("IterableSimpleNamespace", (types.SimpleNamespace,), {})
    modules, swaps = stand_in_modules({f"ultralytics.nn.tasks.{model_class}": model_type, "ultralytics.utils.IterableSimpleNamespace": namespace_type})
    model = model_type()
    model.model = nn.Sequential(*copy.deepcopy(network).model)
    for module in model.modules():
        if type(module) in swaps:
            module.__class__ = swaps[type(module)]
    model.yaml, model.names, model.stride, model.task = arch, names, torch.tensor([8.0, 16.0, 32.0]), "detect"
    model.args = namespace_type(imgsz=640, task="detect", model="yolov8n.yaml")
    checkpoint = {
        "date": "2024-01-01T00:00:00", "version": "8.0.196", "license": "AGPL-3.0", "model": None, "ema": model.half(),
        "updates": 1000, "optimizer": None, "train_args": {"imgsz": 640, "model": "yolov8n.yaml", "data": "face.yaml"},
        "train_metrics": {"metrics/mAP50(B)": np.float64(0.9)}, "epoch": -1, "best_fitness": None,
    }
    with mock.patch.dict(sys.modules, modules):
        torch.save(checkpoint, path)
    return path


def pickle_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return {str(arg).replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


@pytest.mark.parametrize("segment", [False, True], ids=["detect", "segment"])
def test_ultralytics_pickle_and_safetensors_load_strictly_and_agree(tmp_path, segment):
    arch = architecture(2, segment)
    network = random_network(arch)
    pt = write_ultralytics_file(tmp_path / ("person_yolov8n-seg.pt" if segment else "face_yolov8n.pt"), network, arch, {0: "face", 1: "hand"},
                                "SegmentationModel" if segment else "DetectionModel")
    assert {"ultralytics.nn.tasks." + ("SegmentationModel" if segment else "DetectionModel"), "ultralytics.nn.modules.conv.Conv",
            "ultralytics.nn.modules.block.C2f", "ultralytics.nn.modules.head." + ("Segment" if segment else "Detect"),
            "torch._utils._rebuild_tensor_v2", "torch.HalfStorage", "collections.OrderedDict"} <= pickle_globals(pt)
    assert "ultralytics" not in sys.modules

    read = load_yolo_file(pt)
    assert read.names == {0: "face", 1: "hand"} and read.imgsz == 640 and read.stride == [8.0, 16.0, 32.0]
    assert read.task == ("segment" if segment else "detect") and read.architecture == arch
    assert set(read.state_dict) == set(network.state_dict())
    assert "model.22.dfl.conv.weight" in read.state_dict and "model.22.cv2.0.0.conv.weight" in read.state_dict
    assert read.state_dict["model.0.conv.weight"].dtype == torch.float16

    st = tmp_path / "converted.safetensors"
    save_safetensors(st, read)
    from_pt, from_st = build_network(read), build_network(load_yolo_file(st))  # strict=True inside
    reference = copy.deepcopy(network).half().float()  # what the fp16 file holds
    x = torch.rand(1, 3, 96, 128)
    with torch.inference_mode():
        a, b, expected = from_pt.network(x), from_st.network(x), reference(x)
    for name in ("boxes", "scores", "coefficients", "protos"):
        first, second, wanted = getattr(a, name), getattr(b, name), getattr(expected, name)
        if wanted is None:
            assert first is None and second is None
            continue
        assert torch.equal(first, second) and torch.allclose(first, wanted, atol=1e-5)
    assert a.boxes.shape == (1, 12 * 16 + 6 * 8 + 3 * 4, 4) and a.scores.shape[-1] == 2
    if segment:
        assert a.coefficients.shape == (1, 252, 32) and a.protos.shape == (1, 32, 24, 32)
    assert from_st.names == {0: "face", 1: "hand"} and from_st.imgsz == 640


def test_network_matches_ultralytics_parameter_counts():
    """The published sizes: yolov8n 3,157,200 parameters (80 classes), yolov8n-seg 3,409,968, yolov8s 11,166,560."""
    def count(arch: dict) -> int:
        return sum(p.numel() for p in YoloNetwork(arch).parameters())

    n, n_seg, s = architecture(80), architecture(80, True), architecture(80)
    n["scale"] = n_seg["scale"] = "n"
    s["scales"], s["scale"] = {"s": [0.33, 0.50, 1024]}, "s"
    assert (count(n), count(n_seg), count(s)) == (3_157_200, 3_409_968, 11_166_560)


def test_segmentation_masks_and_detection_boxes_come_at_picture_size(tmp_path):
    for segment in (False, True):
        arch = architecture(1, segment)
        path = write_ultralytics_file(tmp_path / f"m{int(segment)}.pt", random_network(arch, 1), arch, {0: "person"},
                                      "SegmentationModel" if segment else "DetectionModel")
        detections = YoloDetector(path, imgsz=128).detect(Image.new("RGB", (90, 60), (200, 180, 160)), 0.01)
        assert len(detections) > 0 and detections.masks.shape == (len(detections), 60, 90) and detections.masks.dtype == bool
        assert detections.labels == ["person"] * len(detections)
        assert (detections.boxes[:, [0, 2]] <= 90).all() and (detections.boxes[:, [1, 3]] <= 60).all()
        inside = Detections.box_masks(detections.boxes, 90, 60)
        assert not (detections.masks & ~inside).any()  # every mask lies in its box
        assert list(detections.confidences) == sorted(detections.confidences, reverse=True)


def test_yolo_world_and_unknown_layers_are_refused_by_name(tmp_path):
    world = write_ultralytics_file(tmp_path / "yolov8x-worldv2.pt", random_network(architecture(1)), architecture(1), {0: "x"}, "WorldModel")
    with pytest.raises(DetectorFileError, match="yolov8x-worldv2.pt is a YOLO-World model"):
        load_yolo_file(world)
    arch = architecture(1)
    arch["backbone"][2][2] = "C3k2"
    with pytest.raises(DetectorError, match="C3k2 layer"):
        YoloNetwork(arch)


class _Runs:
    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


def test_malicious_pickles_are_refused_naming_the_file_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "face_yolov8n.pt"
    torch.save({"model": _Runs(os.system, f"touch {marker}")}, evil)
    with pytest.raises(DetectorFileError, match=r"face_yolov8n\.pt was refused.*system") as refused:
        load_yolo_file(evil)
    assert "Nothing from it was executed" in str(refused.value)
    assert not marker.exists()

    evil_eval = tmp_path / "hand_yolov8n.pt"
    torch.save({"ema": _Runs(eval, f"open({str(marker)!r}, 'w')")}, evil_eval)
    with pytest.raises(DetectorFileError, match=r"hand_yolov8n\.pt was refused.*builtins\.eval"):
        YoloDetector(evil_eval).detect(Image.new("RGB", (32, 32)), 0.3)
    assert not marker.exists()


def test_other_files_are_refused_with_a_sentence(tmp_path):
    plain = tmp_path / "plain.safetensors"
    from modules.checkpoints.tensor_files import write_safetensors

    write_safetensors(plain, [("model.0.conv.weight", torch.zeros(1))])
    with pytest.raises(DetectorFileError, match="without Easel's YOLO metadata"):
        load_yolo_file(plain)
    (tmp_path / "old.pt").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(DetectorFileError, match="old.pt: it is not a PyTorch"):
        load_yolo_file(tmp_path / "old.pt")
    with pytest.raises(DetectorFileError, match="missing.pt is missing"):
        YoloCache().get(tmp_path / "missing.pt")


def test_cache_keeps_two_networks_and_reloads_a_changed_file(tmp_path):
    arch = architecture(1)
    paths = [write_ultralytics_file(tmp_path / f"{i}.pt", random_network(arch, i), arch, {0: "face"}) for i in range(3)]
    cache = YoloCache(2)
    first = cache.get(paths[0])
    assert cache.get(paths[0]) is first
    cache.get(paths[1])
    cache.get(paths[2])
    assert cache.get(paths[0]) is not first  # evicted, least recently used
    again = cache.get(paths[0])
    os.utime(paths[0], ns=(1, 1))
    assert cache.get(paths[0]) is not again


def test_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU(0, 1) = 81 / (100 + 100 - 81) = 0.6807; box 3 is box 0 again (IoU 1)
    assert torch.isclose(box_iou(boxes[:1], boxes[1:2])[0, 0], torch.tensor(81 / 119))
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    # per class: the same two boxes of different classes both stay; below the threshold, none
    class_scores = torch.tensor([[0.9, 0.0], [0.0, 0.8], [0.1, 0.2], [0.6, 0.0]])
    kept, confidences, classes = select(boxes, class_scores, 0.3, iou_threshold=0.5)
    assert kept.tolist() == [0, 1] and classes.tolist() == [0, 1] and torch.allclose(confidences, torch.tensor([0.9, 0.8]))
    kept, _, _ = select(boxes, class_scores, 0.3, class_ids=[1])
    assert kept.tolist() == [1]


def test_letterbox_and_boxes_back_by_hand():
    picture = np.full((200, 300, 3), 50, np.uint8)  # 300 wide, 200 high
    padded, box = letterbox(picture, 640, 32)
    # scale = min(640/200, 640/300) = 2.1333; 300x200 -> 640 x round(426.67) = 427; the height pads
    # (640 - 427) % 32 = 21 -> 10.5 a side: top round(10.4) = 10, bottom round(10.6) = 11 -> 448 high
    assert box == Letterbox(640 / 300, 0, 10, 640, 427, 640, 448, 300, 200)
    assert padded.shape == (448, 640, 3)
    assert (padded[:10] == 114).all() and (padded[437:] == 114).all() and (padded[10:437] == 50).all()
    input_boxes = torch.tensor([[64.0, 10 + 50 * 640 / 300, 320.0, 10 + 150 * 640 / 300], [-20.0, 0.0, 700.0, 500.0]])
    back = boxes_to_picture(input_boxes, box)
    assert torch.allclose(back, torch.tensor([[30.0, 50.0, 150.0, 150.0], [0.0, 0.0, 300.0, 200.0]]), atol=1e-4)
    _, square = letterbox(np.zeros((64, 64, 3), np.uint8), 128, 32)
    assert (square.scale, square.left, square.top, square.input_width, square.input_height) == (2.0, 0, 0, 128, 128)


def circle_picture(centre: tuple[int, int], radius: int = 36, size: tuple[int, int] = (256, 256)) -> tuple[Image.Image, np.ndarray]:
    image = Image.new("RGB", size, (255, 255, 255))
    cx, cy = centre
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(220, 30, 30))
    return image, np.array([[cx - radius, cy - radius, cx + radius, cy + radius]], np.float32)


@pytest.mark.parametrize("centre", [(70, 70), (128, 128), (190, 160)], ids=["top-left", "centre", "bottom-right"])
def test_demo_detector_finds_a_red_circle(centre):
    image, drawn = circle_picture(centre)
    detections = YoloDetector(DEMO).detect(image, 0.3)
    assert len(detections) >= 1 and detections.labels[0] == "shape"
    assert float(box_iou(torch.from_numpy(detections.boxes[:1]), torch.from_numpy(drawn))[0, 0]) > 0.5
    assert detections.masks.shape == (len(detections), 256, 256) and detections.masks[0, centre[1], centre[0]]


def test_demo_detector_finds_nothing_on_a_blank_picture():
    cache = YoloCache()
    for size in ((256, 256), (512, 320)):
        assert len(YoloDetector(DEMO, cache).detect(Image.new("RGB", size, (255, 255, 255)), 0.3)) == 0
