"""`YoloDetector`: a YOLOv8 file (ultralytics `.pt` or Easel's `.safetensors`) as a `Detector`.

Prediction as ultralytics' predict does it for a picture, which is what ADetailer calls
(`model(image, conf=confidence)`):
- letterbox to the file's input size (640 unless it was trained at another), keeping the aspect
  ratio, padded with grey 114 only up to the next multiple of the largest stride (bilinear resize as
  OpenCV's INTER_LINEAR, the padding split evenly, the odd pixel at the bottom/right);
- RGB / 255, float32 on the CPU, no gradients;
- boxes decoded from the side distributions (DFL) around each cell centre; a box's confidence is its
  best class's probability, kept when above the threshold (and its class asked for); NMS per class at
  IoU 0.7, at most 300 boxes, highest confidence first;
- boxes mapped back to the picture (minus the padding, divided by the scale, clipped);
- masks: a segmentation model's own (its prototypes weighted by the box's coefficients, cropped to the
  box, upsampled to the input, the padding removed, resized to the picture, logit > 0, i.e.
  probability > 0.5); a detection model's are the filled boxes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.detailer.detection import Detections
from modules.detailer.yolo.files import DetectorFileError, YoloFile, load_yolo_file
from modules.detailer.yolo.network import YoloNetwork, interpolate_masks

PAD_VALUE = 114
IOU_THRESHOLD = 0.7  # ultralytics predict's default
MAX_DETECTIONS = 300
MAX_NMS_BOXES = 30000  # candidates NMS considers at most (highest confidence first)
CLASS_OFFSET = 7680.0  # moves each class's boxes apart so one NMS pass never lets classes suppress each other


@dataclass(frozen=True)
class Letterbox:
    """Where the picture (source_width x source_height) went in the network's input: resized by `scale` to
    width x height, then padded by left/top (and the rest) to input_width x input_height."""

    scale: float
    left: int
    top: int
    width: int
    height: int
    input_width: int
    input_height: int
    source_width: int
    source_height: int

    @property
    def gain(self) -> float:
        """The scale ultralytics divides by when it maps boxes back (min of the input/picture ratios)."""
        return min(self.input_height / self.source_height, self.input_width / self.source_width)


def letterbox(picture: np.ndarray, imgsz: int, stride: int = 32) -> tuple[np.ndarray, Letterbox]:
    """The picture (H, W, 3 uint8) fitted into imgsz x imgsz, padded to a multiple of `stride` only."""
    import cv2

    height, width = picture.shape[:2]
    scale = min(imgsz / height, imgsz / width)
    new_width, new_height = int(round(width * scale)), int(round(height * scale))
    pad_width, pad_height = (imgsz - new_width) % stride / 2, (imgsz - new_height) % stride / 2
    if (new_width, new_height) != (width, height):
        picture = cv2.resize(picture, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(pad_height - 0.1)), int(round(pad_height + 0.1))
    left, right = int(round(pad_width - 0.1)), int(round(pad_width + 0.1))
    padded = np.pad(picture, ((top, bottom), (left, right), (0, 0)), constant_values=PAD_VALUE)
    box = Letterbox(scale, left, top, new_width, new_height, padded.shape[1], padded.shape[0], width, height)
    return np.ascontiguousarray(padded), box


def boxes_to_picture(boxes: torch.Tensor, box: Letterbox) -> torch.Tensor:
    """Input-pixel boxes (N, 4) -> picture pixels: minus the padding, divided by the gain, clipped."""
    out = boxes.clone()
    out[:, 0::2] = ((out[:, 0::2] - box.left) / box.gain).clamp(0, box.source_width)
    out[:, 1::2] = ((out[:, 1::2] - box.top) / box.gain).clamp(0, box.source_height)
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4): (N, M)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = IOU_THRESHOLD) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first; a box is dropped
    when its IoU with a kept, higher-scoring box is above the threshold."""
    order = torch.argsort(scores, descending=True, stable=True)
    kept: list[int] = []
    while order.numel():
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        if not rest.numel():
            break
        overlaps = box_iou(boxes[best:best + 1], boxes[rest])[0]
        order = rest[overlaps <= iou_threshold]
    return torch.tensor(kept, dtype=torch.long)


def select(boxes: torch.Tensor, scores: torch.Tensor, confidence: float, class_ids: list[int] | None = None,
           iou_threshold: float = IOU_THRESHOLD, max_det: int = MAX_DETECTIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One picture's boxes (A, 4) and class probabilities (A, nc) -> the kept anchors' indices, confidences
    and classes: best class above `confidence` (among `class_ids`), NMS per class, at most `max_det`."""
    best, classes = scores.max(1)
    candidates = torch.nonzero(best > confidence).flatten()
    if class_ids is not None:
        candidates = candidates[torch.isin(classes[candidates], torch.tensor(class_ids, dtype=classes.dtype))]
    if candidates.numel() > MAX_NMS_BOXES:
        candidates = candidates[torch.argsort(best[candidates], descending=True, stable=True)[:MAX_NMS_BOXES]]
    shifted = boxes[candidates] + classes[candidates, None].to(boxes.dtype) * CLASS_OFFSET
    kept = candidates[nms(shifted, best[candidates], iou_threshold)[:max_det]]
    return kept, best[kept], classes[kept]


@dataclass
class LoadedYolo:
    network: YoloNetwork
    names: dict[int, str]
    stride: int
    imgsz: int


def build_network(file: YoloFile) -> LoadedYolo:
    """The network of a file, its weights loaded with strict key matching, in float32 eval mode."""
    network = YoloNetwork(file.architecture)
    try:
        network.load_state_dict(file.state_dict, strict=True)
    except RuntimeError as error:
        expected, found = set(network.state_dict()), set(file.state_dict)
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else str(error).splitlines()[-1].strip()
        raise DetectorFileError(f"The weights of the detector {file.path.name} do not fit its own architecture ({detail}).") from error
    network.float().eval()
    stride = max(int(max(file.stride, default=32)), 32)
    return LoadedYolo(network, file.names, stride, file.imgsz)


class YoloCache:
    """The most recently used networks (by path, modification time and size), `capacity` of them."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, int], LoadedYolo] = OrderedDict()

    def get(self, path: Path) -> LoadedYolo:
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as error:
            raise DetectorFileError(f"The detector file {path.name} is missing: it was moved or deleted.") from error
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loaded = build_network(load_yolo_file(path))
            self._entries[key] = loaded
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return loaded


class YoloDetector:
    """A YOLOv8 detection or segmentation file as a `Detector`. Pass the service's `YoloCache` so
    networks are shared between detectors; without one it keeps its own."""

    def __init__(self, path: Path, cache: YoloCache | None = None, imgsz: int | None = None,
                 iou_threshold: float = IOU_THRESHOLD, max_det: int = MAX_DETECTIONS):
        self.path = Path(path)
        self.name = self.path.name
        self.cache = cache or YoloCache(1)
        self.imgsz, self.iou_threshold, self.max_det = imgsz, iou_threshold, max_det

    def class_names(self) -> list[str]:
        loaded = self.cache.get(self.path)
        return [loaded.names[i] for i in sorted(loaded.names)]

    def detect(self, image: Image.Image, confidence: float, classes: list[str] | None = None) -> Detections:
        """Regions of `image` above `confidence`. `classes`: the class names to keep, where the model has
        them; names it lacks are ignored, and if it has none of them every class is kept (as ADetailer
        ignores its classes option for all but YOLO-World models)."""
        loaded = self.cache.get(self.path)
        picture = np.asarray(image.convert("RGB"))
        height, width = picture.shape[:2]
        wanted = [i for i, name in loaded.names.items() if classes and name in classes] or None
        padded, box = letterbox(picture, self.imgsz or loaded.imgsz, loaded.stride)
        x = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            output = loaded.network(x)
            kept, scores, labels = select(output.boxes[0], output.scores[0], confidence, wanted, self.iou_threshold, self.max_det)
            if not kept.numel():
                return Detections.empty(width, height)
            input_boxes = output.boxes[0][kept]
            boxes = boxes_to_picture(input_boxes, box)
            if output.coefficients is not None and output.protos is not None:
                masks = segment_masks(output.protos[0], output.coefficients[0][kept], input_boxes, boxes, box)
            else:
                masks = Detections.box_masks(boxes.numpy(), width, height)
        names = [loaded.names.get(int(c), str(int(c))) for c in labels]
        return Detections(boxes.numpy().astype(np.float32), scores.numpy().astype(np.float32), masks, names)


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero each mask (N, H, W) outside its box (N, 4; pixel x1 y1 x2 y2 of that grid)."""
    height, width = masks.shape[-2:]
    xs = torch.arange(width, dtype=boxes.dtype)[None, None, :]
    ys = torch.arange(height, dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    return masks * ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2))


def segment_masks(protos: torch.Tensor, coefficients: torch.Tensor, input_boxes: torch.Tensor,
                  picture_boxes: torch.Tensor, box: Letterbox) -> np.ndarray:
    """A segmentation model's masks (N, H, W bool) at the picture's size (see the module docstring)."""
    count, proto_height, proto_width = protos.shape
    logits = (coefficients @ protos.reshape(count, -1)).reshape(-1, proto_height, proto_width)
    ratio = torch.tensor([proto_width / box.input_width, proto_height / box.input_height] * 2)
    logits = crop_to_boxes(logits, input_boxes * ratio)
    logits = interpolate_masks(logits, box.input_height, box.input_width)
    logits = logits[:, box.top:box.top + box.height, box.left:box.left + box.width]
    logits = interpolate_masks(logits, box.source_height, box.source_width)
    return (crop_to_boxes(logits, picture_boxes) > 0).numpy()
