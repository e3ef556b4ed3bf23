"""Dynamic Prompts through A1111's API as the extension's clients send it ("Dynamic Prompts v2.17.1"
with its 18 positional arguments): each picture gets its own drawn prompt and seed, reproducible from
the job's seed; combinatorial mode makes one picture per combination; a missing wildcard is a 422
naming it."""

from __future__ import annotations

import json

import numpy as np

from tests.api.api_helpers import API, decode

BASE = {"width": 64, "height": 64, "steps": 3, "seed": 40, "cfg_scale": 5, "sampler_name": "Euler"}
KEY = "Dynamic Prompts v2.17.1"


def args(combinatorial: bool = False, fixed_seed: bool = False) -> list:
    # is_enabled, is_combinatorial, combinatorial_batches, magic prompt, feeling lucky, attention grabber, min/max attention,
    # magic length, magic temp, use_fixed_seed, unlink seed, disable negative, jinja, no image generation, max generations,
    # magic model, blocklist
    return [True, combinatorial, 1, False, False, False, 1.1, 1.5, 100, 0.7, fixed_seed, False, False, False, False, 0, "", ""]


def run(client, prompt: str, **fields):
    answer = client.post(f"{API}/txt2img", json={**BASE, "prompt": prompt, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json(), json.loads(answer.json()["info"])


def test_random_mode_draws_a_prompt_per_picture_reproducibly(api):
    client, _ = api
    body, info = run(client, "a {red|green|blue|yellow} circle", batch_size=3, alwayson_scripts={KEY: {"args": args()}})
    prompts = [text.split("\n")[0] for text in info["infotexts"]]
    assert len(prompts) == 3 and all(p.startswith("a ") and p.endswith(" circle") and "{" not in p for p in prompts)
    assert info["all_seeds"] == [40, 41, 42]
    assert all('Template: "a {red|green|blue|yellow} circle"' in text or "Template: a {red|green|blue|yellow} circle" in text
               for text in info["infotexts"])
    again, info_again = run(client, "a {red|green|blue|yellow} circle", batch_size=3, alwayson_scripts={KEY.lower(): {"args": args()}})
    assert [t.split("\n")[0] for t in info_again["infotexts"]] == prompts
    # the second picture, made alone from its own prompt and seed, is the same picture
    alone, _ = run(client, prompts[1], seed=41)
    assert np.array_equal(np.asarray(decode(alone["images"][0])), np.asarray(decode(body["images"][1])))


def test_combinatorial_mode_makes_every_combination(api):
    client, _ = api
    _, info = run(client, "a {red|blue} {circle|square|triangle}", alwayson_scripts={KEY: {"args": args(combinatorial=True)}})
    prompts = sorted(text.split("\n")[0] for text in info["infotexts"])
    assert prompts == sorted(f"a {c} {s}" for c in ("red", "blue") for s in ("circle", "square", "triangle"))


def test_a_missing_wildcard_is_named(api):
    client, _ = api
    answer = client.post(f"{API}/txt2img", json={**BASE, "prompt": "a __no_such_colours__ circle", "alwayson_scripts": {KEY: {"args": args()}}})
    assert answer.status_code == 422 and "no_such_colours" in answer.json()["detail"], answer.text


def test_a_wildcard_file_in_the_data_folder_is_used(api):
    client, services = api
    folder = services.paths.data_dir / "wildcards"
    folder.mkdir(exist_ok=True)
    (folder / "shapes.txt").write_text("# the demo's shapes\ncircle\nsquare\n", encoding="utf-8")
    try:
        services.wildcards.refresh()
        _, info = run(client, "a red __shapes__", batch_size=2, alwayson_scripts={KEY: {"args": args()}})
        assert {text.split("\n")[0] for text in info["infotexts"]} <= {"a red circle", "a red square"}
    finally:
        (folder / "shapes.txt").unlink()
        services.wildcards.refresh()


def test_xyz_cells_expand_the_template_from_their_own_seed(api):
    """X/Y/Z plot over seeds with a template: every cell draws its prompt from its seed, as a job with
    that seed alone does (cells reproducible)."""
    client, _ = api
    template = "a {red|green|blue|yellow|cyan|magenta} circle"
    body, info = run(client, template, script_name="x/y/z plot", script_args=["Seed", "5, 6, 7"], alwayson_scripts={KEY: {"args": args()}})
    cells = [text.split("\n")[0] for text in info["infotexts"][info["index_of_first_image"]:]]
    assert len(cells) == 3 and all("{" not in cell for cell in cells)
    for seed, cell in zip((5, 6, 7), cells):
        _, alone = run(client, template, seed=seed, alwayson_scripts={KEY: {"args": args()}})
        assert alone["infotexts"][0].split("\n")[0] == cell


def test_easels_own_field_names_the_settings(api):
    client, _ = api
    _, info = run(client, "a {red|blue} {circle|square}", dynamic_prompts={"combinatorial": True})
    assert sorted(text.split("\n")[0] for text in info["infotexts"]) == sorted(
        f"a {c} {s}" for c in ("red", "blue") for s in ("circle", "square"))
    wrong = client.post(f"{API}/txt2img", json={**BASE, "prompt": "a {red|blue} circle", "dynamic_prompts": {"combinatorail": True}})
    assert wrong.status_code == 422 and "did you mean combinatorial" in wrong.json()["detail"], wrong.text


def test_prompt_matrix_options_around_a_template_and_each_cell_resolved(api):
    """Prompt matrix with a template: the "|" inside braces is the variant's, the ones outside split
    the options; every cell (one seed for all) resolves the variant the same way, and again the same
    in a second run."""
    client, _ = api
    template = "a {red|green|blue|yellow|cyan|magenta} circle|on snow|at night"
    fields = {"script_name": "prompt matrix", "script_args": [False, False, "positive", "comma"], "alwayson_scripts": {KEY: {"args": args()}}}
    _, info = run(client, template, **fields)
    cells = [text.split("\n")[0] for text in info["infotexts"][info["index_of_first_image"]:]]
    assert len(cells) == 4 and all("{" not in cell and "|" not in cell for cell in cells)
    colour = cells[0].split()[1]
    assert cells == [f"a {colour} circle", f"a {colour} circle, on snow", f"a {colour} circle, at night", f"a {colour} circle, on snow, at night"]
    _, again = run(client, template, **fields)
    assert [text.split("\n")[0] for text in again["infotexts"][again["index_of_first_image"]:]] == cells
