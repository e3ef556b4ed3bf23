"""The face detector that ships with Easel (MTCNN on facenet-pytorch's weights, models/adetailer/
easel-face-mtcnn.safetensors): it finds the astronaut's face where facenet-pytorch does, nothing on
pictures without faces, survives tiny pictures, and reads no file that would run code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.checkpoints.tensor_files import write_safetensors
from modules.detailer.detection import DetectorError
from modules.detailer.faces import FaceDetector, Mtcnn, nms, pyramid_scales
from modules.errors import UnsafeCheckpointError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "adetailer" / "easel-face-mtcnn.safetensors"
ASTRONAUT = ROOT / "tests" / "fixtures" / "astronaut.jpg"
# facenet-pytorch 2.6.0's MTCNN.detect on the same JPEG (checked once): box and probability.
ASTRONAUT_FACE = (91.34, 31.89, 134.51, 87.44)

# facenet-pytorch 2.6.0's state-dict names (models/mtcnn.py: PNet, RNet, ONet), written out here.
_CONV_PRELU = ["conv1.weight", "conv1.bias", "prelu1.weight", "conv2.weight", "conv2.bias", "prelu2.weight", "conv3.weight", "conv3.bias", "prelu3.weight"]
FACENET_NAMES = {
    "pnet": _CONV_PRELU + ["conv4_1.weight", "conv4_1.bias", "conv4_2.weight", "conv4_2.bias"],
    "rnet": _CONV_PRELU + ["dense4.weight", "dense4.bias", "prelu4.weight", "dense5_1.weight", "dense5_1.bias", "dense5_2.weight", "dense5_2.bias"],
    "onet": _CONV_PRELU + ["conv4.weight", "conv4.bias", "prelu4.weight", "dense5.weight", "dense5.bias", "prelu5.weight",
                           "dense6_1.weight", "dense6_1.bias", "dense6_2.weight", "dense6_2.bias", "dense6_3.weight", "dense6_3.bias"],
}


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(SHIPPED)


def test_the_shipped_file_is_small_and_named_like_facenet_pytorch():
    assert SHIPPED.stat().st_size < 3 * 1024 * 1024
    model = Mtcnn()
    for net, names in FACENET_NAMES.items():
        assert list(getattr(model, net).state_dict()) == names


def test_the_astronauts_face_is_found(detector):
    picture = Image.open(ASTRONAUT)
    found = detector.detect(picture, 0.3)
    assert detector.name == "mtcnn_face"
    assert len(found) == 1 and found.labels == ["face"]
    assert found.confidences[0] > 0.9
    np.testing.assert_allclose(found.boxes[0], ASTRONAUT_FACE, atol=3)
    x1, y1, x2, y2 = found.boxes[0]
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    assert 100 < centre_x < 125 and 45 < centre_y < 75  # between her eyes and her mouth
    assert found.masks.shape == (1, 256, 256) and found.masks[0, int(centre_y), int(centre_x)]
    assert found.masks[0].sum() == pytest.approx((x2 - x1) * (y2 - y1), rel=0.1)
    assert not found.masks[0, 0, 0] and not found.masks[0, 200, 200]
    assert len(detector.detect(picture, 0.99999)) == 0  # the confidence applies to the final score


def test_no_face_on_flat_grey_or_coloured_circles(detector):
    circles = Image.new("RGB", (256, 256), (240, 240, 240))
    draw = ImageDraw.Draw(circles)
    for x, y, r, colour in [(60, 60, 40, "red"), (180, 70, 50, "blue"), (90, 180, 45, "green"), (190, 190, 35, "orange"), (128, 128, 20, "purple")]:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    for picture in (Image.new("RGB", (256, 256), (128, 128, 128)), circles):
        found = detector.detect(picture, 0.3)
        assert len(found) == 0 and found.masks.shape == (0, 256, 256)


def test_a_tiny_picture_gives_nothing(detector):
    assert pyramid_scales(7, 9) == []
    found = detector.detect(Image.new("L", (7, 9)), 0.3)
    assert len(found) == 0 and found.boxes.shape == (0, 4) and found.masks.shape == (0, 9, 7)


def test_boxes_are_clipped_to_the_picture(detector):
    picture = Image.open(ASTRONAUT).crop((100, 40, 256, 256))  # the face cut at the left and top edges
    found = detector.detect(picture, 0.3)
    assert len(found) == 1
    assert found.boxes.min() >= 0 and (found.boxes[:, 2] <= 156).all() and (found.boxes[:, 3] <= 216).all()


def test_nms_by_union_and_by_smaller_box():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [2, 0, 3]  # IoU(0, 1) = 81/119 > 0.5; box 2 lies inside 0 (IoU 0.16)
    assert nms(boxes, scores, 0.7, by_smaller=True, inclusive=True).tolist() == [2, 3]  # 2 lies inside 0 and 1
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5).tolist() == []


def test_a_pt_state_dict_loads_like_the_safetensors(tmp_path, detector):
    path = tmp_path / "faces.pt"
    torch.save(detector.model.state_dict(), path)
    found = FaceDetector(path).detect(Image.open(ASTRONAUT), 0.3)
    np.testing.assert_allclose(found.boxes[0], ASTRONAUT_FACE, atol=3)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, detector):
    marker = tmp_path / "ran"
    path = tmp_path / "faces.pt"
    torch.save({**detector.model.state_dict(), "x": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="faces.pt was refused: it is a pickle that would run code"):
        FaceDetector(path)
    assert not marker.exists()


def test_a_file_of_other_weights_is_a_sentence(tmp_path, detector):
    path = tmp_path / "yolo.safetensors"
    write_safetensors(path, [(key, value) for key, value in detector.model.state_dict().items() if not key.startswith("onet.")])
    with pytest.raises(DetectorError, match="yolo.safetensors does not fit MTCNN"):
        FaceDetector(path)
