"""The checkpoint merger over HTTP (`POST /easel/v1/merge-checkpoints`, Easel's own route): a merge
of two listed checkpoints is written to the checkpoints folder and listed at once; the new model
loads by hot-swap and generates; bad names are 404/422 naming them, and a name already taken is
refused without touching the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.api.api_helpers import API, decode
from tools.make_test_models import write_test_checkpoint

MERGE = "/easel/v1/merge-checkpoints"


def test_a_merge_is_listed_loads_and_generates(api):
    client, services = api
    folder = Path(services.paths.checkpoints_dir)
    write_test_checkpoint(folder / "merge-b.safetensors", "sd1", seed=31)
    services.models.refresh()
    first = services.registry.checkpoints[0].name
    answer = client.post(MERGE, json={"primary_model_name": first, "secondary_model_name": "merge-b", "multiplier": 0.5,
                                      "custom_name": "merged-for-test"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["filename"] == "merged-for-test.safetensors" and body["title"].startswith("merged-for-test")
    listed = [model["title"] for model in client.get(f"{API}/sd-models").json()]
    assert body["title"] in listed
    made = client.post(f"{API}/txt2img", json={"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 3,
                                               "override_settings": {"sd_model_checkpoint": body["title"]}})
    assert made.status_code == 200, made.text[:300]
    assert np.asarray(decode(made.json()["images"][0])).shape == (64, 64, 3)
    again = client.post(MERGE, json={"primary_model_name": first, "secondary_model_name": "merge-b", "custom_name": "merged-for-test"})
    assert again.status_code == 422 and "already exists" in again.json()["detail"]
    missing = client.post(MERGE, json={"primary_model_name": first, "secondary_model_name": "no-such-model"})
    assert missing.status_code == 404 and "no-such-model" in missing.json()["detail"]
    method = client.post(MERGE, json={"primary_model_name": first, "secondary_model_name": "merge-b", "interp_method": "Average"})
    assert method.status_code == 422 and "Average" in method.json()["detail"]
    (folder / "merged-for-test.safetensors").unlink()
    (folder / "merge-b.safetensors").unlink()
    services.models.refresh()
