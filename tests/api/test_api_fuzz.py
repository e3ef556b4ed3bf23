"""Schema fuzzing: schemathesis draws requests from our OpenAPI schema (valid ones and broken ones)
for every route; none may get a 5xx, and every answer must be JSON.

Bounded in time: a fixed number of examples per route, generation sizes capped to the tiny model's
64 px and 2 steps (the schema allows 4096 px and 500 steps, which is slow, not wrong). It runs on
its own app and data folder, as it sets random options.
"""

from __future__ import annotations

import json

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.api.api_helpers import make_client

EXAMPLES = 12
# Largest value of each numeric field the fuzzer may send (missing ones are set to it too).
CAPS = {
    "width": 64, "height": 64, "steps": 2, "batch_size": 2, "n_iter": 2, "hr_second_pass_steps": 2, "hr_scale": 1.5,
    "hr_resize_x": 64, "hr_resize_y": 64, "seed_resize_from_w": 64, "seed_resize_from_h": 64,
    "upscaling_resize": 2, "upscaling_resize_w": 128, "upscaling_resize_h": 128,
}


@pytest.fixture(scope="module")
def fuzz_app(api_models, tmp_path_factory):
    client, services = make_client(api_models, tmp_path_factory.mktemp("fuzz-data"))
    with client:
        yield client.app
    services.close()


def cap_sizes(body: object) -> None:
    if not isinstance(body, dict):
        return
    for key, cap in CAPS.items():
        value = body.get(key)
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap):
            body[key] = cap


def test_no_request_drawn_from_the_schema_gets_a_server_error(fuzz_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    problems: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                cap_sizes(case.body)
                response = case.call(timeout=60)
                try:
                    json.loads(response.content or b"null")
                except ValueError:
                    problems.append(f"{operation.method.upper()} {operation.path}: not JSON ({response.status_code})")
                if response.status_code >= 500:
                    problems.append(f"{operation.method.upper()} {operation.path} {case.body!r:.300} -> {response.status_code} {response.content[:300]!r}")

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass  # a route without parameters has no broken requests to draw
    assert problems == []
