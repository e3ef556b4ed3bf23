"""Benchmark: generation throughput with `--backend ray` on 1 and 2 Ray Serve replicas.

    .venv/bin/python bench/scale_out.py            # "small" test models, 8 jobs per run, a few minutes
    .venv/bin/python bench/scale_out.py --jobs 16 --size medium --gpus-per-replica 1   # on a GPU machine

Two test checkpoints (a, b) are written; jobs alternate between them (the same seeds every run) and
are submitted all at once through the Ray backend's `RayRunner`, as concurrent users would. For each replica
count a local Ray instance (loopback only, one CPU per replica, one torch thread each) is started,
every replica is warmed up (both checkpoints loaded: --models-per-replica 2, so no run pays for a
switch), then the wall time of all jobs is measured (--repeats times; the best run counts). An
in-process run (one worker thread, one torch thread, no Ray), measured before and after, is the
baseline for the Ray overhead. Ray start-up is not timed.
Writes bench/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._common import RESULTS, machine_info, markdown_table, write_json  # noqa: E402
from modules.checkpoints.hashing import HashCache  # noqa: E402
from modules.checkpoints.manager import ManagerOptions, ModelManager  # noqa: E402
from modules.checkpoints.registry import ModelRegistry  # noqa: E402
from modules.config import Settings  # noqa: E402
from modules.generation.request import GenerationRequest  # noqa: E402
from modules.app import Submitter, in_process_generation  # noqa: E402
from modules.app.results import ResultRecorder  # noqa: E402
from modules.jobs import JobQueue  # noqa: E402
from tools.make_test_models import write_test_checkpoint  # noqa: E402


def requests(jobs: int, size: int, steps: int) -> list[GenerationRequest]:
    return [GenerationRequest(prompt="a red circle on a blue square", steps=steps, width=size, height=size, seed=1000 + i,
                              sampler_name="Euler a", checkpoint="ab"[i % 2]) for i in range(jobs)]


def run_all(service: Submitter, batch: list[GenerationRequest]) -> tuple[float, list]:
    started = time.perf_counter()
    jobs = [service.submit_txt2img(request) for request in batch]
    results = [job.result(timeout=1800) for job in jobs]
    return time.perf_counter() - started, results


def in_process(models: Path, work: Path, batch: list[GenerationRequest], repeats: int) -> list[float]:
    torch.set_num_threads(1)
    registry = ModelRegistry([models], [], HashCache(work / "inproc-cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers", ManagerOptions(checkpoint_cache_size=2))
    queue = JobQueue(max_pending=0)
    queue.start()
    service = in_process_generation(manager, queue, settings=Settings(samples_save=False))
    try:
        run_all(service, batch[:2])  # both checkpoints read and cached
        return [run_all(service, batch)[0] for _ in range(repeats)]
    finally:
        queue.close()


def on_ray(replicas: int, args: argparse.Namespace, models_root: Path, work: Path, batch: list[GenerationRequest]) -> tuple[list[float], dict[str, int]]:
    from modules.backends.ray_serve import RayBackendConfig, RayRunner, RayServeBackend
    from modules.backends.ray_worker import WorkerConfig

    worker = WorkerConfig(models_root, work / f"node-cache-{replicas}", device=args.device, dtype="fp32", threads=args.threads,
                          models_per_replica=2)
    started = time.perf_counter()
    backend = RayServeBackend.start(RayBackendConfig(worker, replicas=replicas, local_cpus=max(replicas, 2), gpus_per_replica=args.gpus_per_replica))
    print(f"  Ray with {replicas} replica(s) up in {time.perf_counter() - started:.0f} s", flush=True)
    registry = ModelRegistry([models_root / "Stable-diffusion"], [], HashCache(work / "ui-cache.json"))
    manager = ModelManager(registry, torch.device("cpu"), torch.float32, work / "tokenizers")
    queue = JobQueue(max_pending=0, devices=backend.slots)
    queue.start()
    settings = Settings(samples_save=False)
    runner = RayRunner(backend, registry, ResultRecorder(registry, settings), settings, None, lambda: None)
    service = Submitter(queue, runner, settings)
    try:
        warmed: set[str] = set()
        for _ in range(10 * replicas):  # every replica holds both checkpoints before timing
            _, results = run_all(service, batch[: 2 * replicas])
            warmed |= {r.replica_id for r in results}
            if len(warmed) == replicas:
                break
        _, results = run_all(service, batch[: 2 * replicas])
        times, per_replica = [], {}
        for _ in range(args.repeats):
            seconds, results = run_all(service, batch)
            times.append(seconds)
            for result in results:
                per_replica[result.replica_id] = per_replica.get(result.replica_id, 0) + 1
        return times, per_replica
    finally:
        queue.close()
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", choices=("tiny", "small", "medium"), default="small", help="test model size")
    parser.add_argument("--pixels", type=int, default=128, help="image width and height")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument("--device", default="cpu", help="replica device (cuda on a GPU machine)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (the best counts)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="easel-scale-out-"))
    models = work / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    for name, seed in (("a", 1), ("b", 2)):
        write_test_checkpoint(models / f"{name}.safetensors", "sd1", args.size, seed=seed)
    batch = requests(args.jobs, args.pixels, args.steps)
    print(f"{args.jobs} jobs ({args.size} test models, {args.pixels}x{args.pixels}, {args.steps} steps), {os.cpu_count()} CPUs", flush=True)

    before = in_process(models, work, batch, args.repeats)
    print(f"  in-process: {before}", flush=True)
    runs = {}
    for count in args.replicas:
        times, per_replica = on_ray(count, args, work / "models", work, batch)
        runs[count] = {"seconds": times, "jobs_per_s": args.jobs / min(times), "jobs_per_replica": per_replica}
        print(f"  ray x{count}: {times} {per_replica}", flush=True)
    after = in_process(models, work, batch, args.repeats)  # before and after: drift on a shared machine shows
    print(f"  in-process again: {after}", flush=True)
    baseline = min(before + after)
    one = min(runs[args.replicas[0]]["seconds"])
    rows = [["in-process (1 worker)", "-", " / ".join(f"{t:.1f}" for t in before + after), f"{args.jobs / baseline:.2f}", "-"]]
    for count, run in runs.items():
        best = min(run["seconds"])
        rows.append([f"ray, {count} replica(s)", "/".join(str(n) for n in sorted(run["jobs_per_replica"].values(), reverse=True)),
                     " / ".join(f"{t:.1f}" for t in run["seconds"]), f"{args.jobs / best:.2f}", f"{one / best:.2f}"])
    print()
    print(markdown_table(["backend", "jobs per replica (all runs)", "wall s per run", "jobs/s (best run)", "speed-up vs 1 replica"], rows))
    path = write_json(RESULTS / "scale_out.json", {"machine": machine_info(), "args": vars(args), "in_process_s": before + after, "ray": runs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
