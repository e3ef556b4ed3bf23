"""The job queue: order, per-job interrupt/skip, failures, listeners and A1111's /progress numbers."""

from __future__ import annotations

import threading

import pytest

from modules.api.progress import progress_report
from modules.errors import UserError
from modules.jobs import (
    JobContext,
    JobInterrupted,
    JobNotFoundError,
    JobQueue,
    JobState,
    ProgressEvent,
    QueueFullError,
)

WAIT = 5.0  # generous upper bound for waits that normally end in microseconds


@pytest.fixture
def queue():
    q = JobQueue(max_pending=8)
    yield q
    q.close(timeout=WAIT)


class Gate:
    """Lets a test hold a job at a known point: the job calls `arrive_and_wait`."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()

    def arrive_and_wait(self) -> None:
        self.arrived.set()
        assert self.released.wait(WAIT)

    def wait_arrived(self) -> None:
        assert self.arrived.wait(WAIT)


def blocker(gate: Gate, value: object = None):
    def fn(ctx: JobContext):
        gate.arrive_and_wait()
        return value

    return fn


def test_jobs_run_in_submission_order(queue):
    order: list[int] = []
    jobs = [queue.submit(lambda ctx, i=i: order.append(i) or i, f"job {i}") for i in range(5)]
    assert [j.position for j in jobs] == [0, 1, 2, 3, 4]
    queue.start()
    assert [j.result(WAIT) for j in jobs] == [0, 1, 2, 3, 4]
    assert order == [0, 1, 2, 3, 4]
    assert all(j.state is JobState.DONE and j.position is None for j in jobs)
    assert all(j.created_at <= j.started_at <= j.finished_at for j in jobs)


def test_interrupting_the_running_job_returns_within_one_step_with_partial_result(queue):
    gate = Gate()

    def steps(ctx: JobContext):
        done = []
        for step in range(1, 11):
            if ctx.interrupt_requested:
                break
            done.append(step)
            ctx.report(ProgressEvent(step=step, steps=10))
            if step == 3:
                gate.arrive_and_wait()
        return done

    job = queue.submit(steps, "ten steps")
    queue.start()
    gate.wait_arrived()
    assert queue.interrupt() is True
    gate.released.set()
    assert job.result(WAIT) == [1, 2, 3]
    assert job.state is JobState.INTERRUPTED and job.error is None


def test_check_raises_and_the_job_ends_interrupted(queue):
    gate = Gate()

    def fn(ctx: JobContext):
        gate.arrive_and_wait()
        ctx.check()
        return "not reached"

    job = queue.submit(fn)
    queue.start()
    gate.wait_arrived()
    queue.interrupt(job.id)
    gate.released.set()
    assert job.result(WAIT) is None
    assert job.state is JobState.INTERRUPTED


def test_two_jobs_interrupts_are_independent(queue):
    gate = Gate()
    first = queue.submit(blocker(gate, "first"), "user A")
    second = queue.submit(lambda ctx: ("second", ctx.interrupt_requested), "user B")
    third = queue.submit(lambda ctx: "third", "user C")
    queue.start()
    gate.wait_arrived()
    assert queue.interrupt(third.id) is True  # a queued job is removed at once
    assert third.state is JobState.INTERRUPTED and third.done and third.result(0) is None
    assert first.state is JobState.RUNNING and second.state is JobState.QUEUED
    gate.released.set()
    assert first.result(WAIT) == "first" and first.state is JobState.DONE
    assert second.result(WAIT) == ("second", False) and second.state is JobState.DONE
    assert queue.interrupt("no such job") is False
    assert queue.interrupt(first.id) is False  # finished jobs cannot be interrupted


def test_skip_flag_is_per_job_and_consumed_by_take_skip(queue):
    gate = Gate()
    seen: dict[str, object] = {}

    def fn(ctx: JobContext):
        gate.arrive_and_wait()
        seen["requested"] = ctx.skip_requested
        seen["taken"] = ctx.take_skip()
        seen["again"] = (ctx.skip_requested, ctx.take_skip())

    job = queue.submit(fn)
    other = queue.submit(lambda ctx: ctx.skip_requested)
    assert queue.skip(other.id) is False  # only a running job can skip
    queue.start()
    gate.wait_arrived()
    assert queue.skip() is True
    gate.released.set()
    job.result(WAIT)
    assert seen == {"requested": True, "taken": True, "again": (False, False)}
    assert other.result(WAIT) is False


def test_failing_job_keeps_its_error_and_the_next_job_runs(queue):
    def boom(ctx):
        raise RuntimeError("out of memory")

    def refuse(ctx):
        raise UserError("width must be a multiple of 8")

    failed = queue.submit(boom)
    refused = queue.submit(refuse)
    after = queue.submit(lambda ctx: "fine")
    sub = queue.subscribe(failed.id)
    queue.start()
    assert after.result(WAIT) == "fine"
    with pytest.raises(RuntimeError, match="out of memory"):
        failed.result(WAIT)
    assert failed.state is JobState.FAILED and isinstance(failed.error, RuntimeError)
    assert failed.error_message == "RuntimeError: out of memory"
    assert refused.error_message == "width must be a multiple of 8"
    events = list(sub)
    assert events[-1].final and events[-1].state == "failed" and events[-1].error == "RuntimeError: out of memory"


def test_full_queue_is_a_user_error():
    q = JobQueue(max_pending=2)
    try:
        q.submit(lambda ctx: None)
        q.submit(lambda ctx: None)
        with pytest.raises(QueueFullError, match=r"the queue is full \(2 waiting\); try again later"):
            q.submit(lambda ctx: None)
        assert issubclass(QueueFullError, UserError)
    finally:
        q.close(timeout=WAIT)


def test_forced_ids_and_duplicates(queue):
    job = queue.submit(lambda ctx: ctx.job_id, job_id="task(abc)")
    assert job.id == "task(abc)" and queue.get("task(abc)") is job
    with pytest.raises(UserError, match="already queued or running"):
        queue.submit(lambda ctx: None, job_id="task(abc)")
    queue.start()
    assert job.result(WAIT) == "task(abc)"
    again = queue.submit(lambda ctx: "reused", job_id="task(abc)")  # a finished id may be reused
    assert again.result(WAIT) == "reused"
    assert len({queue.submit(lambda ctx: None).id for _ in range(3)}) == 3


def test_listener_receives_every_step_and_the_final_event(queue):
    def fn(ctx: JobContext):
        for image in range(2):
            for step in range(1, 4):
                ctx.report(ProgressEvent(image_index=image, image_count=2, step=step, steps=3, textinfo=f"{image}/{step}"))
        return "ok"

    job = queue.submit(fn, "two images")
    sub = queue.subscribe(job.id)
    queue.start()
    events = list(sub)
    assert [(e.image_index, e.step) for e in events[:-1]] == [(i, s) for i in range(2) for s in range(1, 4)]
    assert all(e.job_id == job.id and e.eta_seconds is not None and not e.final for e in events[:-1])
    final = events[-1]
    assert final.final and final.state == "done" and final.error is None and final.step == 3
    late = queue.subscribe(job.id)  # a finished job still gives its final event
    assert [e.final for e in late] == [True]
    with pytest.raises(JobNotFoundError):
        queue.subscribe("nope")


def test_slow_listener_does_not_block_the_worker(queue):
    def chatty(ctx: JobContext):
        for step in range(1, 201):
            ctx.report(ProgressEvent(step=step, steps=200, preview=object()))
        return "finished"

    job = queue.submit(chatty)
    slow = queue.subscribe(job.id, maxsize=3)  # never read while the job runs
    queue.start()
    assert job.result(WAIT) == "finished"
    events = list(slow)
    assert len(events) == 3 and slow.dropped == 198
    assert [e.step for e in events] == [199, 200, 200] and events[-1].final


def test_progress_numbers_idle_and_running():
    now = [100.0]
    q = JobQueue(max_pending=4, clock=lambda: now[0])
    try:
        idle = progress_report(q)
        assert (idle.progress, idle.eta_relative, idle.state["job_count"], idle.current_task) == (0.0, 0.0, 0, None)
        gate, reported = Gate(), threading.Event()

        def fn(ctx: JobContext):
            ctx.report(ProgressEvent(image_index=1, image_count=4, step=5, steps=20, textinfo="Batch 2 out of 4"))
            reported.set()
            gate.arrive_and_wait()

        job = q.submit(fn, "txt2img")
        q.start()
        gate.wait_arrived()
        assert reported.is_set()
        now[0] = 110.0  # 10 s into the job
        report = progress_report(q)
        expected = 0.01 + 1 / 4 + 5 / 20 / 4
        assert report.progress == pytest.approx(expected)
        assert report.eta_relative == pytest.approx(10 / expected - 10)
        assert report.current_task == job.id and report.textinfo == "Batch 2 out of 4"
        assert report.state | {"job_timestamp": "x"} == {
            "skipped": False, "interrupted": False, "stopping_generation": False, "job": "txt2img",
            "job_count": 4, "job_timestamp": "x", "job_no": 1, "sampling_step": 5, "sampling_steps": 20,
        }
        running = q.current()
        assert running is not None and running[0] is job and running[1].step == 5
        assert running[1].eta_seconds == pytest.approx(0.0)  # the fake clock had not moved at report time
        gate.released.set()
        job.result(WAIT)
        assert progress_report(q).progress == 0.0 and q.current() is None
    finally:
        q.close(timeout=WAIT)


def test_progress_is_clamped_to_one_but_eta_uses_the_unclamped_value():
    now = [0.0]
    q = JobQueue(max_pending=1, clock=lambda: now[0])
    gate = Gate()

    def fn(ctx: JobContext):
        ctx.report(ProgressEvent(image_index=0, image_count=1, step=20, steps=20))
        gate.arrive_and_wait()

    try:
        q.submit(fn)
        q.start()
        gate.wait_arrived()
        now[0] = 10.1
        report = progress_report(q)
        assert report.progress == 1.0
        assert report.eta_relative == pytest.approx(10.1 / 1.01 - 10.1)
        gate.released.set()
    finally:
        q.close(timeout=WAIT)


def test_close_drops_waiting_jobs_and_refuses_new_ones():
    q = JobQueue(max_pending=4)
    gate = Gate()

    def fn(ctx: JobContext):
        gate.arrive_and_wait()
        ctx.check()

    running = q.submit(fn)
    waiting = q.submit(lambda ctx: "never")
    q.start()
    gate.wait_arrived()
    closer = threading.Thread(target=q.close, kwargs={"timeout": WAIT})
    closer.start()
    assert waiting.result(WAIT) is None and waiting.state is JobState.INTERRUPTED
    gate.released.set()
    closer.join(WAIT)
    assert running.state is JobState.INTERRUPTED
    with pytest.raises(UserError, match="shutting down"):
        q.submit(lambda ctx: None)


def test_result_timeout_and_job_interrupted_is_an_exception():
    q = JobQueue(max_pending=1)
    job = q.submit(lambda ctx: None)
    with pytest.raises(TimeoutError):
        job.result(timeout=0.01)
    q.close(timeout=WAIT)
    assert issubclass(JobInterrupted, Exception) and job.state is JobState.INTERRUPTED
