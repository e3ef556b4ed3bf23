"""What a running job tells its listeners: `ProgressEvent`s, delivered through bounded `Subscription`s
that drop the oldest event when a listener falls behind, never the final one (modules/jobs.py)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job. `image_index`/`image_count` count what the engine loops over (A1111's
    `job_no`/`job_count`: batches). Empty `job_id` and missing `eta_seconds` are filled in by
    :meth:`JobContext.report`. The last event of a job has ``final=True``, its end `state` and,
    for a failed job, the `error` text."""

    job_id: str = ""
    image_index: int = 0
    image_count: int = 1
    step: int = 0
    steps: int = 0
    eta_seconds: float | None = None
    preview: Any = None
    textinfo: str | None = None
    final: bool = False
    state: str = JobState.RUNNING.value
    error: str | None = None

    @property
    def fraction(self) -> float:
        """How much of the job is done, 0..1."""
        if self.image_count <= 0:
            return 0.0
        part = self.step / self.steps if self.steps > 0 else 0.0
        return min(1.0, (self.image_index + part) / self.image_count)


class Subscription:
    """Events of one job, oldest first, ending after the final event.

    The buffer is bounded so that a slow reader never holds up the worker: when it is full the
    oldest event is dropped (counted in `dropped`). The final event comes last and is never dropped.
    """

    def __init__(self, maxsize: int, on_close: Callable[[Subscription], None] | None = None) -> None:
        self._events: deque[ProgressEvent] = deque()
        self._maxsize = max(1, maxsize)
        self._cond = threading.Condition()
        self._ended = False
        self._on_close = on_close
        self.dropped = 0

    def push(self, event: ProgressEvent) -> None:
        with self._cond:
            if self._ended:
                return
            if len(self._events) >= self._maxsize:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._ended = event.final
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> ProgressEvent | None:
        """The next event; None on timeout or once the final event has been taken."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._events or self._ended, timeout):
                return None
            return self._events.popleft() if self._events else None

    def __iter__(self) -> Iterator[ProgressEvent]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        """Stops listening; the worker forgets this subscription."""
        with self._cond:
            self._ended = True
            self._events.clear()
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)
