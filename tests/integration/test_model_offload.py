"""Model CPU offload (the "offload" memory plan): weights stay in RAM and the engine puts one
component at a time, text encoder, UNet or VAE, on the compute device right before it runs.

CI has no GPU, so the placer is tested two ways: against the meta device (a real second device:
while a module is there its parameters are meta tensors, so a forward that ran anywhere else would
fail), and through the real engine with compute = CPU, where forward pre-hooks on the real modules
check that every text-encoder, UNet and VAE call runs while its component is the placed one, and
the pictures equal the plain path's bit for bit. LoRA patching goes to the RAM tensors and is
restored bitwise under offload too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.generation.img2img import img2img
from modules.generation.request import GenerationRequest, Img2ImgRequest
from modules.generation.txt2img import txt2img
from modules.lora.files import LoraLibrary
from modules.lora.patch import LoraPatcher, LoraUse
from modules.device.memory_plan import ComponentPlacer
from modules.device.optimizations import Optimizations
from tools.make_test_loras import write_test_lora
from tools.make_test_models import write_test_checkpoint

COMPONENTS = ("text_encoder", "unet", "vae")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("offload")
    write_test_checkpoint(root / "Stable-diffusion" / "sd1.safetensors", "sd1", "tiny", seed=21)
    write_test_lora(root / "Lora" / "a.safetensors", "sd1", "tiny", seed=22, rank=4)
    return root


def _manager(root, tokenizer_cache, options: Optimizations | None) -> ModelManager:
    registry = ModelRegistry([root / "Stable-diffusion"], [], HashCache(root / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=1, optimizations=options))


@pytest.fixture(scope="module")
def plain(root, tokenizer_cache):
    return _manager(root, tokenizer_cache, None).switch_checkpoint("sd1")


@pytest.fixture(scope="module")
def offloaded(root, tokenizer_cache):
    manager = _manager(root, tokenizer_cache, Optimizations(offload=True, memory_plan="offload"))
    return manager.switch_checkpoint("sd1")


class ResidencyLog:
    """Forward pre-hooks on the real modules: which component ran, and whether it was the placed one."""

    def __init__(self, model):
        self.model = model
        self.calls: list[str] = []
        self.misplaced: list[str] = []
        self.handles = []
        for name in COMPONENTS:
            component = model.modules[name]
            targets = [component.encoder, component.decoder] if name == "vae" else [component]
            for target in targets:
                self.handles.append(target.register_forward_pre_hook(self._hook(name, component)))

    def _hook(self, name, component):
        def check(module, args):
            if not self.calls or self.calls[-1] != name:
                self.calls.append(name)
            if not any(component is placed for placed in self.model.placer.resident):
                self.misplaced.append(name)
        return check

    def close(self):
        for handle in self.handles:
            handle.remove()


def _request(**changes) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blurry", sampler_name="Euler a", steps=3, width=64, height=64, seed=5)
    return GenerationRequest(**{**base, **changes})


def _pixels(images) -> np.ndarray:
    return np.stack([np.asarray(image) for image in images])


def test_offload_plan_builds_the_modules_in_ram_with_a_placer(offloaded, plain):
    assert offloaded.placer is not None and plain.placer is None
    assert offloaded.placer.compute == offloaded.device
    for name in COMPONENTS:
        assert next(offloaded.modules[name].parameters()).device.type == "cpu"


def test_each_component_runs_while_it_is_the_one_on_the_device_and_the_picture_is_unchanged(offloaded, plain):
    log = ResidencyLog(offloaded)
    try:
        moves = offloaded.placer.moves
        ours = txt2img(offloaded, _request(batch_size=2))
        assert log.misplaced == []
        assert log.calls == ["text_encoder", "unet", "vae"]
        assert offloaded.placer.moves - moves == 3
        assert offloaded.placer.resident == (offloaded.modules["vae"],)
        # the same prompt again: its encoding is cached, so only the UNet and the VAE move
        log.calls.clear()
        moves = offloaded.placer.moves
        txt2img(offloaded, _request(seed=6))
        assert log.calls == ["unet", "vae"] and offloaded.placer.moves - moves == 2
        # inpainting: the VAE encodes the picture, the prompt is encoded, the UNet samples, the VAE decodes
        picture = Image.new("RGB", (64, 64), (200, 40, 40))
        mask = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
        log.calls.clear()
        inpaint = dict(prompt="a blue square", init_images=[picture], mask=mask, steps=3, width=64, height=64, seed=8, denoising_strength=0.7)
        offloaded_inpaint = img2img(offloaded, Img2ImgRequest(**inpaint))
        assert log.misplaced == [] and log.calls == ["vae", "text_encoder", "unet", "vae"]
    finally:
        log.close()
    assert np.array_equal(_pixels(ours.images), _pixels(txt2img(plain, _request(batch_size=2)).images))
    assert np.array_equal(_pixels(offloaded_inpaint.images), _pixels(img2img(plain, Img2ImgRequest(**inpaint)).images))


def test_lora_patches_the_ram_weights_under_offload_and_restores_them_bitwise(offloaded, plain, root):
    library = LoraLibrary(root / "Lora")
    library.refresh()
    use = [LoraUse(library.find("a"), 1.0, 1.0)]
    unet = offloaded.modules["unet"]
    before = {name: (p.data_ptr(), p.detach().clone()) for name, p in unet.named_parameters()}
    txt2img(offloaded, _request())  # leaves the VAE placed; the next job's patch must still reach RAM
    offloaded.placer.bring(unet)  # and with the UNet placed too
    patcher, plain_patcher = LoraPatcher(), LoraPatcher()
    with patcher.applied(offloaded, use), plain_patcher.applied(plain, use):
        assert offloaded.placer.resident == ()  # the patch sent the placed module home first
        ours = txt2img(offloaded, _request())
        theirs = txt2img(plain, _request())
    assert np.array_equal(_pixels(ours.images), _pixels(theirs.images))
    assert not np.array_equal(_pixels(ours.images), _pixels(txt2img(offloaded, _request()).images))  # the LoRA did change it
    offloaded.placer.evict()
    for name, p in unet.named_parameters():
        pointer, value = before[name]
        assert p.data_ptr() == pointer and torch.equal(p.detach(), value), name


def test_the_placer_moves_modules_to_another_device_and_back_to_the_same_ram_tensors():
    # the meta device holds no data: a module "on" it is really off the CPU, and back home it must
    # have its own RAM tensors again (no copies: the same storage, the same values)
    torch.manual_seed(0)
    first, second = torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.LayerNorm(2))
    ram = {id(p): (p.data_ptr(), p.detach().clone()) for module in (first, second) for p in module.parameters()}
    placer = ComponentPlacer(torch.device("meta"))
    placer.bring(first)
    assert all(p.device.type == "meta" for p in first.parameters())
    assert all(p.device.type == "cpu" for p in second.parameters())
    assert first(torch.zeros(1, 4, device="meta")).device.type == "meta"
    placer.bring(first)  # already there: nothing moves
    assert placer.moves == 1
    placer.bring(second)
    assert all(p.device.type == "cpu" for p in first.parameters())
    assert all(p.device.type == "meta" for p in second.parameters())
    placer.evict()
    assert placer.resident == () and placer.moves == 2
    for module in (first, second):
        for p in module.parameters():
            pointer, value = ram[id(p)]
            assert p.device.type == "cpu" and p.data_ptr() == pointer and torch.equal(p.detach(), value)


def test_a_module_converted_while_placed_is_copied_home_in_its_new_dtype():
    # the fp32 VAE retry converts the placed VAE; that change must survive going home
    vae_like = torch.nn.Linear(3, 3).to(torch.float16)
    placer = ComponentPlacer(torch.device("cpu"))
    placer.bring(vae_like)
    vae_like.to(torch.float32)
    placer.evict()
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in vae_like.parameters())
