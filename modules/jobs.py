"""The job queue: one worker thread per device runs submitted jobs in order.

A job is a function of a :class:`JobContext`. Through the context it reports progress
(:class:`ProgressEvent`) and sees its own interrupt and skip requests, so one user's Interrupt never
stops another user's job. Listeners follow a job with :meth:`JobQueue.subscribe`; the HTTP
``/sdapi/v1/progress`` route reads :meth:`JobQueue.current` (modules/api/progress.py computes
A1111's numbers from it).

No torch and no gradio here: the queue runs any callable.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

from modules.errors import UserError
from modules.job_events import JobState, ProgressEvent, Subscription

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobInterrupted(Exception):
    """Raised by :meth:`JobContext.check` once the job was asked to stop."""


class QueueFullError(UserError):
    """Too many jobs are waiting; the API answers it with a retryable status."""


class JobNotFoundError(UserError):
    """No live or recently finished job has that id."""


class Job(Generic[T]):
    """A submitted piece of work; its fields are read-only for everyone but the queue."""

    def __init__(self, queue: JobQueue, job_id: str, description: str, fn: Callable[[JobContext], T]) -> None:
        self.id = job_id
        self.description = description
        self.state = JobState.QUEUED
        self.error: BaseException | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.last_event: ProgressEvent | None = None
        self._queue = queue
        self._fn = fn
        self._value: T | None = None
        self._started_clock = 0.0
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self._done = threading.Event()
        self._listeners: list[Subscription] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt.is_set()

    @property
    def skip_requested(self) -> bool:
        return self._skip.is_set()

    def elapsed(self) -> float:
        """Seconds since the job started (by the queue's clock); 0 before."""
        return self._queue.clock() - self._started_clock if self.started_at is not None else 0.0

    @property
    def position(self) -> int | None:
        """0 for the next job to run, None once the job has started."""
        return self._queue._position(self)

    @property
    def error_message(self) -> str | None:
        """The error as a user reads it: a UserError's sentence, else the exception's type and text."""
        if self.error is None:
            return None
        if isinstance(self.error, UserError):
            return str(self.error)
        return f"{type(self.error).__name__}: {self.error}"

    def result(self, timeout: float | None = None) -> T | None:
        """Waits for the job. Failed: raises its error. Interrupted: whatever it returned (or None)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} is still {self.state.value} after {timeout} s")
        if self.state is JobState.FAILED and self.error is not None:
            raise self.error
        return self._value


class JobContext:
    """What a running job sees: its own interrupt and skip flags and a way to report progress."""

    def __init__(self, job: Job[Any], device: str, queue: JobQueue) -> None:
        self.job_id = job.id
        self.device = device
        self._job = job
        self._queue = queue

    @property
    def interrupt_requested(self) -> bool:
        return self._job._interrupt.is_set()

    @property
    def skip_requested(self) -> bool:
        return self._job._skip.is_set()

    def take_skip(self) -> bool:
        """True once per Skip request: the engine moves on to the next image and the flag resets."""
        if self._job._skip.is_set():
            self._job._skip.clear()
            return True
        return False

    def check(self) -> None:
        """Raises :class:`JobInterrupted` if the job was asked to stop."""
        if self._job._interrupt.is_set():
            raise JobInterrupted(f"job {self.job_id} was interrupted")

    def elapsed(self) -> float:
        return self._queue.clock() - self._job._started_clock

    def report(self, event: ProgressEvent) -> None:
        """Publishes a step; fills in the job id and an ETA from the time spent so far."""
        if event.job_id != self.job_id:
            event = replace(event, job_id=self.job_id)
        if event.eta_seconds is None and event.fraction > 0:
            elapsed = self.elapsed()
            event = replace(event, eta_seconds=max(0.0, elapsed / event.fraction - elapsed))
        self._queue._publish(self._job, event)


class JobQueue:
    """Jobs wait here in order; one worker thread per device runs them.

    `max_pending` bounds the jobs *waiting* (running ones do not count; 0: no bound; the
    `max_queued_jobs` setting, changed live with :meth:`set_limit`): a job over it is refused with
    :class:`QueueFullError` and every job already accepted still runs. Finished jobs are kept (the
    newest `keep_finished`) so that results, errors and final events can still be read.
    """

    def __init__(
        self, max_pending: int, devices: Sequence[str] = ("default",), keep_finished: int = 64,
        listener_buffer: int = 32, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 0 or not devices:
            raise ValueError("max_pending must be >= 0 and there must be at least one device")
        self.max_pending = max_pending
        self._devices = list(devices)
        self._keep_finished = keep_finished
        self._listener_buffer = listener_buffer
        self.clock = clock  # seconds, monotonic (tests pass their own)
        self._lock = threading.Condition()
        self._pending: deque[Job[Any]] = deque()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, Job[Any]] = {}  # device -> its job
        self._finished: OrderedDict[str, Job[Any]] = OrderedDict()
        self._closed = False


    def set_limit(self, max_pending: int) -> None:
        """Changes how many jobs may wait (0: no bound). Jobs already waiting stay queued."""
        if max_pending < 0:
            raise ValueError("max_pending must be >= 0")
        with self._lock:
            self.max_pending = max_pending

    def start(self) -> None:
        """Starts one worker per device (once)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue was closed")
            if self._threads:
                return
            for device in self._devices:
                thread = threading.Thread(target=self._work, args=(device,), name=f"easel-worker-{device}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Drops waiting jobs, interrupts running ones and waits up to `timeout` s for the workers."""
        with self._lock:
            self._closed = True
            for job in self._running.values():
                job._interrupt.set()
            while self._pending:
                self._finish(self._pending.popleft(), JobState.INTERRUPTED, None, None)
            self._lock.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


    def submit(self, fn: Callable[[JobContext], T], description: str = "", job_id: str | None = None) -> Job[T]:
        """Queues `fn`; `job_id` (the API's `force_task_id`) must not name a queued or running job."""
        with self._lock:
            if self._closed:
                raise UserError("the server is shutting down and takes no new jobs")
            if self.max_pending and len(self._pending) >= self.max_pending:
                raise QueueFullError(
                    f"the queue is full ({len(self._pending)} waiting); try again later, when a job has finished "
                    "(the limit is the max_queued_jobs setting)")
            if job_id is None:
                job_id = uuid.uuid4().hex
            elif self._live(str(job_id)) is not None:
                raise UserError(f"a job with id {job_id!r} is already queued or running; use another id")
            job: Job[T] = Job(self, str(job_id), description, fn)
            self._finished.pop(job.id, None)
            self._pending.append(job)
            self._lock.notify()
            return job

    def get(self, job_id: str) -> Job[Any] | None:
        """A queued, running or recently finished job."""
        with self._lock:
            return self._live(job_id) or self._finished.get(job_id)

    def pending(self) -> list[Job[Any]]:
        with self._lock:
            return list(self._pending)

    def running(self) -> list[Job[Any]]:
        with self._lock:
            return self._running_jobs()

    def current(self) -> tuple[Job[Any], ProgressEvent | None] | None:
        """The running job (the longest-running one when there are several) and its latest event."""
        with self._lock:
            jobs = self._running_jobs()
            return (jobs[0], jobs[0].last_event) if jobs else None


    def interrupt(self, job_id: str | None = None) -> bool:
        """Stops a running job at its next check, or removes a queued one. None = the running job(s).
        Returns whether any job was affected."""
        with self._lock:
            if job_id is None:
                targets = self._running_jobs()
            else:
                job = self._live(job_id)
                targets = [job] if job is not None else []
            for job in targets:
                job._interrupt.set()
                if job.state is JobState.QUEUED:
                    self._pending.remove(job)
                    self._finish(job, JobState.INTERRUPTED, None, None)
            return bool(targets)

    def skip(self, job_id: str | None = None) -> bool:
        """Asks a running job to move on to its next image. None = the running job(s)."""
        with self._lock:
            targets = self._running_jobs()
            if job_id is not None:
                targets = [job for job in targets if job.id == job_id]
            for job in targets:
                job._skip.set()
            return bool(targets)


    def subscribe(self, job_id: str, maxsize: int | None = None) -> Subscription:
        """Follows a job's events (from its latest one on) until its final event."""
        with self._lock:
            job = self._live(job_id) or self._finished.get(job_id)
            if job is None:
                raise JobNotFoundError(f"no job with id {job_id!r} is queued, running or recently finished")
            sub = Subscription(maxsize or self._listener_buffer, lambda s: self._unsubscribe(job, s))
            if job.last_event is not None:
                sub.push(job.last_event)
            if not job.done:
                job._listeners.append(sub)
            return sub

    def _live(self, job_id: str) -> Job[Any] | None:
        return next((job for job in (*self._pending, *self._running.values()) if job.id == job_id), None)

    def _running_jobs(self) -> list[Job[Any]]:
        return sorted(self._running.values(), key=lambda j: j._started_clock)

    def _position(self, job: Job[Any]) -> int | None:
        with self._lock:
            try:
                return self._pending.index(job)
            except ValueError:
                return None

    def _unsubscribe(self, job: Job[Any], sub: Subscription) -> None:
        with self._lock:
            if sub in job._listeners:
                job._listeners.remove(sub)

    def _publish(self, job: Job[Any], event: ProgressEvent) -> None:
        with self._lock:
            if job.done:
                return
            job.last_event = event
            for sub in job._listeners:
                sub.push(event)

    def _finish(self, job: Job[Any], state: JobState, value: Any, error: BaseException | None) -> None:
        job.state, job._value, job.error = state, value, error
        job.finished_at = time.time()
        base = job.last_event or ProgressEvent(job_id=job.id)
        final = replace(base, final=True, state=state.value, error=job.error_message, eta_seconds=0.0)
        job.last_event = final
        for sub in job._listeners:
            sub.push(final)
        job._listeners.clear()
        self._finished[job.id] = job
        while len(self._finished) > self._keep_finished:
            self._finished.popitem(last=False)
        job._done.set()

    def _work(self, device: str) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                job = self._pending.popleft()
                job.state, job.started_at, job._started_clock = JobState.RUNNING, time.time(), self.clock()
                self._running[device] = job
            value, error = None, None
            try:
                value = job._fn(JobContext(job, device, self))
                state = JobState.INTERRUPTED if job._interrupt.is_set() else JobState.DONE
            except JobInterrupted:
                state = JobState.INTERRUPTED
            except Exception as exc:  # a failing job must not stop the worker; the error is kept
                log.exception("job %s (%s) failed", job.id, job.description)
                state, error = JobState.FAILED, exc
            with self._lock:
                del self._running[device]
                self._finish(job, state, value, error)
