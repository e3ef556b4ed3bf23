"""Textual-inversion embeddings on a tiny SD1 checkpoint loaded by the real start-up path: the file
formats A1111 and diffusers write, the trigger's positions in the text encoder's input replaced by
exactly the file's vectors, never split across chunks, "TI hashes" in the infotext, the API's
listing, and a refresh without a restart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modules.generation.request import GenerationRequest
from modules.generation.text import build_prompt_encoder
from modules.infotext.parse import parse_infotext
from tests.dtypes import CPU_DTYPES
from tests.integration.test_extensions import make_services

WIDTH = 32  # the tiny SD1 text encoder's hidden size (tools/make_test_models.py)


def vectors(count: int, seed: int, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


def write_embeddings(folder: Path) -> dict[str, torch.Tensor]:
    """One file per format; returns the vectors each should load as."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    made = {"sparkle": vectors(2, 1), "glowy": vectors(1, 2), "fuzzball": vectors(3, 3)}
    torch.save({"string_to_param": {"*": made["sparkle"]}, "name": "sparkle", "step": 1500, "sd_checkpoint": "abc123",
                "sd_checkpoint_name": "tiny"}, folder / "sparkle.pt")
    save_file({"emb_params": made["glowy"]}, str(folder / "glowy.safetensors"))
    (folder / "nested").mkdir(exist_ok=True)
    torch.save({"<fuzzball>": made["fuzzball"]}, folder / "nested" / "fuzzball.bin")
    save_file({"clip_l": vectors(2, 4, 768), "clip_g": vectors(2, 5, 1280)}, str(folder / "sdxl-only.safetensors"))
    (folder / "broken.pt").write_bytes(b"not a pickle at all")
    return made


@dataclass(frozen=True)
class Embedded:
    """The app in one CPU dtype, with each file's vectors as written and as the text encoder gets
    them (cast to that dtype)."""

    app: Any
    files: dict[str, torch.Tensor]
    made: dict[str, torch.Tensor]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # the services' parts, as `services.embeddings`


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache, dtype_name):
    root = tmp_path_factory.mktemp("embeddings")
    files = write_embeddings(root / "models" / "embeddings")
    built = make_services(root, "--dtype", dtype_name, extensions=root / "no-extensions")
    yield Embedded(built, files, {name: tensor.to(CPU_DTYPES[dtype_name]) for name, tensor in files.items()})
    built.queue.close()


def encoder(services):
    return build_prompt_encoder(services.manager.loaded, 1)


def captured_token_embeddings(services, prompt: str) -> list[torch.Tensor]:
    """What the text encoder's token-embedding layer put out for each chunk of `prompt` (after
    Easel's splice), captured by a hook of the test's own."""
    seen: list[torch.Tensor] = []
    layer = services.manager.loaded.modules["text_encoder"]
    layer = getattr(layer, "text_model", layer).embeddings.token_embedding
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.detach().clone()))
    try:
        encoder(services)._cache.clear()
        encoder(services).encode(prompt)
    finally:
        handle.remove()
    return seen


def test_every_format_loads_and_bad_files_are_listed_with_the_reason(services):
    library = services.embeddings
    assert sorted(library.embeddings) == ["fuzzball", "glowy", "sdxl-only", "sparkle"]
    for name, expected in services.files.items():
        assert torch.equal(library.embeddings[name].for_width(WIDTH), expected), name
    sparkle = library.embeddings["sparkle"]
    assert (sparkle.step, sparkle.sd_checkpoint, sparkle.count) == (1500, "abc123", 2)
    assert sparkle.sha256 == hashlib.sha256(sparkle.path.read_bytes()).hexdigest()
    assert "broken.pt cannot be read" in library.skipped["broken"]


def test_the_trigger_is_replaced_by_exactly_its_vectors(services):
    plain, = captured_token_embeddings(services, "a photo of a cat")
    spliced, = captured_token_embeddings(services, "a photo of sparkle cat")
    chunk, = encoder(services).chunks("a photo of sparkle cat")
    (offset, embedding), = chunk.fixes
    assert embedding.name == "sparkle" and offset == 3  # after "a photo of"
    assert torch.equal(spliced[0, 1 + offset : 1 + offset + 2], services.made["sparkle"])
    assert torch.equal(spliced[0, :1 + offset], plain[0, :1 + offset])  # the words before are untouched
    with_trigger = encoder(services).encode("a photo of sparkle cat").hidden
    without = encoder(services).encode("a photo of cat").hidden
    assert not torch.allclose(with_trigger, without)
    assert encoder(services).chunks("a photo of sparkles")[0].fixes == ()  # only the whole word triggers


def test_an_embedding_is_never_split_across_chunks(services):
    words = " ".join(["cat"] * 74)
    first, second = encoder(services).chunks(f"{words} fuzzball")
    assert first.fixes == () and [(o, e.name) for o, e in second.fixes] == [(0, "fuzzball")]
    outputs = captured_token_embeddings(services, f"{words} fuzzball")
    assert torch.equal(outputs[1][0, 1:4], services.made["fuzzball"])
    assert encoder(services).chunks(" ".join(["cat"] * 72) + " fuzzball")[0].fixes[0][0] == 72  # fits: stays


def test_the_infotext_records_ti_hashes_and_the_image_changes(services):
    request = GenerationRequest(prompt="a cat, glowy", negative_prompt="sparkle", steps=3, width=64, height=64, seed=5,
                                sampler_name="Euler", preview_every=0)
    result = services.generation.submit_txt2img(request).result(timeout=120)
    library = services.embeddings.embeddings
    expected = f"glowy: {library['glowy'].shorthash}, sparkle: {library['sparkle'].shorthash}"
    assert parse_infotext(result.infotexts[0])["TI hashes"] == expected
    plain = services.generation.submit_txt2img(replace(request, prompt="a cat, glowz", negative_prompt="sparklf")).result(timeout=120)
    assert "TI hashes" not in plain.infotexts[0]
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))


def test_api_lists_them_and_refresh_picks_up_new_files(services):
    from fastapi.testclient import TestClient

    from webui import create_app

    client = TestClient(create_app(services, replace(services.args, api=True, nowebui=True)), raise_server_exceptions=False)
    listing = client.get("/sdapi/v1/embeddings").json()
    assert listing["loaded"]["sparkle"] == {"step": 1500, "sd_checkpoint": "abc123", "sd_checkpoint_name": "tiny", "shape": WIDTH, "vectors": 2}
    assert listing["skipped"]["sdxl-only"]["shape"] == 768 and listing["skipped"]["broken"] == {
        "step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 0, "vectors": 0}
    assert set(listing["loaded"]) == {"sparkle", "glowy", "fuzzball"}
    from safetensors.torch import save_file

    save_file({"emb_params": vectors(1, 9)}, str(services.paths.embeddings_dir / "newcomer.safetensors"))
    assert "newcomer" not in client.get("/sdapi/v1/embeddings").json()["loaded"]
    assert client.post("/sdapi/v1/refresh-embeddings").json() is None
    assert client.get("/sdapi/v1/embeddings").json()["loaded"]["newcomer"]["vectors"] == 1
    chunk, = encoder(services).chunks("newcomer")
    assert [e.name for _, e in chunk.fixes] == ["newcomer"]  # the prompt encoder sees it at once
    json.dumps(listing)
