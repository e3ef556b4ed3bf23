"""Load: N concurrent API clients x M jobs each against a real Easel server on loopback.

    .venv/bin/python bench/load.py [--clients 8] [--jobs 5] [--steps 4] [--size 64]
                                   [--max-queued N] [--retry] [--check 8] [--url http://127.0.0.1:7860]

Without --url it writes a tiny test checkpoint to a temporary folder and starts `webui.py --api`
on a free loopback port (as the tests do), then stops it. Each client thread sends its jobs one
after another (`/sdapi/v1/txt2img`, batch 1), each with its own seed and prompt, so up to N jobs
are in the server at once. Every answer is checked against its own request:

- ok: 200, and the image's embedded infotext, `info.infotexts[0]`, `info.all_seeds` and
  `info.all_prompts` all name this request's seed and prompt;
- misrouted: 200 with another request's image or info; lost: no answer, or 200 without an image;
- refused: 503 with A1111's error JSON (the queue was full: `--max-queued`); with `--retry` the
  client waits for Retry-After and sends it again (each refusal still counted);
- error: any other answer.

Then `--check` of the ok jobs (all when 0 < --check >= their number) are run again one at a time
and their pixels compared with the answer's (same seed and prompt: same image), every image of a
distinct seed must differ, and the history database must hold one row per ok job. Reports jobs/s,
p50/p95 latency, the counts above and the server's RSS after warm-up, at its peak and at the end.
Writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS, ROOT, machine_info, markdown_table, write_json  # noqa: E402

API = "/sdapi/v1"
WORDS = ("lighthouse", "corgi", "teapot", "glacier", "lantern", "orchid", "tram", "violin", "desert", "comet")


@dataclass
class JobRecord:
    """One request and what came back for it."""

    client: int
    index: int
    seed: int
    prompt: str
    outcome: str = "lost"  # ok | misrouted | lost | refused | error
    status: int | None = None
    latency_s: float = 0.0
    refusals: int = 0
    detail: str = ""
    pixels_sha: str = ""
    image_b64: str = field(default="", repr=False)


# the server ---------------------------------------------------------------------------------------


class LocalServer:
    """`webui.py --api` on a free loopback port with a tiny test model (what tests/webui_server.py does)."""

    def __init__(self, root: Path, flags: list[str] | None = None):
        from tests.webui_server import free_port
        from tools.make_test_models import write_test_checkpoint

        self.root = root
        models = root / "models"
        (models / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
        checkpoint = models / "Stable-diffusion" / "load.safetensors"
        if not checkpoint.exists():
            write_test_checkpoint(checkpoint, seed=1)
        self.data_dir = root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "webui.py"), "--api", "--port", str(self.port), "--device", "cpu",
                 "--models-dir", str(models), "--data-dir", str(self.data_dir), "--ckpt", str(checkpoint), *(flags or [])],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the API answers and the start-up checkpoint is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(self.url + API + "/options", timeout=5).json().get("sd_checkpoint_hash"):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rss_bytes(pid: int) -> int:
    """The resident set size of a process: psutil when installed, else /proc/<pid>/status."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise


class RssMonitor:
    """Samples a process's RSS every `every` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-monitor")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, ValueError):
                return
            self._stop.wait(self.every)

    def __enter__(self) -> "RssMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# the clients --------------------------------------------------------------------------------------


def payload(record: JobRecord, steps: int, size: int) -> dict:
    return {"prompt": record.prompt, "seed": record.seed, "steps": steps, "width": size, "height": size,
            "sampler_name": "Euler", "batch_size": 1, "n_iter": 1}


def pixels_of(image_b64: str) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(image_b64))) as image:
        return image.convert("RGB").tobytes()


def judge(record: JobRecord, response: httpx.Response) -> None:
    """Sets the record's outcome from one answer (see the module docstring)."""
    import hashlib

    from PIL import Image

    from modules.infotext.parse import parse_infotext

    record.status = response.status_code
    if response.status_code == 503:
        body = response.json()
        clean = set(body) == {"error", "detail", "body", "errors"} and body["error"] == "QueueFullError" and "Retry-After" in response.headers
        record.outcome, record.detail = ("refused" if clean else "error"), str(body.get("detail", ""))[:200]
        return
    if response.status_code != 200:
        record.outcome, record.detail = "error", response.text[:300]
        return
    body = response.json()
    images = body.get("images") or []
    if not images:
        record.outcome, record.detail = "lost", "200 without an image"
        return
    info = json.loads(body["info"])
    with Image.open(io.BytesIO(base64.b64decode(images[0]))) as image:
        embedded = parse_infotext(image.info.get("parameters", ""))
    listed = parse_infotext(info["infotexts"][0])
    wanted = (record.prompt, str(record.seed))
    checks = {
        "embedded infotext": (embedded.get("Prompt"), embedded.get("Seed")) == wanted,
        "info.infotexts": (listed.get("Prompt"), listed.get("Seed")) == wanted,
        "info.all_seeds": info.get("all_seeds") == [record.seed],
        "info.all_prompts": info.get("all_prompts") == [record.prompt],
        "one image": len(images) == 1,
    }
    wrong = [name for name, fine in checks.items() if not fine]
    record.outcome = "misrouted" if wrong else "ok"
    record.detail = ", ".join(wrong)
    record.image_b64 = images[0]
    record.pixels_sha = hashlib.sha256(pixels_of(images[0])).hexdigest()


def run_client(url: str, records: list[JobRecord], steps: int, size: int, retry: bool, start: threading.Barrier,
               timeout: float, deadline: float) -> None:
    with httpx.Client(base_url=url + API, timeout=timeout) as http:
        start.wait()
        for record in records:
            began = time.perf_counter()
            while True:
                try:
                    response = http.post("/txt2img", json=payload(record, steps, size))
                except httpx.HTTPError as error:
                    record.outcome, record.detail = "lost", f"{type(error).__name__}: {error}"[:300]
                    break
                judge(record, response)
                if record.outcome == "refused" and retry and time.monotonic() < deadline:
                    record.refusals += 1
                    time.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0) * random.uniform(0.2, 1.0))
                    continue
                if record.outcome == "refused":
                    record.refusals += 1
                break
            record.latency_s = time.perf_counter() - began


def make_records(clients: int, jobs: int, seed_base: int) -> list[list[JobRecord]]:
    """Each job its own seed and a prompt naming its client and number."""
    rng = random.Random(seed_base)
    return [[JobRecord(c, j, seed_base + 1000 * c + j, f"load c{c} j{j} {rng.choice(WORDS)} {rng.choice(WORDS)}")
             for j in range(jobs)] for c in range(clients)]


def run_load(url: str, clients: int, jobs: int, steps: int = 4, size: int = 64, retry: bool = False,
             seed_base: int = 50_000, timeout: float = 600.0) -> tuple[list[JobRecord], float]:
    """Runs the clients; returns every job's record and the wall time."""
    per_client = make_records(clients, jobs, seed_base)
    start = threading.Barrier(clients + 1)
    deadline = time.monotonic() + timeout
    threads = [threading.Thread(target=run_client, args=(url, records, steps, size, retry, start, timeout, deadline),
                                name=f"client-{n}") for n, records in enumerate(per_client)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return [record for records in per_client for record in records], time.perf_counter() - began


def check_pixels(url: str, records: list[JobRecord], sample: int, steps: int, size: int, seed: int = 0) -> tuple[int, list[str]]:
    """Runs `sample` ok jobs again one at a time; returns (checked, mismatches). Also every two
    distinct seeds must have given distinct pixels."""
    ok = [r for r in records if r.outcome == "ok"]
    chosen = ok if sample <= 0 or sample >= len(ok) else random.Random(seed).sample(ok, sample)
    problems = []
    by_pixels: dict[str, int] = {}
    for record in ok:
        if by_pixels.setdefault(record.pixels_sha, record.seed) != record.seed:
            problems.append(f"seed {record.seed} has the same pixels as seed {by_pixels[record.pixels_sha]}")
    with httpx.Client(base_url=url + API, timeout=600) as http:
        for record in chosen:
            response = http.post("/txt2img", json={**payload(record, steps, size), "save_images": False})
            if response.status_code != 200 or pixels_of(response.json()["images"][0]) != pixels_of(record.image_b64):
                problems.append(f"seed {record.seed}: the answer's pixels differ from a run of its own")
    return len(chosen), problems


def history_rows(data_dir: Path, prompts: set[str]) -> int:
    """How many rows of the history database belong to these prompts."""
    with sqlite3.connect(f"file:{data_dir / 'history.sqlite3'}?mode=ro", uri=True) as db:
        return sum(1 for (prompt,) in db.execute("SELECT prompt FROM history") if prompt in prompts)


def summarize(records: list[JobRecord], wall: float, rss: dict[str, int]) -> dict:
    counts = {name: sum(r.outcome == name for r in records) for name in ("ok", "misrouted", "lost", "refused", "error")}
    latencies = sorted(r.latency_s for r in records if r.outcome == "ok")

    def quantile(q: float) -> float:
        if not latencies:
            return float("nan")
        return statistics.quantiles(latencies, n=100, method="inclusive")[int(q * 100) - 1] if len(latencies) > 1 else latencies[0]

    return {
        "jobs": len(records), **counts, "refusals": sum(r.refusals for r in records), "wall_s": wall,
        "jobs_per_s": counts["ok"] / wall if wall > 0 else 0.0, "p50_s": quantile(0.50), "p95_s": quantile(0.95),
        **{f"rss_{k}_mb": v / 2**20 for k, v in rss.items()},
    }


def table(summary: dict, label: str) -> str:
    header = ["run", "jobs", "ok", "refused", "errors", "lost", "misrouted", "jobs/s", "p50 s", "p95 s",
              "pixels checked", "RSS start MB", "RSS peak MB", "RSS end MB"]
    row = [label, summary["jobs"], summary["ok"], f"{summary['refused']} ({summary['refusals']} refusals)",
           summary["error"], summary["lost"], summary["misrouted"], f"{summary['jobs_per_s']:.2f}",
           f"{summary['p50_s']:.2f}", f"{summary['p95_s']:.2f}",
           f"{summary.get('pixels_checked', 0)} ({len(summary.get('pixel_problems', []))} bad)",
           f"{summary['rss_start_mb']:.0f}", f"{summary['rss_peak_mb']:.0f}", f"{summary['rss_end_mb']:.0f}"]
    return markdown_table(header, [[str(c) for c in row]])


def set_queue_limit(url: str, limit: int) -> None:
    response = httpx.post(url + API + "/options", json={"max_queued_jobs": limit}, timeout=60)
    response.raise_for_status()


def measure(url: str, pid: int, data_dir: Path | None, args: argparse.Namespace) -> dict:
    """Warm-up, the load, the checks; the summary."""
    warm = JobRecord(-1, 0, 1, "load warm-up")
    judge(warm, httpx.post(url + API + "/txt2img", json=payload(warm, args.steps, args.size), timeout=600))
    if warm.outcome != "ok":
        raise RuntimeError(f"the warm-up job failed: {warm.outcome} {warm.detail}")
    if args.max_queued is not None:
        set_queue_limit(url, args.max_queued)
    rss = {"start": rss_bytes(pid)}
    with RssMonitor(pid) as monitor:
        records, wall = run_load(url, args.clients, args.jobs, args.steps, args.size, args.retry)
    rss["peak"], rss["end"] = max(monitor.peak, rss["start"]), rss_bytes(pid)
    summary = summarize(records, wall, rss)
    if data_dir is not None:  # before the pixel check, whose runs are recorded too
        summary["history_rows"] = history_rows(data_dir, {r.prompt for r in records})
    checked, problems = check_pixels(url, records, args.check, args.steps, args.size)
    summary.update(pixels_checked=checked, pixel_problems=problems)
    summary["problems"] = [f"{r.outcome} c{r.client} j{r.index} seed {r.seed}: {r.detail}" for r in records
                           if r.outcome not in ("ok", "refused")]
    summary["records"] = [{k: v for k, v in asdict(r).items() if k != "image_b64"} for r in records]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per client")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-queued", type=int, default=None, help="set the server's max_queued_jobs for the run")
    parser.add_argument("--retry", action="store_true", help="send a refused job again after Retry-After")
    parser.add_argument("--check", type=int, default=8, help="ok jobs to run again for a pixel comparison (0: all)")
    parser.add_argument("--url", default=None, help="an Easel already running (default: start one on loopback)")
    args = parser.parse_args()

    server = None
    with tempfile.TemporaryDirectory(prefix="easel-load-") as temp:
        if args.url is None:
            server = LocalServer(Path(temp))
            server.wait_ready()
            url, pid, data_dir = server.url, server.pid, server.data_dir
        else:
            import psutil

            url, data_dir = args.url.rstrip("/"), None
            port = int(url.rsplit(":", 1)[1])
            pid = next(c.pid for c in psutil.net_connections("inet") if c.laddr.port == port and c.status == psutil.CONN_LISTEN)
        try:
            summary = measure(url, pid, data_dir, args)
        finally:
            if server is not None:
                server.stop()
    label = f"{args.clients} clients x {args.jobs} jobs" + (f", max_queued {args.max_queued}" if args.max_queued is not None else "")
    label += ", retry" if args.retry else ""
    print(table(summary, label))
    if "history_rows" in summary:
        print(f"history rows for these jobs: {summary['history_rows']} (ok jobs: {summary['ok']})")
    for problem in summary["problems"] + summary["pixel_problems"]:
        print("PROBLEM:", problem)
    path = write_json(RESULTS / "load.json", {"machine": machine_info(), "args": vars(args), "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
