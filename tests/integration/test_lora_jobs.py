"""`<lora:name:te:unet>` in a prompt through the real job path (Services, queue, service): applied
for that job only, the weights bitwise the checkpoint's again afterwards, weight 0 the same picture
as no tag, "Lora hashes" in the infotext with the prompt kept as written, an unknown LoRA noted and
left out, a malformed tag refused before queueing; /loras and the send-to warning."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from modules.errors import UserError
from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from tests.integration.test_extensions import make_services
from tools.make_test_loras import write_test_lora


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("lora-jobs")
    write_test_lora(root / "models" / "Lora" / "crisp.safetensors", "sd1", "tiny", seed=21, rank=4)
    write_test_lora(root / "models" / "Lora" / "styles" / "warm.safetensors", "sd1", "tiny", seed=22, rank=2)
    built = make_services(root, extensions=root / "no-extensions")
    yield built
    built.queue.close()


def request(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, steps=3, width=64, height=64, seed=8, sampler_name="Euler", preview_every=0)


def run(services, prompt: str):
    return services.generation.submit_txt2img(request(prompt)).result(timeout=120)


def weights(services) -> dict[str, torch.Tensor]:
    model = services.manager.loaded
    return {f"{c}.{n}": p.detach().clone() for c in ("unet", "text_encoder") for n, p in model.modules[c].named_parameters()}


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"))


def test_a_lora_tag_changes_the_picture_for_that_job_only(services):
    plain = run(services, "a red cat")
    before = weights(services)
    with_lora = run(services, "a red cat <lora:crisp:1>")
    after = weights(services)
    assert all(torch.equal(before[name], after[name]) for name in before)  # bitwise the checkpoint's again
    assert np.abs(pixels(with_lora).astype(int) - pixels(plain).astype(int)).mean() > 2
    params = parse_infotext(with_lora.infotexts[0])
    assert params["Prompt"] == "a red cat <lora:crisp:1>"  # kept as written, as A1111
    assert params["Lora hashes"] == f"crisp: {services.loras.short_hash(services.loras.find('crisp'))}"
    assert np.array_equal(pixels(run(services, "a red cat")), pixels(plain))  # nothing left behind
    zero = run(services, "a red cat <lora:crisp:0>")
    assert np.array_equal(pixels(zero), pixels(plain))
    both = run(services, "a red cat <lora:crisp:0.5> <lora:warm:1:0>")  # warm on the text encoder only
    assert parse_infotext(both.infotexts[0])["Lora hashes"].startswith("crisp: ") and ", warm: " in parse_infotext(both.infotexts[0])["Lora hashes"]
    assert not np.array_equal(pixels(both), pixels(with_lora))


def test_an_unknown_lora_is_noted_and_a_bad_tag_refused(services):
    plain = run(services, "a red cat")
    missing = run(services, "a red cat <lora:nowhere:1>")
    assert np.array_equal(pixels(missing), pixels(plain))
    assert any("LoRA 'nowhere' is not in Lora/" in note for note in missing.notes)
    assert "Lora hashes" not in missing.infotexts[0]
    with pytest.raises(UserError, match="lora"):
        services.generation.submit_txt2img(request("a red cat <lora:crisp:lots>"))


def test_the_panel_api_and_send_to_know_the_loras(services):
    from fastapi.testclient import TestClient

    from webui import create_app

    cards = {(e.kind, e.name): e.tag for e in services.models.extra_networks()}
    assert cards[("lora", "crisp")] == "<lora:crisp:1>" and cards[("lora", "warm")] == "<lora:warm:1>"
    client = TestClient(create_app(services, replace(services.args, api=True, nowebui=True)), raise_server_exceptions=False)
    listed = {item["name"]: item for item in client.get("/sdapi/v1/loras").json()}
    assert set(listed) == {"crisp", "warm"} and listed["warm"]["path"].endswith("styles/warm.safetensors")
    write_test_lora(services.paths.models_dir / "Lora" / "fresh.safetensors", "sd1", "tiny", seed=23, rank=2)
    assert client.post("/sdapi/v1/refresh-loras").json() is None
    assert "fresh" in {item["name"] for item in client.get("/sdapi/v1/loras").json()}
    missing = services.models.picture_restorer().missing_networks(
        "x <lora:crisp:1> <lora:gone:0.5>", {"Lora hashes": '"crisp: 1234, other: 99"', "TI hashes": "EasyNegative: abc"})
    assert [str(item) for item in missing] == ["LoRA: gone (not in Lora/)", "LoRA: other (not in Lora/)",
                                               "Embedding: EasyNegative (not among your embeddings)"]
