"""The API's pure pieces without a server: base64 images, A1111's extras resize, script arguments."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from modules.api.errors import ApiInputError
from modules.api.images import decode_base64, decode_image, strip_data_uri
from modules.api.scripts import SCRIPTS
from modules.generation.request import Img2ImgRequest


def png_bytes(size=(10, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("wrap", [
    lambda t: t,
    lambda t: "data:image/png;base64," + t,
    lambda t: "DATA:image/png;charset=utf-8;base64," + t,
    lambda t: "  " + "\n".join(t[i:i + 20] for i in range(0, len(t), 20)) + "\n",
    lambda t: t.rstrip("="),
    lambda t: t.replace("+", "-").replace("/", "_"),
])
def test_base64_in_every_spelling_clients_use(wrap):
    data = png_bytes()
    assert decode_base64(wrap(base64.b64encode(data).decode()), "image") == data


def test_data_uri_prefix_is_removed_only_at_the_start():
    assert strip_data_uri("data:image/webp;base64,QUJD") == "QUJD"
    assert strip_data_uri("QUJD") == "QUJD"


def test_decoded_images_are_checked_for_size_before_their_pixels_are_read():
    text = base64.b64encode(png_bytes((3000, 1000))).decode()
    with pytest.raises(ApiInputError, match=r"init_images\[0\] is 3000x1000 \(3.0 megapixels\)"):
        decode_image(text, "init_images[0]", max_megapixels=2)
    assert decode_image(text, "init_images[0]", max_megapixels=4).size == (3000, 1000)
    with pytest.raises(ApiInputError, match="mask is empty"):
        decode_image("   ", "mask", 4)


@pytest.mark.parametrize("size, scale, upscaler, expected", [
    ((50, 30), 2, "Lanczos", (96, 56)),
    ((64, 64), 1.5, "Nearest", (96, 96)),
    ((64, 48), 0.5, "Lanczos", (32, 24)),
    ((64, 64), 1, "Nearest", (64, 64)),
])
def test_upscale_rounds_down_to_multiples_of_8_as_a1111(tmp_path, size, scale, upscaler, expected):
    assert built_in_upscalers(tmp_path).upscale(Image.new("RGB", size), upscaler, scale).size == expected


def built_in_upscalers(root):
    """The upscalers with no model files: None, Lanczos, Nearest."""
    import torch

    from modules.upscalers.catalog import UpscalerCatalog
    from modules.upscalers.service import TileSettings, Upscalers

    return Upscalers(UpscalerCatalog({"ESRGAN": root / "ESRGAN"}), torch.device("cpu"), lambda: TileSettings())


def test_nearest_upscale_keeps_hard_edges(tmp_path):
    image = Image.new("RGB", (8, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 4, 8))
    out = built_in_upscalers(tmp_path).upscale(image, "Nearest", 2)
    assert {tuple(p) for p in np.asarray(out).reshape(-1, 3).tolist()} == {(0, 0, 0), (255, 255, 255)}


def test_outpainting_script_args_in_a1111_order_with_defaults():
    base = Img2ImgRequest(init_images=[Image.new("RGB", (64, 64))], width=64, height=64)
    mk2 = SCRIPTS["outpainting mk2"]
    request = mk2.build(base, mk2.named_args([None, 64, 4, ["left", "up"], 1.5, 0.1]))
    assert (request.method, request.pixels, request.mask_blur, request.chosen_directions) == ("Outpainting mk2", 64, 4, ("left", "up"))
    assert (request.noise_q, request.color_variation) == (1.5, 0.1)
    defaults = mk2.build(base, mk2.named_args([]))
    assert (defaults.pixels, defaults.mask_blur, defaults.chosen_directions) == (128, 8, ("left", "right", "up", "down"))
    poor = SCRIPTS["poor man's outpainting"]
    assert poor.build(base, poor.named_args([32, 2, "latent noise", "down"])).inpainting_fill == 2
    assert poor.build(base, poor.named_args([32, 2, 1])).inpainting_fill == 1
    with pytest.raises(ApiInputError, match="Outpainting direction"):
        poor.build(base, poor.named_args([32, 2, 0, ["sideways"]]))
    with pytest.raises(ApiInputError, match="at most 4 script_args"):
        poor.named_args([1, 2, 3, 4, 5])
    with pytest.raises(ApiInputError, match="Pixels to expand"):
        poor.build(base, poor.named_args(["wide"]))
    info = mk2.info()
    assert info["name"] == "outpainting mk2" and info["is_img2img"] is True
    assert info["args"][1] == {"label": "Pixels to expand", "value": 128, "minimum": 8, "maximum": 256, "step": 8, "choices": None}
