"""Listing, naming, hashing and finding models exactly as A1111 does."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from modules.checkpoints.hashing import HashCache
from modules.checkpoints.registry import ModelRegistry
from modules.errors import ModelNotFoundError


def _write(path, size=3 * 1024 * 1024, seed=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    path.write_bytes(data)
    return data


@pytest.fixture
def models(tmp_path):
    ckpt = tmp_path / "models" / "Stable-diffusion"
    vae = tmp_path / "models" / "VAE"
    a = _write(ckpt / "alpha.safetensors", seed=1)
    _write(ckpt / "sub" / "beta.ckpt", seed=2)
    _write(ckpt / "alpha.vae.safetensors", size=4096, seed=3)
    _write(vae / "kl-f8.safetensors", size=4096, seed=4)
    _write(ckpt / "notes.txt", size=32)
    registry = ModelRegistry([ckpt], [vae], HashCache(tmp_path / "data" / "cache.json"))
    return registry, a, tmp_path


def test_listing_names_and_titles(models):
    registry, _, _ = models
    assert [c.name for c in registry.checkpoints] == ["alpha.safetensors", "sub/beta.ckpt"]
    beta = registry.checkpoints[1]
    assert beta.model_name == "sub_beta" and beta.stem == "beta"
    assert registry.title(beta) == "sub/beta.ckpt"  # no bracket until hashed
    assert sorted(v.name for v in registry.vaes) == ["alpha.vae.safetensors", "kl-f8.safetensors"]


def test_hashes_equal_independently_computed_values(models):
    registry, data, _ = models
    alpha = registry.checkpoints[0]
    expected = hashlib.sha256(data).hexdigest()
    assert registry.sha256(alpha) == expected
    assert registry.shorthash(alpha) == expected[:10]
    assert registry.title(alpha) == f"alpha.safetensors [{expected[:10]}]"
    assert registry.legacy_hash(alpha) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_hash_cache_survives_restart_and_notices_changes(models):
    registry, data, tmp = models
    alpha = registry.checkpoints[0]
    registry.sha256(alpha)
    cache = json.loads((tmp / "data" / "cache.json").read_text())
    entry = cache["hashes"]["checkpoint/alpha.safetensors"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    # a new registry (restart) knows the hash without reading the file
    again = ModelRegistry(registry.checkpoint_dirs, registry.vae_dirs, HashCache(tmp / "data" / "cache.json"))
    assert again.known_sha256(again.checkpoints[0]) == entry["sha256"]
    # changing the file invalidates it
    path = again.checkpoints[0].path
    path.write_bytes(data[:-32] + b"x" * 32)
    os.utime(path, (1, 1))
    assert again.known_sha256(again.checkpoints[0]) is None
    assert again.sha256(again.checkpoints[0]) == hashlib.sha256(data[:-32] + b"x" * 32).hexdigest()


def test_corrupt_hash_cache_is_moved_aside(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = HashCache(path)
    assert cache.get("checkpoint/x", [path.with_name("cache.json.corrupt")]) is None
    assert (tmp_path / "cache.json.corrupt").exists()


def test_lookup_by_title_name_stem_hash_and_substring(models):
    registry, data, _ = models
    alpha, beta = registry.checkpoints
    sha = registry.sha256(alpha)
    for query in (registry.title(alpha), "alpha.safetensors", "alpha", sha[:10], sha, registry.legacy_hash(alpha), "alph"):
        assert registry.find_checkpoint(query) == alpha, query
    assert registry.find_checkpoint("sub/beta.ckpt") == beta
    assert registry.find_checkpoint("sub_beta") == beta
    with pytest.raises(ModelNotFoundError, match="No checkpoint named 'gamma'.*available: alpha.safetensors"):
        registry.find_checkpoint("gamma")
    with pytest.raises(ModelNotFoundError):
        registry.find_checkpoint("../../etc/passwd")


def test_automatic_vae_and_refresh(models):
    registry, _, tmp = models
    alpha, beta = registry.checkpoints
    assert registry.automatic_vae(alpha).name == "alpha.vae.safetensors"
    assert registry.automatic_vae(beta) is None
    _write(tmp / "models" / "Stable-diffusion" / "gamma.safetensors", seed=9)
    assert len(registry.checkpoints) == 2
    registry.refresh()
    assert [c.stem for c in registry.checkpoints] == ["alpha", "gamma", "beta"]
