"""Hot-swapping checkpoints and VAEs: exact weights, in-place reuse, failures that change nothing,
a lock against running jobs, and memory that does not grow."""

from __future__ import annotations

import gc
import threading
import time

import psutil
import pytest
import torch

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.manager import ManagerOptions, ModelManager
from modules.checkpoints.registry import ModelRegistry
from modules.errors import ModelLoadError, ModelNotFoundError
from tools.make_test_models import write_test_checkpoint, write_test_vae


def _manager(tmp_path, tokenizer_cache, cache_size=2) -> ModelManager:
    registry = ModelRegistry([tmp_path / "ckpt"], [tmp_path / "vae"], HashCache(tmp_path / "cache.json"))
    return ModelManager(registry, torch.device("cpu"), torch.float32, tokenizer_cache, ManagerOptions(checkpoint_cache_size=cache_size))


def _params(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(module, tensors) -> bool:
    state = module.state_dict()
    return state.keys() == tensors.keys() and all(torch.equal(state[k], tensors[k]) for k in tensors)


@pytest.fixture
def two_models(tmp_path):
    _, a = write_test_checkpoint(tmp_path / "ckpt" / "a.safetensors", "sd1", "tiny", seed=1)
    _, b = write_test_checkpoint(tmp_path / "ckpt" / "b.safetensors", "sd1", "tiny", seed=2)
    return a, b


def test_a_b_a_gives_identical_weights_and_reuses_modules(tmp_path, tokenizer_cache, two_models):
    a, b = two_models
    manager = _manager(tmp_path, tokenizer_cache)
    loaded = manager.switch_checkpoint("a")
    unet = loaded.unet
    assert _equal(unet, a["unet"]) and _equal(loaded.modules["text_encoder"], a["text_encoder"])
    loaded = manager.switch_checkpoint("b.safetensors")
    assert loaded.unet is unet  # same architecture: weights swapped in place
    assert _equal(unet, b["unet"]) and _equal(loaded.vae_module, b["vae"])
    loaded = manager.switch_checkpoint("a")
    assert "read" not in loaded.timings  # from the RAM cache
    for name in ("unet", "vae", "text_encoder"):
        assert _equal(loaded.modules[name], a[name]), name
    assert manager.registry.title(loaded.checkpoint).startswith("a.safetensors [")


def test_other_architecture_builds_new_modules(tmp_path, tokenizer_cache, two_models):
    write_test_checkpoint(tmp_path / "ckpt" / "xl.safetensors", "sdxl-base", "tiny", seed=3)
    manager = _manager(tmp_path, tokenizer_cache)
    first = manager.switch_checkpoint("a").unet
    loaded = manager.switch_checkpoint("xl")
    assert loaded.unet is not first
    assert loaded.spec.family.name == "sdxl-base"
    assert set(loaded.tokenizers) == {"tokenizer", "tokenizer_2"}
    assert loaded.tokenizers["tokenizer_2"].pad_token == "!"


def test_vae_swap_changes_only_the_vae(tmp_path, tokenizer_cache, two_models):
    a, _ = two_models
    vae = write_test_vae(tmp_path / "vae" / "external.safetensors", seed=50)
    manager = _manager(tmp_path, tokenizer_cache)
    loaded = manager.switch_checkpoint("a")
    before = {name: _params(m) for name, m in loaded.modules.items()}
    loaded = manager.switch_vae("external.safetensors")
    assert loaded.vae.name == "external.safetensors"
    assert _equal(loaded.vae_module, vae)
    for name in ("unet", "text_encoder"):
        assert _equal(loaded.modules[name], before[name])
    loaded = manager.switch_vae("None")
    assert loaded.vae is None and _equal(loaded.vae_module, a["vae"])
    with pytest.raises(ModelNotFoundError):
        manager.switch_vae("missing.safetensors")
    assert _equal(loaded.vae_module, a["vae"])


def test_automatic_vae_follows_the_checkpoint(tmp_path, tokenizer_cache, two_models):
    _, b = two_models
    vae = write_test_vae(tmp_path / "ckpt" / "a.vae.safetensors", seed=51)
    manager = _manager(tmp_path, tokenizer_cache)
    manager.registry.refresh()
    loaded = manager.switch_checkpoint("a")
    assert loaded.vae.name == "a.vae.safetensors" and _equal(loaded.vae_module, vae)
    loaded = manager.switch_checkpoint("b")
    assert loaded.vae is None and _equal(loaded.vae_module, b["vae"])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_failed_switch_keeps_the_previous_model_working(tmp_path, tokenizer_cache, two_models, damage):
    a, _ = two_models
    manager = _manager(tmp_path, tokenizer_cache)
    manager.switch_checkpoint("a")
    path = tmp_path / "ckpt" / "b.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 5000)
    else:
        path.unlink()
    with pytest.raises(ModelLoadError):
        manager.switch_checkpoint("b")
    with manager.use() as loaded:
        assert loaded.checkpoint.name == "a.safetensors"
        assert _equal(loaded.unet, a["unet"])
        x = torch.randn(1, 4, 8, 8)
        context = torch.randn(1, 77, loaded.unet.config.cross_attention_dim)
        out = loaded.unet(x, 10, encoder_hidden_states=context).sample
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_switch_waits_for_a_running_job(tmp_path, tokenizer_cache, two_models):
    manager = _manager(tmp_path, tokenizer_cache)
    manager.switch_checkpoint("a")
    events = []
    started = threading.Event()

    def job():
        with manager.use() as loaded:
            started.set()
            time.sleep(0.3)
            events.append(("job done", loaded.checkpoint.stem))

    thread = threading.Thread(target=job)
    thread.start()
    started.wait()
    manager.switch_checkpoint("b")
    events.append(("switched", manager.loaded.checkpoint.stem))
    thread.join()
    assert events == [("job done", "a"), ("switched", "b")]


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.parametrize("cache_size", [1, 2])
def test_twenty_switches_do_not_grow_memory(tmp_path, tokenizer_cache, cache_size):
    write_test_checkpoint(tmp_path / "ckpt" / "m1.safetensors", "sd1", "medium", seed=1)
    write_test_checkpoint(tmp_path / "ckpt" / "m2.safetensors", "sd1", "medium", seed=2)
    manager = _manager(tmp_path, tokenizer_cache, cache_size=cache_size)
    manager.switch_checkpoint("m1")
    size = manager.loaded.weights.nbytes
    assert size > 20_000_000  # big enough that a leak of one copy would show
    manager.switch_checkpoint("m2")
    manager.switch_checkpoint("m1")
    baseline = _rss()
    for i in range(20):
        manager.switch_checkpoint("m2" if i % 2 == 0 else "m1")
    growth = _rss() - baseline
    assert growth < size, f"RSS grew by {growth / 1e6:.1f} MB over 20 switches (one checkpoint is {size / 1e6:.1f} MB)"
    assert len(manager.cached_checkpoints()) == cache_size


def test_sd2_prediction_setting_and_yaml(tmp_path, tokenizer_cache):
    write_test_checkpoint(tmp_path / "ckpt" / "two.safetensors", "sd2", "tiny", seed=1)
    write_test_checkpoint(tmp_path / "ckpt" / "twov.safetensors", "sd2", "tiny", seed=2)
    (tmp_path / "ckpt" / "twov.yaml").write_text("model:\n  params:\n    parameterization: \"v\"\n")
    manager = _manager(tmp_path, tokenizer_cache)
    assert manager.switch_checkpoint("twov").spec.prediction_type == "v_prediction"
    assert manager.loaded.spec.family.name == "sd2-v"
    loaded = manager.switch_checkpoint("two")
    assert loaded.spec.prediction_type == "epsilon"  # our own files carry the prediction type
    assert loaded.tokenizers["tokenizer"].pad_token == "!"


def test_a_deleted_vae_does_not_block_checkpoint_switches(tmp_path, tokenizer_cache, two_models):
    _, b = two_models
    write_test_vae(tmp_path / "vae" / "gone.safetensors", seed=52)
    manager = _manager(tmp_path, tokenizer_cache)
    manager.switch_checkpoint("a")
    manager.switch_vae("gone.safetensors")
    (tmp_path / "vae" / "gone.safetensors").unlink()
    manager.registry.refresh()
    loaded = manager.switch_checkpoint("b")
    assert loaded.checkpoint.stem == "b" and loaded.vae is None and _equal(loaded.vae_module, b["vae"])
    assert any("gone.safetensors is gone" in w for w in manager.warnings)


def test_cache_makes_room_before_reading_a_new_checkpoint(tmp_path, tokenizer_cache, two_models):
    """With a cache of 2, loading a third checkpoint never holds three: the oldest inactive one goes
    first, and the active one stays even when the new read fails."""
    write_test_checkpoint(tmp_path / "ckpt" / "c.safetensors", "sd1", "tiny", seed=3)
    manager = _manager(tmp_path, tokenizer_cache, cache_size=2)
    manager.switch_checkpoint("a")
    manager.switch_checkpoint("b")
    assert [p.rsplit("/", 1)[1] for p in manager.cached_checkpoints()] == ["a.safetensors", "b.safetensors"]
    broken = tmp_path / "ckpt" / "c.safetensors"
    broken.write_bytes(broken.read_bytes()[:-100])
    with pytest.raises(ModelLoadError):
        manager.switch_checkpoint("c")
    assert [p.rsplit("/", 1)[1] for p in manager.cached_checkpoints()] == ["b.safetensors"]
    assert manager.loaded.checkpoint.stem == "b"


def test_switching_away_from_a_deleted_active_file_works(tmp_path, tokenizer_cache, two_models):
    _, b = two_models
    manager = _manager(tmp_path, tokenizer_cache)
    manager.switch_checkpoint("a")
    (tmp_path / "ckpt" / "a.safetensors").unlink()
    loaded = manager.switch_checkpoint("b")
    assert loaded.checkpoint.stem == "b" and _equal(loaded.unet, b["unet"])


def test_changed_file_is_read_again(tmp_path, tokenizer_cache, two_models):
    manager = _manager(tmp_path, tokenizer_cache)
    manager.switch_checkpoint("a")
    _, new = write_test_checkpoint(tmp_path / "ckpt" / "a.safetensors", "sd1", "tiny", seed=77)
    loaded = manager.switch_checkpoint("a")
    assert "read" in loaded.timings and _equal(loaded.unet, new["unet"])
