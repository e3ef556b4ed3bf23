"""Trains Easel's demo detector: a tiny YOLOv8-layout network that finds the demo model's shapes, so the
detailer works on a fresh install and can be tested (models/adetailer/easel-demo-shapes.md).

The network is the YOLOv8 detection layout (modules/detailer/yolo/network.py, the yolov8.yaml table)
at depth 0.33 and width 0.0625 (channels 8-64), one class, "shape", input 128 x 128. Everything is
our own: the network code, the pictures and the training.

Data, drawn afresh for every step: pictures of 48 to 512 pixels a side (any aspect ratio from 2:5 to
5:2), a plain background (mostly light, sometimes any colour), 0 to 4 flat shapes (circle, square,
upright triangle, drawn as tools/demo_shapes.py draws them) of random colour, size and position, not
overlapping; some pictures blurred or noised a little. Each is letterboxed to 128 exactly as the
detector does it at run time (modules/detailer/yolo/detector.py).

Assignment and loss (ours, simpler than ultralytics' task-aligned assigner): the candidates for a
shape are the anchors whose cell centre lies inside its box, within 2.5 cells of the box centre, with
each side within the 16-bin distance range of its level (a shape with none takes the nearest
finest-level anchor); of those, the TOPK with the best score^0.5 x IoU^6 are positives, their class
target that quality scaled so the shape's best anchor gets its IoU. Loss: 5 x (1 - GIoU) of the
decoded boxes + distribution focal loss on the side distances, weighted by the targets; BCE of the
class logit against the targets (0 elsewhere); each divided by the sum of the targets.

    python tools/train_demo_detector.py                 # the shipped file: ~10 min on a 2-core CPU
    python tools/train_demo_detector.py --steps 30 --eval-images 50 --out /tmp/d.safetensors   # smoke run

Deterministic for a seed and thread count: the initial weights come from the seed, every step's
pictures from a generator seeded by (seed, step). Held-out pictures (another seed) are then run
through `YoloDetector` from the written file and scored: precision and recall at IoU 0.5, conf 0.3.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from modules.detailer.yolo.detector import YoloDetector, box_iou, letterbox  # noqa: E402
from modules.detailer.yolo.files import YoloFile, save_safetensors  # noqa: E402
from modules.detailer.yolo.network import REG_MAX, YoloNetwork  # noqa: E402
from tools.demo_shapes import COLOURS  # noqa: E402

DEFAULT_OUT = ROOT / "models" / "adetailer" / "easel-demo-shapes.safetensors"
SHAPES = ("circle", "square", "triangle")
TOPK = 10  # positives per shape at most


def architecture(depth: float = 0.33, width: float = 0.0625) -> dict[str, Any]:
    """The yolov8.yaml layer table, one class, with one scale row ("demo")."""
    return {
        "nc": 1, "scales": {"demo": [depth, width, 1024]}, "scale": "demo", "channels": 3,
        "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C2f", [128, True]],
                     [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C2f", [256, True]], [-1, 1, "Conv", [512, 3, 2]],
                     [-1, 6, "C2f", [512, True]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C2f", [1024, True]],
                     [-1, 1, "SPPF", [1024, 5]]],
        "head": [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 6], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
                 [-1, 1, "nn.Upsample", ["None", 2, "nearest"]], [[-1, 4], 1, "Concat", [1]], [-1, 3, "C2f", [256]],
                 [-1, 1, "Conv", [256, 3, 2]], [[-1, 12], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
                 [-1, 1, "Conv", [512, 3, 2]], [[-1, 9], 1, "Concat", [1]], [-1, 3, "C2f", [1024]],
                 [[15, 18, 21], 1, "Detect", ["nc"]]],
    }


@dataclass
class DetectorConfig:
    seed: int = 0
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    imgsz: int = 128
    width: float = 0.0625
    depth: float = 0.33
    eval_images: int = 400


# pictures ---------------------------------------------------------------------------------------


def random_colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    if rng.random() < 0.4:
        names = list(COLOURS)
        return COLOURS[names[rng.integers(len(names))]]
    low = 170 if light else 0
    return tuple(int(v) for v in rng.integers(low, 256, 3))  # type: ignore[return-value]


def shape_box(shape: str, cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    if shape == "square":
        s = r * 0.9
        return cx - s, cy - s, cx + s, cy + s
    if shape == "triangle":
        return cx - r, cy - r, cx + r, cy + r * 0.85
    return cx - r, cy - r, cx + r, cy + r


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    if shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)], fill=fill)
    elif shape == "square":
        draw.rectangle(shape_box(shape, cx, cy, r), fill=fill)
    else:
        draw.ellipse(shape_box(shape, cx, cy, r), fill=fill)


def random_picture(rng: np.random.Generator, imgsz: int) -> tuple[np.ndarray, np.ndarray]:
    """A picture (H, W, 3 uint8) of 0-4 shapes and their boxes (N, 4) in its pixels."""
    if rng.random() < 0.4:
        width = height = int(rng.integers(48, 513))
    else:
        width, height = (int(v) for v in rng.integers(48, 513, 2))
        height = int(np.clip(height, width * 0.4, width * 2.5))
    background = random_colour(rng, light=rng.random() < 0.75)
    supersample = 2 if max(width, height) <= 256 else 1
    image = Image.new("RGB", (width * supersample, height * supersample), background)
    draw = ImageDraw.Draw(image)
    fit = imgsz / max(width, height)  # picture pixels -> input pixels
    count = int(rng.choice(5, p=[0.08, 0.5, 0.22, 0.12, 0.08]))
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(count):
        for _try in range(30):
            r = min(rng.uniform(5, 45) / fit, 0.48 * min(width, height))
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            shape = SHAPES[rng.integers(3)]
            box = shape_box(shape, cx, cy, r)
            if all(box[2] + 2 < b[0] or b[2] + 2 < box[0] or box[3] + 2 < b[1] or b[3] + 2 < box[1] for b in boxes):
                break
        else:
            continue
        while True:
            fill = random_colour(rng, light=False)
            if np.linalg.norm(np.subtract(fill, background)) > 90:
                break
        draw_shape(draw, shape, cx * supersample, cy * supersample, r * supersample, fill)
        boxes.append(box)
    if supersample > 1:
        image = image.resize((width, height), Image.BOX)
    picture = np.asarray(image).copy()
    if rng.random() < 0.3:
        import cv2

        picture = cv2.GaussianBlur(picture, (0, 0), float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.3:
        picture = np.clip(picture + rng.normal(0, rng.uniform(2, 8), picture.shape), 0, 255).astype(np.uint8)
    return picture, np.array(boxes, np.float32).reshape(-1, 4)


def training_batch(rng: np.random.Generator, config: DetectorConfig) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Pictures letterboxed to imgsz x imgsz (grey 114 around) and their boxes in input pixels."""
    inputs, targets = [], []
    for _ in range(config.batch):
        picture, boxes = random_picture(rng, config.imgsz)
        padded, fitted = letterbox(picture, config.imgsz, stride=config.imgsz)  # stride = size: always square
        sx, sy = fitted.width / fitted.source_width, fitted.height / fitted.source_height
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([fitted.left, fitted.top] * 2, np.float32)
        inputs.append(torch.from_numpy(padded).permute(2, 0, 1))
        targets.append(torch.from_numpy(boxes))
    return torch.stack(inputs).float() / 255.0, targets


# assignment and loss ----------------------------------------------------------------------------


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` (A, 4) with every box of `b` (G, 4)."""
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-7)


def assign(points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, predicted: torch.Tensor,
           scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor (cell centres `points` in pixels, A x 2) the index of the box it predicts (-1:
    none) and its class target. Candidates: centre inside the box, within 2.5 cells of the box centre,
    every side within the level's distance range. Of those, the TOPK with the best quality
    score^0.5 x IoU^6 (of the anchor's own current box) are positives; the target is that quality
    scaled so the box's best anchor gets its IoU, so poorer boxes learn lower confidences."""
    count = len(points)
    none = torch.full((count,), -1, dtype=torch.long)
    if not len(boxes):
        return none, torch.zeros(count)
    px, py = points[:, 0:1], points[:, 1:2]
    x1, y1, x2, y2 = boxes.T[:, None, :].unbind(0)
    sides = torch.stack((px - x1, py - y1, x2 - px, y2 - py), -1) / strides[:, :, None]  # A x G x 4, cells
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    near = ((px - cx).abs() < 2.5 * strides) & ((py - cy).abs() < 2.5 * strides)
    candidate = (sides.min(-1).values > 0) & (sides.max(-1).values < REG_MAX - 1.01) & near
    for index in range(len(boxes)):
        if not candidate[:, index].any():  # a box no anchor can take: the nearest finest-level anchor
            finest = strides[:, 0] == strides.min()
            distance = (px[:, 0] - cx[0, index]) ** 2 + (py[:, 0] - cy[0, index]) ** 2
            candidate[torch.argmin(torch.where(finest, distance, torch.full_like(distance, math.inf))), index] = True
    iou = pairwise_iou(predicted, boxes) * candidate
    quality = scores[:, None].sqrt() * iou.pow(6) * candidate + candidate * 1e-12  # candidates rank above the rest
    top = torch.zeros_like(candidate)
    top.scatter_(0, quality.topk(min(TOPK, count), dim=0).indices, True)
    positive = top & candidate
    best_iou = torch.where(positive, iou, torch.full_like(iou, -1.0))
    assigned = torch.where(positive.any(1), best_iou.argmax(1), none)
    chosen = assigned >= 0
    quality = quality * positive
    scale = (iou * positive).amax(0) / quality.amax(0).clamp(min=1e-12)  # per box: its best anchor gets its best IoU
    target = torch.zeros(count)
    target[chosen] = (quality * scale)[chosen, assigned[chosen]]
    return assigned, target


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matching rows of two (N, 4) box sets."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + 1e-7
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1) + 1e-7
    return inter / union - (hull - union) / hull


def detection_loss(network: YoloNetwork, x: torch.Tensor, targets: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    raw = network.raw(x)
    batch, anchors = x.shape[0], raw.anchors.shape[0]
    points, strides = raw.anchors * raw.strides, raw.strides
    logits = raw.box.view(batch, 4, REG_MAX, anchors).permute(0, 3, 1, 2)  # B x A x 4 x bins
    distances = (logits.softmax(-1) * torch.arange(REG_MAX, dtype=logits.dtype)).sum(-1)
    predicted = torch.cat((raw.anchors - distances[..., :2], raw.anchors + distances[..., 2:]), -1) * strides
    scores = raw.cls[:, 0].detach().sigmoid()
    cls_target = torch.zeros(batch, anchors)
    box_terms, dfl_terms, weights = [], [], []
    for i, boxes in enumerate(targets):
        assigned, cls_target[i] = assign(points, strides, boxes, predicted[i].detach(), scores[i])
        chosen = torch.nonzero(assigned >= 0).flatten()
        if not len(chosen):
            continue
        target, weight = boxes[assigned[chosen]], cls_target[i, chosen]
        box_terms.append((1 - giou(predicted[i, chosen], target)) * weight)
        point, stride = points[chosen], strides[chosen]
        sides = torch.cat((point - target[:, :2], target[:, 2:] - point), -1) / stride
        sides = sides.clamp(0, REG_MAX - 1.01)
        left = sides.floor().long()
        weight_left = left + 1 - sides
        log_probs = logits[i, chosen].log_softmax(-1)
        dfl = -(log_probs.gather(-1, left[..., None])[..., 0] * weight_left
                + log_probs.gather(-1, (left + 1)[..., None])[..., 0] * (1 - weight_left))
        dfl_terms.append(dfl.mean(-1) * weight)
        weights.append(weight)
    total_weight = max(float(cls_target.sum()), 1.0)
    cls_loss = F.binary_cross_entropy_with_logits(raw.cls[:, 0], cls_target, reduction="sum") / total_weight
    box_loss = torch.cat(box_terms).sum() / total_weight if box_terms else x.new_zeros(())
    dfl_loss = torch.cat(dfl_terms).sum() / total_weight if dfl_terms else x.new_zeros(())
    total = 5.0 * box_loss + dfl_loss + cls_loss
    return total, {"box": box_loss.item(), "dfl": dfl_loss.item(), "cls": cls_loss.item()}


# training ---------------------------------------------------------------------------------------


def lr_at(step: int, config: DetectorConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def new_network(config: DetectorConfig) -> YoloNetwork:
    torch.manual_seed(config.seed)
    network = YoloNetwork(architecture(config.depth, config.width))
    head = network.head[0]
    for branch in head.cv2:
        torch.nn.init.constant_(branch[-1].bias, 1.0)
    for branch in head.cv3:
        torch.nn.init.constant_(branch[-1].bias, -4.0)
    return network


def train(config: DetectorConfig, out: Path, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    began = time.perf_counter()
    network = new_network(config)
    network.train()
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=5e-4)
    smoothed: dict[str, float] = {}
    for step in range(config.steps):
        rng = np.random.default_rng([config.seed, step])
        x, targets = training_batch(rng, config)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        loss, parts = detection_loss(network, x, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        for key, value in parts.items():
            smoothed[key] = value if key not in smoothed else 0.98 * smoothed[key] + 0.02 * value
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            elapsed = time.perf_counter() - began
            print(f"[detector] step {step + 1}/{config.steps}  " + "  ".join(f"{k} {v:.3f}" for k, v in smoothed.items())
                  + f"  {elapsed:.0f} s  eta {(config.steps - step - 1) * elapsed / (step + 1):.0f} s", flush=True)
    train_seconds = time.perf_counter() - began
    network.eval()
    summary: dict[str, Any] = {
        "config": asdict(config), "threads": threads, "torch": torch.__version__, "train_seconds": round(train_seconds, 1),
        "final_loss": {k: round(v, 4) for k, v in smoothed.items()}, "parameters": sum(p.numel() for p in network.parameters()),
    }
    metadata = {
        "easel.trained_by": "tools/train_demo_detector.py",
        "easel.base_model": "easel-demo-shapes",
        "easel.training": json.dumps(summary),
        "license": "Apache-2.0",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    model = YoloFile(out, architecture(config.depth, config.width), {0: "shape"}, network.state_dict(), [8.0, 16.0, 32.0], config.imgsz)
    save_safetensors(out, model, metadata)
    summary["file_bytes"] = out.stat().st_size
    return summary


# measuring --------------------------------------------------------------------------------------


def evaluate(path: Path, count: int, seed: int, imgsz: int, confidence: float = 0.3) -> dict[str, Any]:
    """Precision and recall at IoU 0.5 of the written file, through YoloDetector, on held-out pictures."""
    detector = YoloDetector(path)
    rng = np.random.default_rng([seed, 7_000_000])
    true_positives = found = expected = empty_hits = empty_pictures = 0
    for _ in range(count):
        picture, boxes = random_picture(rng, imgsz)
        detections = detector.detect(Image.fromarray(picture), confidence)
        found += len(detections)
        expected += len(boxes)
        if not len(boxes):
            empty_pictures += 1
            empty_hits += len(detections)
        if len(detections) and len(boxes):
            ious = box_iou(torch.from_numpy(detections.boxes), torch.from_numpy(boxes))
            used: set[int] = set()
            for row in ious:  # detections come highest confidence first
                candidates = [(float(v), j) for j, v in enumerate(row) if j not in used and v >= 0.5]
                if candidates:
                    used.add(max(candidates)[1])
                    true_positives += 1
    return {
        "pictures": count, "shapes": expected, "detections": found, "confidence": confidence,
        "precision": round(true_positives / max(found, 1), 4), "recall": round(true_positives / max(expected, 1), 4),
        "blank_pictures": empty_pictures, "detections_on_blank": empty_hits,
    }


def evaluate_demo_scenes(path: Path, count: int, seed: int, confidence: float = 0.3) -> dict[str, Any]:
    """Recall at IoU 0.5 (and mean IoU) on the demo model's own training pictures (tools/demo_shapes.py,
    64 x 64, one shape each), and how many pictures gave a second, spurious box."""
    from tools.demo_shapes import scene_batch

    detector = YoloDetector(path)
    scenes, pixels = scene_batch(count, seed + 8_000_000, 64)
    hits, ious, extra = 0, [], 0
    for scene, picture in zip(scenes, pixels):
        drawn = torch.tensor([shape_box(scene.shape, scene.centre[0] * 64, scene.centre[1] * 64, scene.radius * 64)])
        detections = detector.detect(Image.fromarray(picture), confidence)
        best = float(box_iou(torch.from_numpy(detections.boxes), drawn).max()) if len(detections) else 0.0
        hits += best >= 0.5
        ious.append(best)
        extra += len(detections) > 1
    return {"pictures": count, "recall": round(hits / count, 4), "mean_iou": round(float(np.mean(ious)), 4), "pictures_with_extra_boxes": extra}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, DetectorConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="detector file to write (Easel's YOLO safetensors, fp16)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch (the shipped file: 2)")
    for name, value in asdict(DetectorConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    config = DetectorConfig(**{name: getattr(args, name) for name in asdict(DetectorConfig())})
    problems = [f"--{name} must be at least 1" for name in ("steps", "batch", "eval_images") if getattr(config, name) < 1]
    if args.threads < 1:
        problems.append("--threads must be at least 1")
    if config.imgsz % 32:
        problems.append("--imgsz must be a multiple of 32")
    if problems:
        parser.error("; ".join(problems))
    return args, config


def main(argv: list[str] | None = None) -> None:
    args, config = parse_args(argv)
    summary = train(config, args.out, args.threads)
    summary["held_out"] = evaluate(args.out, config.eval_images, config.seed, config.imgsz)
    summary["demo_pictures"] = evaluate_demo_scenes(args.out, config.eval_images, config.seed)
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main()
