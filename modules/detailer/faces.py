"""The face detector that ships with Easel: MTCNN (Zhang et al. 2016, "Joint Face Detection and
Alignment using Multi-task Cascaded Convolutional Networks"), three small networks in a cascade.

The weights are facenet-pytorch 2.6.0's (MIT), converted once to
models/adetailer/easel-face-mtcnn.safetensors by tools/convert_mtcnn.py; see the model card beside
it. This is our own implementation of the same computation, checked against facenet-pytorch on a
real photograph (the same boxes to float rounding):

1. proposal (PNet): a fully convolutional net over an image pyramid (smallest face 20 px, each level
   0.709 of the last) scores every 12 x 12 window (stride 2 on each level); windows scoring at
   least 0.6 become boxes, thinned by NMS per level (IoU 0.5) and over all levels (IoU 0.7), moved
   by the regressed offsets and made square.
2. refinement (RNet): each box, cropped and resized to 24 x 24, is scored again (kept above 0.7),
   thinned (IoU 0.7), moved and made square.
3. output (ONet): the same at 48 x 48 (kept above 0.7), moved, then thinned by overlap over the
   smaller box (0.7), which drops a box lying mostly inside a better one.

Pixels are fed as (value - 127.5) / 128, in RGB order, NCHW. The dense layers read their input
flattened in (width, height, channel) order, the layout of the Caffe/TensorFlow originals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from modules.checkpoints.tensor_files import read_weights_file
from modules.detailer.detection import Detections, DetectorError

MIN_FACE = 20
PYRAMID_STEP = 0.709
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
LABEL = "face"


class PNet(nn.Module):
    """Proposal net: 12 x 12 windows -> (box offsets (N, 4, h, w), face/background probabilities (N, 2, h, w))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # background, face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # x1, y1, x2, y2 offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _flatten_width_first(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W * H * C): the order the converted dense weights expect."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refinement net: 24 x 24 crops -> (box offsets (N, 4), probabilities (N, 2))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_width_first(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: 48 x 48 crops -> (box offsets (N, 4), probabilities (N, 2)); its five landmarks
    (dense6_3) are loaded with the rest but not computed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # landmarks: five x then five y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_width_first(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)


class Mtcnn(nn.Module):
    """The three nets; state-dict keys are facenet-pytorch's behind `pnet.`, `rnet.`, `onet.`."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()


def load_mtcnn(path: Path) -> Mtcnn:
    """The nets with the weights of `path` (.safetensors, or a .pt/.pth read by the restricted
    unpickler; a file that would run code is refused by `read_weights_file`)."""
    path = Path(path)
    weights = read_weights_file(path, "face detector")
    model = Mtcnn()
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise DetectorError(f"The face detector {path.name} holds no named weights: it is not an MTCNN face model.")
    missing = sorted(set(expected) - set(weights))
    wrong = [key for key in expected if key in weights and tuple(weights[key].shape) != expected[key]]
    if missing or wrong or set(weights) - set(expected):
        example = (missing or wrong or sorted(set(weights) - set(expected)))[0]
        raise DetectorError(
            f"The face detector {path.name} does not fit MTCNN (first mismatch: {example}). "
            "Use models/adetailer/easel-face-mtcnn.safetensors or a file written by tools/convert_mtcnn.py."
        )
    model.load_state_dict({key: value.float() for key, value in weights.items()})
    return model.eval().requires_grad_(False)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_smaller: bool = False, inclusive: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: the indices kept, best score first. A box is dropped when its
    overlap with a kept better one is above `threshold`: intersection over union, or over the smaller
    box's area (`by_smaller`). `inclusive` counts a box's edges as pixels (width x2 - x1 + 1)."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    one = np.float32(1 if inclusive else 0)
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(boxes), bool)
    keep = []
    for position, index in enumerate(order):
        if not alive[index]:
            continue
        keep.append(index)
        rest = order[position + 1:]
        rest = rest[alive[rest]]
        if len(rest) == 0:
            break
        width = np.maximum(np.minimum(x2[index], x2[rest]) - np.maximum(x1[index], x1[rest]) + one, np.float32(0))
        height = np.maximum(np.minimum(y2[index], y2[rest]) - np.maximum(y1[index], y1[rest]) + one, np.float32(0))
        overlap = width * height
        base = np.minimum(areas[index], areas[rest]) if by_smaller else areas[index] + areas[rest] - overlap
        alive[rest[overlap / base > threshold]] = False
    return np.asarray(keep, np.int64)


def _kept(boxes: torch.Tensor, threshold: float, by_smaller: bool = False, inclusive: bool = False) -> torch.Tensor:
    """`boxes` (N, 5+: x1, y1, x2, y2, score, ...) after NMS, best first."""
    array = boxes.numpy()
    return boxes[torch.from_numpy(nms(array[:, :4], array[:, 4], threshold, by_smaller, inclusive))]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box grown to a square on its longer side, about the same centre."""
    out = boxes.clone()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _moved(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Boxes moved by regressed offsets, each a fraction of the box's width or height."""
    out = boxes.clone()
    one = 1.0 if inclusive else 0.0
    width = boxes[:, 2] - boxes[:, 0] + one
    height = boxes[:, 3] - boxes[:, 1] + one
    for column, size in ((0, width), (1, height), (2, width), (3, height)):
        out[:, column] = boxes[:, column] + offsets[:, column] * size
    return out


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def pyramid_scales(width: int, height: int, min_face: int = MIN_FACE, step: float = PYRAMID_STEP) -> list[float]:
    """The scales at which a 12 px window covers faces from `min_face` px up to the picture's short side."""
    scale = 12.0 / min_face
    side = min(width, height) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= step
        side *= step
    return scales


def _proposals(pnet: PNet, picture: torch.Tensor, scales: list[float], threshold: float) -> torch.Tensor:
    """Stage 1: (N, 5) square boxes x1, y1, x2, y2, score (on the CPU)."""
    height, width = picture.shape[2:]
    found = [torch.zeros((0, 9))]
    for scale in scales:
        level = F.interpolate(picture, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
        offsets, probabilities = (output[0].cpu() for output in pnet(_normalise(level)))
        face = probabilities[1]
        rows, columns = torch.nonzero(face >= threshold, as_tuple=True)
        cells = torch.stack([columns, rows], dim=1).float()  # x, y of each window on this level
        corners = torch.cat([((2 * cells + 1) / scale).floor(), ((2 * cells + 12) / scale).floor()], dim=1)
        found.append(_kept(torch.cat([corners, face[rows, columns].unsqueeze(1), offsets[:, rows, columns].T], dim=1), 0.5))
    boxes = _kept(torch.cat(found), 0.7)
    return _square(torch.cat([_moved(boxes[:, :4], boxes[:, 5:9], inclusive=False), boxes[:, 4:5]], dim=1))


def _crops(picture: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes' pixels (cut at the picture's edges) resized to size x size, and which boxes had any."""
    height, width = picture.shape[2:]
    crops, present = [], []
    for x1, y1, x2, y2 in boxes[:, :4].trunc().int().tolist():
        left, top, right, bottom = max(x1, 1) - 1, max(y1, 1) - 1, min(x2, width), min(y2, height)
        present.append(right > left and bottom > top)
        if present[-1]:
            crops.append(F.interpolate(picture[:, :, top:bottom, left:right], size=(size, size), mode="area"))
    mask = torch.tensor(present, dtype=torch.bool)
    return (_normalise(torch.cat(crops)) if crops else picture.new_zeros((0, 3, size, size))), mask


def _rescored(net: nn.Module, picture: torch.Tensor, boxes: torch.Tensor, size: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Stages 2 and 3: the boxes `net` scores above `threshold`, with their new scores (N, 5), and their offsets (N, 4)."""
    crops, present = _crops(picture, boxes, size)
    boxes = boxes[present]
    if not len(boxes):
        return torch.zeros((0, 5)), torch.zeros((0, 4))
    offsets, probabilities = (output.cpu() for output in net(crops))
    passed = probabilities[:, 1] > threshold
    return torch.cat([boxes[passed, :4], probabilities[passed, 1:2]], dim=1), offsets[passed]


def detect_faces(model: Mtcnn, picture: Image.Image, min_face: int = MIN_FACE, thresholds: tuple[float, float, float] = STAGE_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes (N, 4: x1, y1, x2, y2 pixels, not clipped to the picture) and scores (N,), best first.
    The nets run where `model` is; the boxes are worked on the CPU in float32."""
    pixels = np.array(picture.convert("RGB"), dtype=np.uint8)
    device = next(model.parameters()).device
    with torch.inference_mode():
        image = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=torch.float32)
        boxes = _proposals(model.pnet, image, pyramid_scales(pixels.shape[1], pixels.shape[0], min_face), thresholds[0])
        boxes, offsets = _rescored(model.rnet, image, boxes, 24, thresholds[1])
        order = torch.from_numpy(nms(boxes[:, :4].numpy(), boxes[:, 4].numpy(), 0.7))
        boxes = _square(torch.cat([_moved(boxes[order, :4], offsets[order], inclusive=True), boxes[order, 4:5]], dim=1))
        boxes, offsets = _rescored(model.onet, image, boxes, 48, thresholds[2])
        boxes = _kept(torch.cat([_moved(boxes[:, :4], offsets, inclusive=True), boxes[:, 4:5]], dim=1), 0.7, by_smaller=True, inclusive=True)
    result = boxes.numpy()
    return result[:, :4].copy(), result[:, 4].copy()


class FaceDetector:
    """`Detector` over MTCNN: faces as boxes (clipped to the picture) with filled-box masks.

    `confidence` is applied to the final (ONet) scores, which are above 0.7 already by the cascade's
    own thresholds; `classes` is ignored (one class, "face")."""

    name = "mtcnn_face"

    def __init__(self, path: Path, device: torch.device | str = "cpu", min_face: int = MIN_FACE):
        self.path = Path(path)
        self.min_face = min_face
        self.model = load_mtcnn(self.path).to(device)

    def detect(self, image: Image.Image, confidence: float, classes: list[str] | None = None) -> Detections:
        width, height = image.size
        boxes, scores = detect_faces(self.model, image, self.min_face)
        chosen = scores >= confidence
        if not chosen.any():
            return Detections.empty(width, height)
        boxes = boxes[chosen].astype(np.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return Detections(boxes, scores[chosen].astype(np.float32), Detections.box_masks(boxes, width, height), [LABEL] * int(chosen.sum()))
