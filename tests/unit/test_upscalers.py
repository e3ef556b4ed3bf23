"""Model upscalers: every architecture and key layout read from real files, A1111's names and
upscale loop, tiling without seams, interrupting between tiles, and files that must be refused."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import ModelLoadError, UnsafeCheckpointError
from modules.upscalers import torchvision_stand_in as stand_in
from modules.upscalers.catalog import UnknownUpscalerError, UpscalerCatalog
from modules.upscalers.model_files import load_model, read_weights
from modules.upscalers.progress import TileProgress, describe_tiles
from modules.upscalers.service import TileSettings, Upscalers, planned_passes
from modules.upscalers.tiling import run_tiled, tile_starts
from tests import upscaler_models as models

FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "ScuNET")


def picture(width: int = 40, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def catalog_at(root: Path) -> UpscalerCatalog:
    return UpscalerCatalog({name: root / name for name in FOLDERS})


def upscalers_at(root: Path, tile: int = 0, overlap: int = 8) -> Upscalers:
    return Upscalers(catalog_at(root), torch.device("cpu"), lambda: TileSettings(tile, overlap))


@pytest.mark.parametrize("file_name, folder, make, wrap, architecture, scale", models.LAYOUTS, ids=[row[0] for row in models.LAYOUTS])
def test_each_architecture_and_key_layout_loads_and_upscales(tmp_path, file_name, folder, make, wrap, architecture, scale):
    path = models.write(tmp_path / folder / file_name, make(), wrap)
    descriptor = load_model(path)
    assert (descriptor.architecture.id, descriptor.scale) == (architecture, scale)
    assert descriptor.dtype == torch.float32 and descriptor.device.type == "cpu" and not descriptor.model.training

    upscalers = upscalers_at(tmp_path)
    entry = next(e for e in upscalers.catalog.entries() if e.path == path)
    result = upscalers.upscale(picture(), entry.name, scale)
    assert result.mode == "RGB" and result.size == (40 * scale // 8 * 8, 24 * scale // 8 * 8)
    assert np.asarray(result).std() > 0  # a picture, not a blank


def test_old_and_new_esrgan_keys_give_the_same_picture(tmp_path):
    weights = models.esrgan(4, seed=3)
    models.write(tmp_path / "ESRGAN" / "old.pth", weights)
    models.write(tmp_path / "ESRGAN" / "new.pth", models.to_rrdbnet_keys(weights), "params_ema")
    models.write(tmp_path / "ESRGAN" / "new-st.safetensors", models.to_rrdbnet_keys(weights))
    upscalers = upscalers_at(tmp_path)
    old, new, safetensors = (np.asarray(upscalers.upscale(picture(), name, 4)) for name in ("old", "new", "new-st"))
    assert np.array_equal(old, new) and np.array_equal(old, safetensors)


def test_names_are_a1111s(tmp_path):
    for folder, name in [("RealESRGAN", "RealESRGAN_x4plus.pth"), ("RealESRGAN", "RealESRGAN_x2plus.pth"),
                         ("RealESRGAN", "RealESRGAN_x4plus_anime_6B.pth"), ("DAT", "DAT_x3.pth"), ("SwinIR", "SwinIR_4x.pth"),
                         ("ScuNET", "scunet_color_real_gan.pth"), ("ESRGAN", "4x-UltraSharp.pth"), ("ESRGAN", "4x_foolhardy_Remacri.safetensors"),
                         ("HAT", "Real_HAT_GAN_SRx2.pth"), ("ESRGAN", "notes.txt")]:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"x")
    entries = catalog_at(tmp_path).entries()
    assert [e.name for e in entries[:3]] == ["None", "Lanczos", "Nearest"]
    listed = {e.name: e.scale for e in entries[3:]}
    assert listed == {"R-ESRGAN 4x+": 4, "R-ESRGAN 2x+": 2, "R-ESRGAN 4x+ Anime6B": 4, "DAT x3": 3, "SwinIR 4x": 4, "ScuNET GAN": 1,
                      "4x-UltraSharp": 4, "4x_foolhardy_Remacri": 4, "Real_HAT_GAN_SRx2": 2}
    assert [e.name for e in entries[3:]] == sorted(listed, key=str.lower)


def test_lookup_ignores_case_prefers_safetensors_and_names_what_is_there(tmp_path):
    models.write(tmp_path / "ESRGAN" / "4x-Mine.pth", models.compact(4))
    models.write(tmp_path / "ESRGAN" / "4x-Mine.safetensors", models.compact(4))
    catalog = catalog_at(tmp_path)
    assert catalog.find("4X-MINE").path == tmp_path / "ESRGAN" / "4x-Mine.safetensors"
    with pytest.raises(UnknownUpscalerError) as raised:
        catalog.find("4x-UltraSharp")
    message = str(raised.value)
    assert "No upscaler named '4x-UltraSharp' is installed" in message and "4x-Mine" in message and "models/ESRGAN" in message


def test_a_file_dropped_in_is_listed_without_a_restart(tmp_path):
    catalog = catalog_at(tmp_path)
    assert catalog.names() == ["None", "Lanczos", "Nearest"]
    models.write(tmp_path / "ESRGAN" / "late.safetensors", models.compact(2))
    assert catalog.names() == ["None", "Lanczos", "Nearest", "late"]


@pytest.mark.parametrize("model_scale, asked, passes", [(2, 4, 2), (2, 3, 2), (4, 2, 1), (4, 4, 1), (2, 8, 3), (1, 2, 1)])
def test_the_model_runs_until_the_picture_covers_the_target_then_lanczos(tmp_path, model_scale, asked, passes):
    models.write(tmp_path / "ESRGAN" / "m.safetensors", models.compact(model_scale))
    upscalers = upscalers_at(tmp_path)
    seen: list[TileProgress] = []
    result = upscalers.upscale(picture(), "m", asked, seen.append)
    assert result.size == (40 * asked // 8 * 8, 24 * asked // 8 * 8)
    assert max(event.step for event in seen) == passes and {event.passes for event in seen} == {passes}
    assert planned_passes((40, 24), result.size, model_scale) == passes


def test_built_in_resizers_follow_a1111(tmp_path):
    upscalers = upscalers_at(tmp_path)
    source = picture(37, 21)
    assert upscalers.upscale(source, "Lanczos", 2).size == (72, 40)  # (37*2)//8*8, (21*2)//8*8
    assert np.array_equal(np.asarray(upscalers.upscale(source, "None", 2)), np.asarray(source.resize((72, 40), Image.Resampling.LANCZOS)))
    nearest = upscalers.upscale(picture(8, 8), "Nearest", 2)
    assert np.array_equal(np.asarray(nearest), np.asarray(picture(8, 8).resize((16, 16), Image.Resampling.NEAREST)))


def test_tiles_cover_the_picture_and_a_pointwise_model_is_exact():
    assert tile_starts(100, 40, 8) == [0, 32, 60] and tile_starts(30, 40, 8) == [0]
    image = torch.rand(1, 3, 50, 70)

    def nearest_2x(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    counted: list[tuple[int, int]] = []
    tiled = run_tiled(nearest_2x, image, 2, 16, 4, lambda done, total: counted.append((done, total)))
    assert torch.allclose(tiled, nearest_2x(image), atol=1e-6)
    assert counted[-1] == (len(counted), len(tile_starts(50, 16, 4)) * len(tile_starts(70, 16, 4)))


@pytest.mark.parametrize("make, max_tolerance, mean_tolerance", [
    (lambda: models.compact(2), 3, 0.15),  # 4 convs see 4 px: past the overlap's fade-in tiles agree; measured max 2, mean 0.09
    (lambda: models.esrgan(2), 40, 1.0),  # 16 convs see further than 8 px: edges of tiles differ a little, blended
], ids=["compact", "esrgan"])
def test_tiled_and_whole_picture_agree(tmp_path, make, max_tolerance, mean_tolerance):
    models.write(tmp_path / "ESRGAN" / "m.safetensors", make())
    whole = np.asarray(upscalers_at(tmp_path, tile=0).upscale(picture(96, 80), "m", 2)).astype(int)
    tiled = np.asarray(upscalers_at(tmp_path, tile=32, overlap=8).upscale(picture(96, 80), "m", 2)).astype(int)
    difference = np.abs(whole - tiled)
    assert difference.max() <= max_tolerance and difference.mean() <= mean_tolerance, (difference.max(), difference.mean())


def test_an_interrupt_stops_between_tiles(tmp_path):
    models.write(tmp_path / "ESRGAN" / "m.safetensors", models.compact(2))
    upscalers = upscalers_at(tmp_path, tile=16, overlap=4)
    seen: list[TileProgress] = []

    class Stop(Exception):
        pass

    def stop_at_third(progress: TileProgress) -> None:
        seen.append(progress)
        if progress.tile == 3:
            raise Stop()
    with pytest.raises(Stop):
        upscalers.upscale(picture(64, 64), "m", 2, stop_at_third)
    assert [p.tile for p in seen] == [1, 2, 3] and seen[0].tiles == 25
    assert describe_tiles(seen[2]) == "Upscaling with m: tile 3 of 25"


def test_models_are_kept_for_the_next_job(tmp_path):
    models.write(tmp_path / "ESRGAN" / "a.safetensors", models.compact(2))
    upscalers = upscalers_at(tmp_path)
    first = upscalers.model(upscalers.catalog.find("a"))
    assert upscalers.model(upscalers.catalog.find("a")) is first


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ESRGAN" / "evil.pth"
    path.parent.mkdir()
    torch.save({"params_ema": models.compact(2), "x": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth was refused: it is a pickle that would run code"):
        upscalers_at(tmp_path).upscale(picture(), "evil", 2)
    assert not marker.exists()


def test_torchscript_is_refused(tmp_path):
    path = tmp_path / "ESRGAN" / "scripted.pt"
    path.parent.mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 3, 3)), str(path))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        read_weights(path)


@pytest.mark.parametrize("case", ["truncated-safetensors", "truncated-pth", "not-a-model", "a-list", "empty-file"])
def test_broken_files_are_a_sentence(tmp_path, case):
    folder = tmp_path / "ESRGAN"
    if case.startswith("truncated"):
        suffix = ".safetensors" if case.endswith("safetensors") else ".pth"
        full = models.write(folder / f"full{suffix}", models.esrgan(2))
        path = folder / f"broken{suffix}"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        expected = "truncated"
    elif case == "not-a-model":
        path = models.write(folder / "broken.safetensors", {"something.weight": torch.zeros(3, 3)})
        expected = "not an upscaler Easel can read"
    elif case == "a-list":
        path = folder / "broken.pth"
        folder.mkdir()
        torch.save([torch.zeros(2)], path)
        expected = "holds no weights"
    else:
        folder.mkdir()
        path = folder / "broken.pth"
        path.write_bytes(b"")
        expected = "corrupt or truncated"
    with pytest.raises(ModelLoadError, match=expected):
        upscalers_at(tmp_path).upscale(picture(), "broken", 2)


def test_a_face_restoration_model_is_not_taken_for_an_upscaler(tmp_path):
    weights = {"conv_first.weight": torch.zeros(1)}  # nothing spandrel knows
    path = models.write(tmp_path / "ESRGAN" / "x.safetensors", weights)
    with pytest.raises(ModelLoadError, match="not an upscaler"):
        load_model(path)


def test_the_torchvision_stand_in_rotates_and_normalises_as_torchvision():
    image = torch.rand(2, 3, 16, 16)
    assert torch.allclose(stand_in.rotate(image, 0.0, stand_in.InterpolationMode.BILINEAR, fill=0), image, atol=1e-5)
    quarter = stand_in.rotate(image, 90.0, stand_in.InterpolationMode.NEAREST, fill=0)
    assert torch.equal(quarter, torch.rot90(image, 1, dims=(-2, -1)))  # counter-clockwise, as torchvision
    normalised = stand_in.normalize(image, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert torch.allclose(normalised, image * 2 - 1)
    turned = stand_in.rotate(torch.ones(1, 1, 20, 20), 45.0, stand_in.InterpolationMode.BILINEAR, fill=[0.25])
    assert torch.isclose(turned[0, 0, 0, 0], torch.tensor(0.25)) and torch.isclose(turned[0, 0, 10, 10], torch.tensor(1.0))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="compared with torchvision where it is installed (CUDA torch)")
def test_the_stand_in_matches_torchvision():
    import torchvision.transforms.functional as real

    image = torch.rand(2, 3, 24, 40)
    for angle in (33.0, -71.5):
        for mode in ("NEAREST", "BILINEAR"):
            ours = stand_in.rotate(image, angle, getattr(stand_in.InterpolationMode, mode), fill=0)
            theirs = real.rotate(image, angle, getattr(real.InterpolationMode, mode), fill=0)
            assert torch.allclose(ours, theirs, atol=1e-4)


def test_spandrel_is_imported_without_leaving_a_torchvision_behind():
    from modules.upscalers.spandrel_import import import_spandrel

    had_torchvision = importlib.util.find_spec("torchvision") is not None
    assert import_spandrel().__name__ == "spandrel"
    assert ("torchvision" in sys.modules) == had_torchvision or had_torchvision
    if not had_torchvision:
        assert importlib.util.find_spec("torchvision") is None  # diffusers and transformers still see none
