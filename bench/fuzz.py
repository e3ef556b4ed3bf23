"""Runs the property tests of tests/fuzz/ for minutes instead of seconds.

    .venv/bin/python bench/fuzz.py --minutes 5            # the time split evenly over the properties
    .venv/bin/python bench/fuzz.py --examples 20000       # or a number of examples per property
    .venv/bin/python bench/fuzz.py --minutes 2 -k infotext  # only properties whose name has "infotext"

The same properties as the test suite (prompt parser and schedules, infotext create/parse, image
metadata readers), with hypothesis searching fresh random inputs on every run (no database): each
gets its time slice and is restarted until the slice is used, so a property whose search space is
small still runs for its share. A failure is printed with the property's (shrunk) input and the
error, and the run goes on. Prints a markdown table (property, examples run, failures, seconds)
and writes it to bench/results/fuzz.json. Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODULES = ("tests.fuzz.test_fuzz_prompts", "tests.fuzz.test_fuzz_infotext", "tests.fuzz.test_fuzz_images")


def properties(selected: str | None) -> list[tuple[str, object]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in sorted(vars(module)):
            test = getattr(module, attr)
            if attr.startswith("test_") and hasattr(test, "hypothesis") and (not selected or selected in f"{name}.{attr}"):
                found.append((f"{name.rsplit('.', 1)[1].removeprefix('test_fuzz_')}.{attr.removeprefix('test_')}", test))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="total time, split evenly over the properties (default 3)")
    budget.add_argument("--examples", type=int, help="examples per property (instead of a time budget)")
    parser.add_argument("-k", dest="selected", help="only properties whose module.name contains this")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()

    # Before the test modules are imported: their settings read the scale. A time budget makes the
    # per-run count effectively unbounded and stops each property with fuzzing.TimeUp.
    os.environ["EASEL_FUZZ_SCALE"] = "1000000" if args.examples is None else "1"
    from tests.fuzz import fuzzing

    warnings.simplefilter("ignore")  # PIL warns about each corrupt Exif it reads safely
    found = properties(args.selected)
    if not found:
        print("no property matches", args.selected)
        return 2
    minutes = args.minutes if args.minutes is not None else (3.0 if args.examples is None else None)
    slice_s = minutes * 60 / len(found) if minutes is not None else None

    rows, failed = [], 0
    for label, test in found:
        name = test.__name__
        fuzzing.RUNS[name] = 0
        failures: list[str] = []
        started = time.monotonic()
        if slice_s is not None:
            fuzzing.stop_at(started + slice_s)
        while True:
            before = fuzzing.RUNS[name]
            try:
                if args.examples is not None:
                    while fuzzing.RUNS[name] < args.examples:
                        test()
                        if fuzzing.RUNS[name] == before:
                            break
                        before = fuzzing.RUNS[name]
                    break
                with contextlib.redirect_stdout(io.StringIO()):  # hypothesis's "reproduce with @seed" after each slice
                    test()
            except fuzzing.TimeUp:
                first = fuzzing.FIRST_FAILURE.pop(name, None)
                if first is not None:  # found, but the slice ended while hypothesis was shrinking it
                    failures.append(f"{label} (not shrunk): {first[0]!r:.400}\n    {first[1][:600]}")
                break
            except Exception as error:  # a property failed: report it and keep fuzzing
                fuzzing.FIRST_FAILURE.pop(name, None)
                text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()
                failures.append(f"{label}: {fuzzing.LAST_INPUT.get(name)!r:.400}\n    {' / '.join(text)[:600]}")
            if slice_s is None or time.monotonic() >= started + slice_s or fuzzing.RUNS[name] == before:
                break
        fuzzing.stop_at(None)
        seconds = time.monotonic() - started
        rows.append({"property": label, "examples": fuzzing.RUNS[name], "failures": len(failures), "seconds": round(seconds, 1)})
        failed += len(failures)
        print(f"{label}: {fuzzing.RUNS[name]} examples, {len(failures)} failures, {seconds:.1f} s", file=sys.stderr, flush=True)
        for failure in failures:
            print("FAILED", failure, file=sys.stderr, flush=True)

    print("\n| property | examples run | failures | time (s) |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['property']} | {row['examples']} | {row['failures']} | {row['seconds']} |")
    total = sum(row["examples"] for row in rows)
    print(f"| **all {len(rows)}** | {total} | {failed} | {sum(row['seconds'] for row in rows):.1f} |")
    try:
        from _common import machine_info, write_json

        write_json(args.json, {"machine": machine_info(), "rows": rows})
    except ImportError:
        pass
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
