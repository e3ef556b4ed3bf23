"""Runs every benchmark in bench/, one subprocess each, and writes one table of the headline ratios.

    .venv/bin/python bench/run_all.py --quick              # smoke run: tiny models, a few minutes
    .venv/bin/python bench/run_all.py --repeats 5          # the figures: SD1.5-shaped random weights too
    .venv/bin/python bench/run_all.py --only engine_overhead,bf16_cpu
    .venv/bin/python bench/run_all.py --collect            # no runs: the table from the JSON already there

Each benchmark measures Easel and the plain library way side by side in one run (see bench/README.md);
this script only runs them in turn (never two at once: they would slow each other down), with
`--repeats` passed through as each one's number of timed runs (medians), then reads their JSON from
bench/results/ and writes the headline rows, with the goals of issue 12, to stdout,
bench/results/run_all.md and bench/results/run_all.json. A benchmark that fails or times out gets a
row saying so, with its log in bench/results/run_all-logs/. bench/load.py and bench/fuzz.py are
load and robustness tools, not ratio benchmarks, and are not run here; any other bench/*.py script
not listed in BENCHES is reported as missing from this table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import RESULTS, SD15_SHAPED, describe_code, git_state, machine_info, markdown_table, write_json  # noqa: E402

NOT_BENCHMARKS = {"_common", "run_all", "load", "fuzz"}
Row = list[str]


@dataclass
class Bench:
    name: str
    arguments: Callable[[argparse.Namespace], list[str]]  # command-line options for a quick / full run
    headline: Callable[[dict[str, Any]], list[Row]]  # rows from its JSON
    timeout_quick: int = 1800
    timeout_full: int = 3600
    one_json: bool = False  # writes the same file in both modes

    def json_path(self, quick: bool) -> Path:
        return RESULTS / (f"{self.name}.quick.json" if quick and not self.one_json else f"{self.name}.json")


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _ok(value: float, goal: float, below: bool = True) -> str:
    return "yes" if (value <= goal if below else value >= goal) else "no"


def _quick(args: argparse.Namespace, name: str) -> bool:
    return args.quick or name in args.quick_only


def _side_by_side(args: argparse.Namespace) -> list[str]:
    out = ["--repeats", str(args.repeats), "--full-repeats", str(args.repeats)]
    return out + (["--quick"] if args.quick else [])


# headline rows: [figure, model / case, Easel, plain, ratio, goal, met, timed runs] -----------------


def engine_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, r in data["results"].items():
        med, runs = r["median"], len(r["times"]["easel"])
        base = med["diffusers"]
        ratio, preview = med["easel"] / base, med["easel + cheap previews every step"] / base
        fastest = {name: min(values) for name, values in r["times"].items()}
        min_ratio = fastest["easel"] / fastest["diffusers"]
        min_preview = fastest["easel + cheap previews every step"] / fastest["diffusers"]
        rows.append(["engine overhead vs plain diffusers (txt2img)", label, f"{med['easel']:.3f} s", f"{base:.3f} s",
                     f"{ratio:.3f} (fastest runs: {min_ratio:.3f})", "<= 1.03", _ok(ratio, 1.03), str(runs)])
        rows.append(["cheap preview every step vs plain diffusers", label, f"{med['easel + cheap previews every step']:.3f} s", f"{base:.3f} s",
                     f"{preview:.3f} (fastest runs: {min_preview:.3f})", "<= 1.05", _ok(preview, 1.05), str(runs)])
    return rows


def img2img_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, r in data["results"].items():
        med, steps = r["median"], r["steps"]
        for task in ("img2img", "inpaint"):
            ours, theirs = med[f"easel {task}"] / steps[f"easel {task}"], med[f"diffusers {task}"] / steps[f"diffusers {task}"]
            rows.append([f"{task} per step vs plain diffusers", label, f"{ours * 1000:.0f} ms/step", f"{theirs * 1000:.0f} ms/step",
                         f"{ours / theirs:.3f}", "<= 1.03", _ok(ours / theirs, 1.03), str(len(r["times"][f"easel {task}"]))])
    return rows


def xyz_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, r in data["results"].items():
        med = r["median"]
        ratio = med["easel"] / med["diffusers"]
        rows.append(["X/Y/Z plot (3x2) vs a diffusers loop", label, f"{med['easel']:.2f} s", f"{med['diffusers']:.2f} s", f"{ratio:.3f}",
                     "<= 1.0", _ok(ratio, 1.0), str(len(r["times"]["easel"]))])
    return rows


def bf16_rows(data: dict[str, Any]) -> list[Row]:
    med = data["median"]
    model = f"{'tiny UNet' if data['size'] == 64 else 'SD1.5-shaped UNet'} {data['size']}px, CPU bf16: {data['cpu_bf16']}, auto picks {data['auto_dtype']}"
    return [["bf16 vs fp32 CPU UNet speed-up (fp32 time / bf16 time)", model, f"bf16 {med['bf16']:.3f} s", f"fp32 {med['float32']:.3f} s",
             f"{data['speedup_bf16']:.2f}", "report; auto picks the faster",
             "yes" if (data["speedup_bf16"] > 1) == (data["auto_dtype"] == "bfloat16") else "no", str(len(data["times"]["bf16"]))]]


def model_switch_rows(data: dict[str, Any]) -> list[Row]:
    s = data["summary"]
    switches = len(data["raw"]["switch"].get("switches", []))
    label = "tiny 'medium' test model" if data.get("quick") else "SD1.5-shaped, fp32 on CPU"
    return [["RAM-cache checkpoint switch (median; max below)", label, f"{s['switch_median_s']:.3f} s (max {s['switch_max_s']:.3f})",
             f"{s['diffusers_fp32_s']:.2f} s (diffusers cold load)", f"{s['switch_median_s'] / s['diffusers_fp32_s']:.3f}", "< 0.5 s",
             _ok(s["switch_max_s"], 0.5), str(switches)]]


def startup_rows(data: dict[str, Any]) -> list[Row]:
    pages = [r["page"] for r in data["runs"]]
    floor = data["floors"]["import gradio, torch, diffusers"]
    page = _med(pages)
    return [["startup: webui.py to page served", f"{data.get('size', 'tiny')} checkpoint", f"{page:.2f} s", f"{floor:.2f} s (imports alone)",
             f"{page / floor:.2f}", "< 5 s", _ok(page, 5.0), str(len(pages))]]


def text_cache_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, r in data["results"].items():
        med = r["median"]
        rows.append(["text-encoder cache hit vs miss (a job's prompt + negative)", label, f"hit {med['hit'] * 1000:.3f} ms",
                     f"miss {med['miss'] * 1000:.1f} ms (plain CLIP {med['plain'] * 1000:.1f} ms)", f"{r['hit_over_miss']:.4f}", "report", "",
                     str(len(r["times"]["hit"]))])
    return rows


def lora_rows(data: dict[str, Any]) -> list[Row]:
    med = data["median"]
    ratio = med["apply + remove, cached"] / med["reload"]
    return [["LoRA apply+remove (cached) vs checkpoint reload", data["model"], f"{med['apply + remove, cached'] * 1000:.0f} ms",
             f"{med['reload'] * 1000:.0f} ms", f"{ratio:.3f}", "< 0.10", _ok(ratio, 0.10), str(len(data["times"]["reload"]))]]


def outpaint_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for label, totals in data["results"].items():
        fill = totals.get("Easel fill")
        mk2 = totals.get("Outpainting mk2")
        if not fill or not mk2:
            continue
        ours, theirs = fill["colour"] / fill["sides"], mk2["colour"] / mk2["sides"]
        rows.append(["outpaint seam colour jump, Easel fill vs A1111 mk2", label, f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.3f}",
                     "< 1", _ok(ours / theirs, 1.0, below=True), "1 (deterministic)"])
    return rows


BENCHES = [
    # the acceptance figures of issue 12 first; model_switch moves to the front when the SD1.5-shaped
    # checkpoints it writes (which the others read) are missing
    Bench("engine_overhead", _side_by_side, engine_rows),
    Bench("bf16_cpu", lambda a: ["--repeats", str(a.repeats)] + (["--quick"] if a.quick else []), bf16_rows),
    Bench("text_encoder_cache", lambda a: ["--repeats", str(max(a.repeats, 5))] + (["--quick"] if a.quick else []), text_cache_rows),
    Bench("model_switch", lambda a: ["--repeats", str(a.load_repeats)] + (["--quick"] if a.quick else []), model_switch_rows),
    Bench("startup", lambda a: ["--runs", str(a.repeats)], startup_rows, one_json=True),
    Bench("img2img_overhead", _side_by_side, img2img_rows),
    Bench("lora_switch", lambda a: ["--repeats", str(a.repeats), "--threads", "1"] + (["--quick"] if a.quick else []), lora_rows),
    Bench("xyz_plot", _side_by_side, xyz_rows),
    Bench("outpaint_seams", lambda a: ["--quick"] if a.quick or not a.outpaint_full else [], outpaint_rows),
]


def run(bench: Bench, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py"), *bench.arguments(args)]
    quick = args.quick
    log = logs / f"{bench.name}.log"
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(f"[run_all] {' '.join(command[1:])}", file=sys.stderr, flush=True)
    with open(log, "w") as out:
        try:
            rc = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=bench.timeout_quick if quick else bench.timeout_full).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = time.perf_counter() - started
    print(f"[run_all]   {bench.name}: exit {rc} after {seconds:.0f} s (log {log.relative_to(ROOT)})", file=sys.stderr, flush=True)
    return {"command": command[1:], "exit": rc, "seconds": seconds, "log": str(log.relative_to(ROOT)), "started": started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each benchmark's smoke mode (tiny models)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender, passed to every benchmark (medians)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names")
    parser.add_argument("--collect", action="store_true", help="run nothing: build the table from the JSON results already written")
    parser.add_argument("--outpaint-full", action="store_true", help="outpaint_seams in full mode too (10-30 min on 2 cores)")
    parser.add_argument("--quick-only", default="", help="comma-separated benchmarks to run in their --quick mode even in a full run "
                        "(e.g. xyz_plot: its full mode takes ~20 min on 2 cores)")
    parser.add_argument("--load-repeats", type=int, default=1, help="model_switch's fresh-process cold loads per contender (its headline, "
                        "the RAM-cache switch, is the median of its 10 switches whatever this is)")
    args = parser.parse_args()
    args.quick_only = {n for n in args.quick_only.split(",") if n}
    names = [b.name for b in BENCHES]
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    unknown = [n for n in only + sorted(skip) + sorted(args.quick_only) if n not in names]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(names)}")
    chosen = [b for b in BENCHES if (not only or b.name in only) and b.name not in skip]
    if not args.quick and not (ROOT / "bench" / ".cache" / SD15_SHAPED).exists():
        chosen.sort(key=lambda b: b.name != "model_switch")
    unlisted = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in NOT_BENCHMARKS and p.stem not in names)

    logs = RESULTS / "run_all-logs"
    logs.mkdir(parents=True, exist_ok=True)
    code = git_state()
    runs: dict[str, Any] = {}
    rows: list[Row] = []
    for bench in chosen:
        bench_args = argparse.Namespace(**{**vars(args), "quick": _quick(args, bench.name)})
        path = bench.json_path(bench_args.quick)
        before = path.stat().st_mtime if path.exists() else None
        info = {"exit": "not run (--collect)"} if args.collect else run(bench, bench_args, logs)
        info["quick"] = bench_args.quick
        runs[bench.name] = info
        fresh = path.exists() and (args.collect or (info["exit"] == 0 and path.stat().st_mtime != before))
        if not fresh:
            why = "no result JSON yet" if args.collect else f"FAILED (exit {info['exit']}, see {info.get('log', '')})"
            rows.append([bench.name, "-", "-", "-", "-", "-", why, "-"])
            continue
        try:
            data = json.loads(path.read_text())
            bench_rows = bench.headline(data)
            info["json"] = str(path.relative_to(ROOT))
            info["machine"] = data.get("machine")
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as error:
            bench_rows = [[bench.name, "-", "-", "-", "-", "-", f"unreadable result: {error!r}", "-"]]
        rows += bench_rows

    header = ["figure", "model / case", "Easel", "plain", "ratio", "goal", "met", "timed runs (median of)"]
    table = markdown_table(header, rows)
    notes = [
        f"{'--quick (tiny models)' if args.quick else 'full'} run, --repeats {args.repeats}"
        + (f"; in quick mode: {', '.join(sorted(args.quick_only))}" if args.quick_only and not args.quick else "") + f"; {describe_code(code)}",
        f"machine: {machine_info()}",
        "each figure is measured side by side in one run by its own script (bench/README.md); ratio = Easel / plain unless the row says otherwise",
    ]
    if unlisted:
        notes.append(f"bench scripts not in run_all's table: {', '.join(unlisted)}")
    markdown = table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(markdown)
    suffix = ".quick" if args.quick else ""
    (RESULTS / f"run_all{suffix}.md").write_text(markdown)
    write_json(RESULTS / f"run_all{suffix}.json", {
        "benchmark": "run_all", "quick": args.quick, "repeats": args.repeats, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": code, "machine": machine_info(), "runs": runs, "header": header, "rows": rows, "table": table,
    })
    print(f"wrote {(RESULTS / f'run_all{suffix}.md').relative_to(ROOT)} and run_all{suffix}.json")


if __name__ == "__main__":
    main()
