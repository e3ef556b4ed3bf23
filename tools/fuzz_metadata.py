"""Fuzzes the image metadata reader with mutated PNG, JPEG and WebP files.

    .venv/bin/python tools/fuzz_metadata.py [--cases 10000] [--seed 0] [--max-seconds 2]

Seed files are real images carrying A1111 infotext, a ComfyUI graph and NovelAI fields; each case
applies a few random mutations (bit flips, byte runs overwritten, truncation, chunks of the file
duplicated or moved, random insertions, length fields changed) and feeds the bytes to
`read_image_parameters`. A case passes when the reader returns or raises `UserError` (a clear
sentence) within `--max-seconds`. Anything else is printed with its seed and the mutated file is
kept under bench/results/fuzz/ for replay. Deterministic for a given --seed.
The test suite runs a few hundred cases of the same generator (tests/unit/test_metadata_fuzz.py).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402
from PIL.PngImagePlugin import PngInfo  # noqa: E402

from modules.errors import UserError  # noqa: E402
from modules.infotext.embed import image_bytes_with_infotext  # noqa: E402

INFOTEXT = (
    "a photo of a corgi, (masterpiece:1.2), \u65e5\u672c\u8a9e \U0001f436\nNegative prompt: blurry, lowres\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1170634956, Size: 64x64, "
    'Model hash: 92970aa785, Model: dreamlike, Lora hashes: "detail: 0123456789ab", Version: v1.10.1'
)
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                                               "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["4", 1]}},
}


def seed_files() -> list[bytes]:
    """Valid files the mutations start from."""
    image = Image.new("RGB", (64, 64), (200, 120, 40))
    files = [image_bytes_with_infotext(image, INFOTEXT, fmt) for fmt in ("png", "jpg", "webp")]
    info = PngInfo()
    info.add_text("prompt", json.dumps(COMFY_PROMPT))
    info.add_text("workflow", json.dumps({"nodes": []}))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    files.append(buffer.getvalue())
    info = PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "a dog")
    info.add_text("Comment", json.dumps({"steps": 28, "scale": 11, "seed": 3, "sampler": "k_euler_ancestral", "uc": "bad", "width": 64, "height": 64}))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    files.append(buffer.getvalue())
    return files


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        if not out:
            break
        at = rng.randrange(len(out))
        if kind == 0:  # flip bits
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:  # overwrite a run with random bytes
            run = rng.randint(1, 16)
            out[at:at + run] = bytes(rng.randrange(256) for _ in range(min(run, len(out) - at)))
        elif kind == 2:  # truncate
            del out[at:]
        elif kind == 3:  # duplicate a slice somewhere
            run = out[at:at + rng.randint(1, 256)]
            where = rng.randrange(len(out))
            out[where:where] = run
        elif kind == 4:  # insert random bytes
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif kind == 5:  # an extreme value in a 4-byte field (chunk lengths, image sizes)
            out[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00"])
        else:  # move a block
            run = rng.randint(1, 512)
            block = out[at:at + run]
            del out[at:at + run]
            where = rng.randrange(len(out) + 1)
            out[where:where] = block
    return bytes(out)


def run_case(reader, data: bytes, max_seconds: float) -> str | None:
    """None when the reader behaved (a result or a UserError in time), else what went wrong."""
    started = time.perf_counter()
    try:
        reader(io.BytesIO(data))
    except UserError:
        pass
    except Exception as error:  # the point of fuzzing: any other exception is a bug
        return f"{type(error).__name__}: {error}"
    elapsed = time.perf_counter() - started
    if elapsed > max_seconds:
        return f"took {elapsed:.2f} s"
    return None


def fuzz(cases: int, seed: int, max_seconds: float, keep: Path | None = None) -> list[tuple[int, str]]:
    from modules.infotext.foreign import read_image_parameters

    rng = random.Random(seed)
    originals = seed_files()
    failures = []
    for case in range(cases):
        data = mutate(rng.choice(originals), rng)
        problem = run_case(read_image_parameters, data, max_seconds)
        if problem is not None:
            failures.append((case, problem))
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"case-{seed}-{case}.bin").write_bytes(data)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=2.0)
    args = parser.parse_args()
    started = time.perf_counter()
    failures = fuzz(args.cases, args.seed, args.max_seconds, Path(__file__).resolve().parents[1] / "bench" / "results" / "fuzz")
    elapsed = time.perf_counter() - started
    for case, problem in failures[:50]:
        print(f"case {case}: {problem}")
    print(f"{args.cases} cases in {elapsed:.1f} s: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
