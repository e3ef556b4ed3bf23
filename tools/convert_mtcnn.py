"""Writes Easel's face detector weights, models/adetailer/easel-face-mtcnn.safetensors, from the MTCNN
state dicts that facenet-pytorch (MIT) ships in its wheel: facenet_pytorch/data/{pnet,rnet,onet}.pt.

    .venv/bin/pip download facenet-pytorch==2.6.0 --no-deps -d /tmp/fn
    .venv/bin/python tools/convert_mtcnn.py /tmp/fn/facenet_pytorch-2.6.0-py3-none-any.whl
    .venv/bin/python tools/convert_mtcnn.py /path/to/site-packages/facenet_pytorch   # an installed copy

The .pt files are read through `read_weights_file` (torch's restricted unpickler: tensors only, never
code), checked against the networks of modules/detailer/faces.py (same names and shapes), and
written under `pnet.`, `rnet.`, `onet.` as float32 with the source, version and licence as metadata.
The written file is then loaded back through `FaceDetector` to check that it reads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from modules.checkpoints.tensor_files import read_weights_file, write_safetensors
from modules.detailer.faces import FaceDetector, Mtcnn

DEFAULT_OUT = ROOT / "models" / "adetailer" / "easel-face-mtcnn.safetensors"
NETS = ("pnet", "rnet", "onet")
MAX_BYTES = 3 * 1024 * 1024
LICENCE = "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); see models/adetailer/easel-face-mtcnn.md"


def _version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    return parts[1] if len(parts) > 2 else "unknown"


def read_nets(source: Path, scratch: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """The three nets' tensors under `pnet.` / `rnet.` / `onet.`, the version, and each .pt's SHA-256."""
    if source.is_file() and source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            for net in NETS:
                (scratch / f"{net}.pt").write_bytes(wheel.read(f"facenet_pytorch/data/{net}.pt"))
        folder, version = scratch, _version(source)
    else:
        folder = source / "data" if (source / "data").is_dir() else source
        version = "unknown"
        for info in source.parent.glob("facenet_pytorch-*.dist-info"):
            version = info.name.split("-")[1].removesuffix(".dist")
    tensors: dict[str, torch.Tensor] = {}
    digests = {}
    for net in NETS:
        path = folder / f"{net}.pt"
        digests[net] = hashlib.sha256(path.read_bytes()).hexdigest()
        state = read_weights_file(path, "face detector")
        if not isinstance(state, dict):
            raise SystemExit(f"{path} holds no state dict.")
        tensors.update({f"{net}.{key}": value.float().contiguous() for key, value in state.items()})
    return tensors, version, digests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="facenet-pytorch wheel (.whl) or its installed facenet_pytorch folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        tensors, version, digests = read_nets(args.source, Path(scratch))
    expected = {key: tuple(value.shape) for key, value in Mtcnn().state_dict().items()}
    got = {key: tuple(value.shape) for key, value in tensors.items()}
    if got != expected:
        raise SystemExit(f"The weights do not fit modules/detailer/faces.py: {sorted(set(got) ^ set(expected)) or 'shapes differ'}.")
    metadata = {
        "source": f"facenet-pytorch {version} (https://github.com/timesler/facenet-pytorch), facenet_pytorch/data/pnet.pt, rnet.pt, onet.pt",
        "version": version,
        "licence": LICENCE,
        "architecture": "MTCNN (PNet, RNet, ONet); keys are facenet-pytorch's state-dict names behind pnet./rnet./onet.",
        "sha256": ", ".join(f"{net}.pt {digest}" for net, digest in digests.items()),
        "converted_by": "tools/convert_mtcnn.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out, [(key, tensors[key]) for key in expected], metadata)
    size = args.out.stat().st_size
    if size >= MAX_BYTES:
        args.out.unlink()
        raise SystemExit(f"{args.out} would be {size} bytes, over {MAX_BYTES}: removed.")
    FaceDetector(args.out)  # reads back through the real loader
    print(f"wrote {args.out} ({size:,} bytes, {len(expected)} tensors, {sum(t.numel() for t in tensors.values()):,} parameters)")


if __name__ == "__main__":
    main()
