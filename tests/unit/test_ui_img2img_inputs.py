"""The UI's conversions that need no browser: editor values -> picture and mask, "Resize by" sizes,
infotext values -> what the img2img and hires controls show, component values -> typed request."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.errors import UserError
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.ui.img2img_inputs import (
    inpaint_source, painted_mask, resize_by_html, scaled_size, sketch_source, source_picture, upload_source,
)


def layer(size: tuple[int, int], box: tuple[int, int, int, int] | None, alpha: int = 255) -> Image.Image:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    if box is not None:
        image.paste((255, 255, 255, alpha), box)
    return image


def test_painted_mask_is_white_wherever_any_layer_has_paint():
    mask = painted_mask([layer((32, 32), (0, 0, 4, 4)), layer((32, 32), (10, 10, 12, 20), alpha=1)], (32, 32))
    values = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (32, 32)
    assert set(np.unique(values)) == {0, 255}
    assert values[:4, :4].all() and values[10:20, 10:12].all()
    assert values.sum() == 255 * (16 + 20)


def test_painted_mask_of_another_size_is_scaled_to_the_picture():
    mask = painted_mask([layer((16, 16), (0, 0, 8, 16))], (32, 32))
    values = np.asarray(mask)
    assert values[:, :16].all() and not values[:, 16:].any()


def test_nothing_painted_is_an_all_black_mask():
    background = Image.new("RGBA", (24, 16), (10, 20, 30, 255))
    picture = inpaint_source({"background": background, "layers": [], "composite": background})
    assert picture.image is background
    assert picture.mask.size == (24, 16) and picture.mask.getbbox() is None


def test_inpaint_without_a_picture_has_none():
    assert inpaint_source(None).image is None
    assert inpaint_source({"background": None, "layers": [], "composite": None}).image is None


def test_sketch_uses_the_composite_with_the_strokes():
    background, composite = Image.new("RGBA", (8, 8), "red"), Image.new("RGBA", (8, 8), "blue")
    assert sketch_source({"background": background, "layers": [], "composite": composite}).image is composite
    assert sketch_source({"background": background, "layers": [], "composite": None}).image is background
    assert sketch_source(None).image is None


def test_inpaint_upload_needs_a_mask_with_its_picture():
    picture, mask = Image.new("RGB", (8, 8)), Image.new("L", (8, 8), 255)
    assert upload_source(picture, mask).mask is mask
    assert upload_source(None, None).image is None
    with pytest.raises(UserError, match="needs a mask"):
        upload_source(picture, None)


def test_source_picture_reads_the_chosen_sub_tab():
    picture = Image.new("RGB", (8, 8))
    values = {"img2img": picture, "sketch": None, "inpaint": None, "inpaint-upload": (None, None)}
    assert source_picture("img2img", values).image is picture
    assert source_picture("sketch", values).image is None


@pytest.mark.parametrize(("size", "scale", "expected"), [
    ((512, 512), 2.0, (1024, 1024)),
    ((100, 60), 1.0, (96, 64)),  # to the nearest multiple of 8, at least 64
    ((128, 128), 0.05, (64, 64)),
    ((1000, 700), 0.5, (496, 352)),
    ((3000, 3000), 1.0, (2048, 2048)),  # the sliders' largest
])
def test_resize_by_rounds_to_multiples_of_8(size, scale, expected):
    assert scaled_size(size, scale) == expected


def test_resize_by_line():
    line = resize_by_html((128, 96), 2)
    assert "from <span class=\"resolution\">128x96</span> to <span class=\"resolution\">256x192</span>" in line
    assert "No image yet" in resize_by_html(None, 1.0)


def test_infotext_values_become_what_the_img2img_controls_show():
    from modules.ui.img2img import INDEX_RADIOS, display_values

    shown = display_values({"inpainting_fill": 2, "inpaint_full_res": True, "inpainting_mask_invert": 1, "seed": 5, "width": 1}, (100, 60))
    # The radios' values are A1111's indexes; their labels (translated on the page) are INDEX_RADIOS'.
    assert (shown["inpainting_fill"], shown["inpaint_full_res"], shown["inpainting_mask_invert"]) == (2, 1, 1)
    assert INDEX_RADIOS["inpainting_fill"][2] == "latent noise"
    assert INDEX_RADIOS["inpaint_full_res"][1] == "Only masked"
    assert INDEX_RADIOS["inpainting_mask_invert"][1] == "Inpaint not masked"
    assert (shown["width"], shown["height"], shown["seed"]) == (96, 64, 5)
    assert "inpainting_fill" not in display_values({"inpainting_fill": 9}, None)


def test_hires_size_line_and_request_values():
    from modules.ui.hires_fix import hires_display_values, hires_request_values, size_line_html

    assert size_line_html(False, 512, 512, 2, 0, 0) == ""
    assert "from <span class=\"resolution\">512x512</span> to <span class=\"resolution\">1024x1024</span>" in size_line_html(True, 512, 512, 2, 0, 0)
    assert "to <span class=\"resolution\">1024x768</span>" in size_line_html(True, 512, 384, 2, 1024, 0)
    values = hires_request_values({"enable_hr": True, "hr_sampler_name": "Use same sampler", "hr_scheduler": "Karras", "denoising_strength": 0.5})
    assert values == {"enable_hr": True, "hr_sampler_name": None, "hr_scheduler": "Karras", "denoising_strength": 0.5}
    assert hires_request_values({"enable_hr": False, "denoising_strength": 0.7})["denoising_strength"] is None
    assert hires_display_values({"hr_sampler_name": None, "hr_scheduler": None}) == {"hr_sampler_name": "Use same sampler", "hr_scheduler": "Use same scheduler"}


class Box:
    def __init__(self, label: str):
        self.label = label


def test_component_values_are_typed_as_the_request_declares():
    from modules.ui.generation_run import field_values

    fields = {name: Box(label) for name, label in (
        ("steps", "Sampling steps"), ("cfg_scale", "CFG Scale"), ("inpaint_full_res", "Inpaint area"),
        ("styles", "Styles"), ("denoising_strength", "Denoising strength"), ("prompt", "Prompt"),
    )}
    values = {fields["steps"]: 20.0, fields["cfg_scale"]: 7, fields["inpaint_full_res"]: 1, fields["styles"]: None,
              fields["denoising_strength"]: 0.5, fields["prompt"]: "a cat"}
    data = field_values(values, fields, Img2ImgRequest)
    assert data == {"steps": 20, "cfg_scale": 7.0, "inpaint_full_res": True, "styles": [], "denoising_strength": 0.5, "prompt": "a cat"}
    assert type(data["steps"]) is int and type(data["cfg_scale"]) is float
    with pytest.raises(UserError, match="Sampling steps must be a whole number"):
        field_values({**values, fields["steps"]: 2.5}, fields, GenerationRequest)
    with pytest.raises(UserError, match="CFG Scale is empty"):
        field_values({**values, fields["cfg_scale"]: None}, fields, GenerationRequest)
