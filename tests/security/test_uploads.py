"""Uploads are limited in bytes (--max-upload-mb, default 50: 413 with a sentence) and in pixels
(setting max_input_megapixels: refused from the header, before decoding), through the API and
through the page's handlers (PNG Info tab, img2img and outpainting pictures).

The 20,000 x 20,000 PNG is written row by row with zlib at 1 bit per pixel: about 50 KB on disk,
never 400 million pixels in memory."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import API, UI_PASSWORD, UI_USER

SIDE = 20_000
LIMIT_BYTES = 50_000_000  # the default of --max-upload-mb


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = SIDE) -> bytes:
    """A valid side x side black PNG (grey, 1 bit), compressed one row at a time."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png())
    assert path.stat().st_size < 200_000
    return path


def assert_refused_for_size(text: str) -> None:
    assert f"{SIDE}x{SIDE}" in text and "400.0 megapixels" in text and "max_input_megapixels" in text, text


def test_the_bomb_is_what_it_claims(bomb):
    from PIL import Image

    from modules.uploads import image_header_size

    with pytest.raises(Image.DecompressionBombError):  # PIL will not even open it...
        Image.open(bomb)
    assert image_header_size(bomb) == (SIDE, SIDE)  # ...Easel reads its size from the header
    assert image_header_size(bomb.read_bytes()) == (SIDE, SIDE)


def test_api_refuses_the_bomb_from_its_header(site, api_auth, bomb):
    encoded = base64.b64encode(bomb.read_bytes()).decode()
    requests = {
        "/img2img": {"init_images": [encoded], "width": 64, "height": 64, "steps": 2},
        "/png-info": {"image": encoded},
        "/extra-single-image": {"image": "data:image/png;base64," + encoded, "upscaling_resize": 1},
        "/extra-batch-images": {"imageList": [{"data": encoded, "name": "b.png"}], "upscaling_resize": 1},
    }
    for route, body in requests.items():
        answer = httpx.post(site.url + API + route, json=body, auth=api_auth, timeout=60)
        assert answer.status_code == 422, (route, answer.status_code, answer.text[:300])
        assert_refused_for_size(answer.json()["detail"])


def test_a_body_over_the_limit_gets_413_before_it_is_read(site, api_auth):
    body = b'{"image": "' + b"A" * (LIMIT_BYTES + 1000) + b'"}'
    answer = httpx.post(site.url + API + "/png-info", content=body, auth=api_auth,
                        headers={"Content-Type": "application/json"}, timeout=120)
    assert answer.status_code == 413
    detail = answer.json()["detail"]
    assert "too large" in detail and "50 MB" in detail and "--max-upload-mb" in detail


def test_a_chunked_body_over_the_limit_gets_413(site, api_auth):
    piece = b"A" * 1_000_000

    def chunks():
        yield b'{"image": "'
        for _ in range(LIMIT_BYTES // len(piece) + 2):
            yield piece
        yield b'"}'

    answer = httpx.post(site.url + API + "/png-info", content=chunks(), auth=api_auth,
                        headers={"Content-Type": "application/json"}, timeout=120)
    assert answer.status_code == 413
    assert "--max-upload-mb" in answer.json()["detail"]


def test_a_body_under_the_limit_still_works(site, api_auth):
    import io

    from PIL import Image, PngImagePlugin

    infotext = "a lighthouse at dusk\nNegative prompt: fog\nSteps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 4242, Size: 16x16"
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", infotext)
    chunks.add_text("Comment", "made by hand")
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, format="PNG", pnginfo=chunks)
    answer = httpx.post(site.url + API + "/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}, auth=api_auth)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["info"] == infotext and result["items"] == {"Comment": "made by hand"}
    parameters = result["parameters"]
    assert (parameters["Prompt"], parameters["Negative prompt"]) == ("a lighthouse at dusk", "fog")
    # as A1111's /png-info: every value a string, the defaults it fills in for keys the text lacks
    assert {key: parameters[key] for key in ("Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2")} == {
        "Steps": "12", "Sampler": "Euler a", "CFG scale": "6.5", "Seed": "4242", "Size-1": "16", "Size-2": "16"}
    assert parameters["Clip skip"] == "1" and parameters["Schedule type"] == "Automatic"


def test_a_page_upload_over_the_limit_gets_413(site):
    cookies = site.login_cookies()
    big = b"\0" * (LIMIT_BYTES + 1000)
    answer = httpx.post(site.url + "/gradio_api/upload", files={"files": ("big.png", big, "image/png")}, cookies=cookies, timeout=120)
    assert answer.status_code == 413
    assert "--max-upload-mb" in answer.text


def page_function(site, elem_id: str, name: str, position: int = 0) -> str:
    """The api name of the page event `name` whose input number `position` is the component `elem_id`."""
    from gradio.routes import App
    from starlette.routing import Mount

    page = next(r.app for r in site.app.routes if isinstance(r, Mount) and isinstance(r.app, App))
    for fn in page.get_blocks().fns.values():
        if fn.name == name and len(fn.inputs) > position and getattr(fn.inputs[position], "elem_id", None) == elem_id:
            return "/" + fn.api_name
    raise AssertionError(f"no event {name} on {elem_id}")


@pytest.fixture(scope="module")
def page_client(site):
    from gradio_client import Client

    return Client(site.url + "/", auth=(UI_USER, UI_PASSWORD), verbose=False)


@pytest.mark.parametrize("elem_id", ["img2img-image", "img2img-inpaint-upload-image"])
def test_img2img_picture_refuses_the_bomb(site, page_client, bomb, elem_id):
    """The picture's change event (the first thing that decodes an upload) through the page's
    own HTTP routes: upload, then the event. Gradio decodes img2img pictures itself; PIL's bomb
    check refuses this one and the page shows its sentence (show_error)."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as refused:
        page_client.predict(handle_file(str(bomb)), api_name=page_function(site, elem_id, "image_size"))
    assert "400000000 pixels" in str(refused.value) and "exceeds limit" in str(refused.value), str(refused.value)


def test_img2img_picture_under_the_limit_still_works(site, page_client, tmp_path):
    """The picture is decoded and its size kept (a gr.State, which the client does not return): the
    "Resize by" line, which reads that state in the same session, shows it."""
    from gradio_client import handle_file
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (24, 16), (9, 9, 9)).save(small)
    page_client.predict(handle_file(str(small)), api_name=page_function(site, "img2img-image", "image_size"))
    line = page_client.predict(4.0, api_name=page_function(site, "img2img-scale", "line", position=1))
    assert 'from <span class="resolution">24x16</span> to <span class="resolution">96x64</span>' in line, line


def test_png_info_tab_refuses_the_bomb_with_a_sentence(site, page_client, bomb):
    result = page_client.predict(handle_file_of(bomb), api_name=page_function(site, "png-info-file", "on_file"))
    shown, message = result[0], result[1]
    assert shown is None and "Error" in message
    assert_refused_for_size(message)


def handle_file_of(path: Path):
    from gradio_client import handle_file

    return handle_file(str(path))
