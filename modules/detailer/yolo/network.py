"""YOLOv8 detection and segmentation networks, built from the architecture dict a YOLO file stores.

Written for Easel from the published architecture (the `yolov8.yaml` / `yolov8-seg.yaml` layer
tables and the layer definitions of the ultralytics package); no ultralytics code is used. The
parameter names are ultralytics' own (`model.0.conv.weight`, `model.22.cv2.0.0.conv.weight`,
`model.22.dfl.conv.weight`, `model.22.proto.cv1.conv.weight`...), so a real file's tensors load with
strict key matching.

The architecture dict: `nc` (classes), `backbone` and `head` (rows of `[from, repeats, layer, args]`),
and either `scales` (`{"n": [depth, width, max_channels], ...}`, the one named by `scale` or else the
first) or `depth_multiple` / `width_multiple` (older files). Layers built: Conv, C2f, SPPF,
nn.Upsample, Concat, Detect and Segment (the layers of YOLOv8); any other is refused by name.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modules.detailer.detection import DetectorError

BN_EPS = 1e-3  # ultralytics sets every BatchNorm's eps to 0.001 when it builds a model
REG_MAX = 16  # bins of the distance distribution per box side (DFL)
SUPPORTED = ("Conv", "C2f", "SPPF", "nn.Upsample", "Concat", "Detect", "Segment")


class DetectorArchitectureError(DetectorError):
    """An architecture dict this module cannot build (another YOLO generation, a missing key)."""


class Conv(nn.Module):
    """Convolution without bias, batch norm, SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 Convs, with a residual when asked and the widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3)
        self.cv2 = Conv(c2, c2, 3, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """A 1x1 Conv split in two halves; n Bottlenecks chained on the second half; every stage concatenated."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split((self.c, self.c), 1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained max-pools of one halved map, all concatenated."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1)
        self.cv2 = Conv(hidden * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.cv1(x)]
        for _ in range(3):
            parts.append(self.m(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class Concat(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.d = dim

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)


class DFL(nn.Module):
    """The expected value of each side's distance distribution (a fixed 1x1 conv of weights 0..reg_max-1)."""

    def __init__(self, bins: int = REG_MAX):
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float32).view(1, bins, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, anchors = x.shape
        probabilities = x.view(batch, 4, self.bins, anchors).transpose(2, 1).softmax(1)
        return self.conv(probabilities).view(batch, 4, anchors)


@dataclass
class RawHead:
    """The head's outputs before decoding (what training needs): box side distributions (B, 4*bins, A),
    class logits (B, nc, A), anchor centres (A, 2) in grid units and each anchor's stride (A, 1)."""

    box: torch.Tensor
    cls: torch.Tensor
    anchors: torch.Tensor
    strides: torch.Tensor


@dataclass
class YoloOutput:
    """Decoded predictions: boxes (B, A, 4) x1 y1 x2 y2 in input pixels, class probabilities (B, A, nc);
    a segmentation model's mask coefficients (B, A, nm) and prototypes (B, nm, H/4, W/4)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    coefficients: torch.Tensor | None = None
    protos: torch.Tensor | None = None


def make_anchors(feats: list[torch.Tensor], input_height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x + 0.5, y + 0.5), row by row, level after level, and each level's stride."""
    points, strides = [], []
    for feat in feats:
        height, width = feat.shape[-2:]
        stride = input_height / height
        ys = torch.arange(height, dtype=torch.float32) + 0.5
        xs = torch.arange(width, dtype=torch.float32) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
        strides.append(torch.full((height * width, 1), stride, dtype=torch.float32))
    return torch.cat(points), torch.cat(strides)


def distances_to_boxes(distances: torch.Tensor, anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """(B, 4, A) left/top/right/bottom distances in grid units -> (B, A, 4) x1 y1 x2 y2 in pixels."""
    left_top, right_bottom = distances.transpose(1, 2).split(2, -1)
    return torch.cat((anchors - left_top, anchors + right_bottom), -1) * strides


class Detect(nn.Module):
    """Per level: a box branch (cv2: 4 x bins logits) and a class branch (cv3: nc logits)."""

    def __init__(self, nc: int, ch: list[int], reg_max: int = REG_MAX):
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        c2, c3 = max(16, ch[0] // 4, reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max)

    def raw(self, feats: list[torch.Tensor], input_height: int) -> RawHead:
        batch = feats[0].shape[0]
        box = torch.cat([self.cv2[i](f).view(batch, 4 * self.reg_max, -1) for i, f in enumerate(feats)], -1)
        cls = torch.cat([self.cv3[i](f).view(batch, self.nc, -1) for i, f in enumerate(feats)], -1)
        anchors, strides = make_anchors(feats, input_height)
        return RawHead(box, cls, anchors, strides)

    def decode(self, raw: RawHead) -> YoloOutput:
        boxes = distances_to_boxes(self.dfl(raw.box), raw.anchors, raw.strides)
        return YoloOutput(boxes, raw.cls.sigmoid().transpose(1, 2))

    def forward(self, feats: list[torch.Tensor], input_height: int) -> YoloOutput:
        return self.decode(self.raw(feats, input_height))


class Proto(nn.Module):
    """Mask prototypes: Conv 3x3, 2x transposed-conv upsample, Conv 3x3, Conv 1x1 to nm maps."""

    def __init__(self, c1: int, hidden: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, hidden, 3)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, 2, 0, bias=True)
        self.cv2 = Conv(hidden, hidden, 3)
        self.cv3 = Conv(hidden, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Segment(Detect):
    """Detect plus per-anchor mask coefficients (cv4) and prototypes from the finest level (proto)."""

    def __init__(self, nc: int, nm: int, npr: int, ch: list[int], reg_max: int = REG_MAX):
        super().__init__(nc, ch, reg_max)
        self.nm = nm
        self.proto = Proto(ch[0], npr, nm)
        c4 = max(ch[0] // 4, nm)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, nm, 1)) for x in ch)

    def forward(self, feats: list[torch.Tensor], input_height: int) -> YoloOutput:
        batch = feats[0].shape[0]
        protos = self.proto(feats[0])
        coefficients = torch.cat([self.cv4[i](f).view(batch, self.nm, -1) for i, f in enumerate(feats)], -1)
        output = self.decode(self.raw(feats, input_height))
        output.coefficients, output.protos = coefficients.transpose(1, 2), protos
        return output


def make_divisible(value: float, divisor: int = 8) -> int:
    return int(math.ceil(value / divisor) * divisor)


def _resolve(arg: Any, nc: int) -> Any:
    """The yaml's string arguments: `nc` is the class count; Python literals ("None", "2") are read
    as literals (never evaluated as code); anything else ("nearest") stays a string."""
    if not isinstance(arg, str):
        return arg
    if arg == "nc":
        return nc
    try:
        return ast.literal_eval(arg)
    except (ValueError, SyntaxError):
        return arg


def _scaling(arch: dict[str, Any]) -> tuple[float, float, float]:
    """(depth, width, max channels) of the dict: its `scales` row, or the older multiples."""
    scales = arch.get("scales")
    if scales:
        scale = arch.get("scale") or next(iter(scales))
        if scale not in scales:
            raise DetectorArchitectureError(f"The YOLO architecture names scale {scale!r}, which its scales table lacks.")
        depth, width, max_channels = scales[scale]
        return float(depth), float(width), float(max_channels)
    return float(arch.get("depth_multiple", 1.0)), float(arch.get("width_multiple", 1.0)), math.inf


class YoloNetwork(nn.Module):
    """A YOLOv8 detection or segmentation network; `model` holds the layers under ultralytics' names."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        try:
            nc = int(arch["nc"])
            rows = list(arch["backbone"]) + list(arch["head"])
        except (KeyError, TypeError, ValueError) as error:
            raise DetectorArchitectureError(f"The YOLO architecture lacks {error} (it needs nc, backbone and head).") from error
        activation = arch.get("activation")
        if activation not in (None, "nn.SiLU()"):
            raise DetectorArchitectureError(f"The YOLO architecture asks for activation {activation}; Easel builds SiLU networks only.")
        self.nc = nc
        depth, width, max_channels = _scaling(arch)
        channels = [int(arch.get("channels", arch.get("ch", 3)))]
        layers: list[nn.Module] = []
        self.sources: list[int | list[int]] = []
        saved: set[int] = set()
        for index, row in enumerate(rows):
            try:
                source, repeats, kind, args = row
                args = [_resolve(a, nc) for a in args]
                repeats = max(round(repeats * depth), 1) if repeats > 1 else repeats
                saved.update(s % index for s in ([source] if isinstance(source, int) else source) if s != -1)
            except (TypeError, ValueError, ZeroDivisionError) as error:
                raise DetectorArchitectureError(f"The YOLO architecture's row {index} ({row}) cannot be read: {error}.") from error
            layer, out_channels = self._layer(str(kind), source, repeats, args, channels, nc, width, max_channels)
            layers.append(layer)
            self.sources.append(source)
            if index == 0:
                channels = []
            channels.append(out_channels)
        self.saved = saved
        self.model = nn.ModuleList(layers)
        head = layers[-1]
        if not isinstance(head, Detect):
            raise DetectorArchitectureError("The YOLO architecture does not end with a Detect or Segment layer.")
        self.head = [head]  # a plain list: the head is registered once, under model.<last>
        self.task = "segment" if isinstance(head, Segment) else "detect"

    @staticmethod
    def _layer(kind: str, source: Any, repeats: int, args: list[Any], channels: list[int], nc: int,
               width: float, max_channels: float) -> tuple[nn.Module, int]:
        def scaled(c: int) -> int:
            return c if c == nc else make_divisible(min(c, max_channels) * width, 8)

        try:
            if kind in ("Conv", "C2f", "SPPF"):
                c1, c2 = channels[source], scaled(int(args[0]))
                if kind == "C2f":
                    return C2f(c1, c2, repeats, *args[1:]), c2
                block = Conv if kind == "Conv" else SPPF
                if repeats > 1:
                    return nn.Sequential(*(block(c1 if i == 0 else c2, c2, *args[1:]) for i in range(repeats))), c2
                return block(c1, c2, *args[1:]), c2
            if kind in ("nn.Upsample", "torch.nn.Upsample", "Upsample"):
                size, factor, mode = (list(args) + [None, None, "nearest"])[:3]
                return nn.Upsample(size=size, scale_factor=factor, mode=mode), channels[source]
            if kind == "Concat":
                return Concat(*args), sum(channels[s] for s in source)
            if kind == "Detect":
                return Detect(int(args[0]), [channels[s] for s in source]), 0
            if kind == "Segment":
                nm, npr = (list(args[1:3]) + [32, 256][len(args[1:3]):])
                return Segment(int(args[0]), int(nm), make_divisible(min(int(npr), max_channels) * width, 8), [channels[s] for s in source]), 0
        except (TypeError, ValueError, IndexError) as error:
            raise DetectorArchitectureError(f"The YOLO architecture's {kind} layer has arguments Easel cannot read ({args}): {error}.") from error
        raise DetectorArchitectureError(
            f"The YOLO architecture uses a {kind} layer, which Easel does not build: it runs YOLOv8 detection and "
            f"segmentation models ({', '.join(SUPPORTED)}). Use a YOLOv8 file such as face_yolov8n.pt."
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps the head reads (every layer but the last)."""
        outputs: list[torch.Tensor | None] = []
        current: Any = x
        for index, layer in enumerate(self.model[:-1]):
            source = self.sources[index]
            if source != -1:
                current = outputs[source] if isinstance(source, int) else [current if s == -1 else outputs[s] for s in source]
            current = layer(current)
            outputs.append(current if index in self.saved else None)
        last = self.sources[-1]
        sources = [last] if isinstance(last, int) else last
        return [current if s == -1 else outputs[s] for s in sources]  # type: ignore[misc]

    def raw(self, x: torch.Tensor) -> RawHead:
        return self.head[0].raw(self.features(x), x.shape[-2])

    def forward(self, x: torch.Tensor) -> YoloOutput:
        return self.head[0](self.features(x), x.shape[-2])


def interpolate_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, h, w) -> (N, height, width), bilinear (half-pixel centres)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width))
    return F.interpolate(masks[None], (height, width), mode="bilinear", align_corners=False)[0]
