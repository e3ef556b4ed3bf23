"""Benchmark: what the detailer costs per region, against one img2img inpainting of the same region
at the same size, side by side in one run.

    .venv/bin/python bench/detailer.py --quick   # tiny SD1 model, seconds
    .venv/bin/python bench/detailer.py           # + SD1.5-shaped random weights (bench/model_switch.py writes them)

The picture is tests/fixtures/astronaut.jpg (one face) at 256x256. Contenders, alternating, medians:
- img2img: Easel's img2img inpainting, "only masked" with padding 32, of a mask over the face box
  (the box ADetailer's face tab finds, dilated by 4): the floor, what one region must cost;
- detailer: the whole stage for one picture with one face tab (easel-face-mtcnn): detection, the
  mask steps, the same img2img inpainting, paste-back;
- detection alone: the MTCNN face detector on the picture.
Both generation contenders run the same steps (20 by default), strength 0.4 (ADetailer's default),
Euler, CFG 7.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from _common import alternate, machine_info, markdown_table, model_cases, side_by_side_arguments, write_json  # noqa: E402
from engine_overhead import load  # noqa: E402
from modules.detailer.args import DetailerRequest, DetailerTab  # noqa: E402
from modules.detailer.catalog import DetectorCatalog  # noqa: E402
from modules.detailer.masks import region_masks, to_pil  # noqa: E402
from modules.detailer.stage import detail  # noqa: E402
from modules.generation.engine import GenerationResult  # noqa: E402
from modules.generation.img2img import img2img  # noqa: E402
from modules.generation.request import GenerationRequest, Img2ImgRequest  # noqa: E402

SIZE = 256
FACE_MODEL = "easel-face-mtcnn.safetensors"


def measure(model, steps: int, repeats: int) -> dict[str, list[float]]:
    picture = Image.open(ROOT / "tests" / "fixtures" / "astronaut.jpg").convert("RGB").resize((SIZE, SIZE))
    detectors = DetectorCatalog([ROOT / "models" / "adetailer"])
    tab = DetailerTab(ad_model=FACE_MODEL, ad_prompt="a face")
    found = detectors.detector(FACE_MODEL).detect(picture, tab.ad_confidence)
    masks = region_masks(found, tab)
    assert len(masks) == 1, f"expected one face, found {len(masks)}"
    request = GenerationRequest(prompt="an astronaut", sampler_name="Euler", steps=steps, cfg_scale=7.0, width=SIZE, height=SIZE, seed=1,
                                preview_every=0)
    region = Img2ImgRequest(prompt="a face", sampler_name="Euler", steps=steps, cfg_scale=7.0, width=SIZE, height=SIZE, seed=1, preview_every=0,
                            init_images=[picture], mask=to_pil(masks[0]), mask_blur=tab.ad_mask_blur, inpaint_full_res=True,
                            inpaint_full_res_padding=32, denoising_strength=tab.ad_denoising_strength, save_samples=False)
    detailer = DetailerRequest(True, False, [tab])

    def one_img2img() -> None:
        img2img(model, region)

    def whole_stage() -> None:
        result = GenerationResult(images=[picture.copy()], seeds=[1], subseeds=[1], image_seeds=[1])
        detail(result, request, detailer, detectors, lambda sub, on_step: img2img(model, sub, on_step=on_step))
        assert result.extra_parameters["ADetailer regions"] == "1"

    def detection() -> None:
        detectors.detector(FACE_MODEL).detect(picture, tab.ad_confidence)

    return alternate({"img2img of the region": one_img2img, "detailer, one region": whole_stage, "detection alone": detection}, repeats)


def main() -> None:
    args = side_by_side_arguments(__doc__ or "", repeats=5)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows, report = [], {"machine": machine_info(), "size": SIZE, "steps": args.steps, "cases": {}}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for label, path, _size, steps, repeats in model_cases(args, work):
            model = load(path, work)
            times = measure(model, steps, repeats)
            medians = {name: statistics.median(values) for name, values in times.items()}
            floor = medians["img2img of the region"]
            for name, value in medians.items():
                rows.append([label, name, f"{value:.3f} s", f"{value / floor:.2f}"])
            report["cases"][label] = {"medians_s": medians, "runs_s": times}
    print(f"Detailer, one face region on a {SIZE}x{SIZE} picture, {args.steps} steps, strength 0.4, Euler, CFG 7, float32\n")
    print(markdown_table(["model", "contender", "median", "x img2img of the region"], rows))
    print(f"\n- {report['machine']}")
    print(f"- medians of {args.repeats} alternating runs after one warm-up each")
    path = write_json(ROOT / "bench" / "results" / ("detailer.quick.json" if args.quick else "detailer.json"), report)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
