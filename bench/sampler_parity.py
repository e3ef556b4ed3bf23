"""Report: how far each of Easel's samplers lands from its reference, on the tests' tiny seeded UNets.

    .venv/bin/python bench/sampler_parity.py     # about a minute on 2 cores

Not a timing: the measured differences behind the parity tests, which only assert a bound
(tests/unit/test_k_samplers_match_kdiffusion.py: 1e-4 relative to k-diffusion;
tests/unit/test_timestep_samplers.py: 1e-5 relative to A1111's VP-space loops). The cases and the
references are the tests' own, imported from them, so the table shows exactly what they check:

- k-diffusion rows: our sampler and k-diffusion's under CFG 7 over the same sigmas and noise;
  "relative" is max |ours - theirs| / max |theirs| (the test's measure), on the final k-space latent.
- A1111 rows: DDIM, DDIM CFG++ and PLMS against transcriptions of A1111's loops; "relative" is
  ||ours - theirs|| / ||theirs|| (that test's measure), on the final VP-space latent.

Needs the k-diffusion test reference (.venv/bin/pip install --no-deps -r requirements-test-nodeps.txt).
Writes bench/results/sampler_parity.json.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import pytest  # noqa: E402
import torch  # noqa: E402

from _common import git_state, machine_info, markdown_table, write_json  # noqa: E402
from tests.kdiffusion_reference import load  # noqa: E402
from tests.unit import test_k_samplers_match_kdiffusion as k_tests  # noqa: E402
from tests.unit import test_timestep_samplers as t_tests  # noqa: E402


def k_diffusion_rows(kd) -> list[dict]:
    setup = k_tests.parity_setup(kd, k_tests.tiny_unet())
    cases = dict(k_tests.CASES)
    cases["DPM adaptive"] = (k_tests.k_samplers_extra.sample_dpm_adaptive, "sample_dpm_adaptive", "ancestral", "uniform", False, {})
    rows = []
    for name, case in cases.items():
        ours, theirs, _ = k_tests.run_both(kd, setup, *case)
        rows.append({"sampler": name, "reference": f"k-diffusion {case[1]}", "relative": k_tests.relative_difference(ours, theirs),
                     "max_abs": float((ours - theirs).abs().max()), "bound": k_tests.TOLERANCE})
    return rows


def a1111_rows() -> list[dict]:
    model = t_tests.tiny_model()
    randn = lambda generator: (lambda x: torch.randn(x.shape, generator=generator))  # noqa: E731
    runs = {}
    for eta in (0.0, 0.6):
        ref = t_tests.a1111_ddim(model, t_tests.start_noise(), t_tests.a1111_ddim_timesteps(8), eta, randn(torch.Generator().manual_seed(99)))
        runs[f"DDIM, eta {eta}"] = ("ddim", t_tests._k_run(t_tests.sample_ddim, model, 8, eta=eta, noise=t_tests.SeededNoise(99)), ref)
    for eta in (0.0, 0.6):
        runs[f"DDIM CFG++, eta {eta}, CFG {t_tests.CFGPP_SCALE:g}"] = ("ddim_cfgpp", *t_tests.cfgpp_against_a1111(model, eta))
    runs["PLMS"] = ("plms", t_tests._k_run(t_tests.sample_plms, model, 12), t_tests.a1111_plms(model, t_tests.start_noise(), t_tests.a1111_ddim_timesteps(12)))
    return [{"sampler": name, "reference": f"A1111 {function} (transcribed)", "relative": t_tests.rel(ours, ref),
             "max_abs": float((ours - ref).abs().max()), "bound": 1e-5} for name, (function, ours, ref) in runs.items()]


def main() -> int:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    # torchsde warns when a query lies a rounding error outside the tree; k-diffusion queries the same points
    warnings.filterwarnings("ignore", "Should have t", UserWarning)
    try:
        kd = load()
    except pytest.skip.Exception as missing:
        print(missing.msg)
        return 1
    rows = k_diffusion_rows(kd) + a1111_rows()
    table = markdown_table(
        ["sampler", "reference", "relative difference", "max abs difference", "test bound (relative)"],
        [[r["sampler"], r["reference"], f"{r['relative']:.1e}", f"{r['max_abs']:.1e}", f"{r['bound']:.0e}"] for r in rows],
    )
    print(table)
    print(f"\n- {machine_info()}")
    path = write_json(ROOT / "bench" / "results" / "sampler_parity.json",
                      {"benchmark": "sampler_parity", "machine": machine_info(), "code": git_state(), "results": rows, "table": table})
    print(f"JSON: {path.relative_to(ROOT)}")
    return 0 if all(r["relative"] < r["bound"] for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
