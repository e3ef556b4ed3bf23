"""What each browser session has running and has made, keyed by Gradio's session hash.

Interrupt, Skip and the buttons under the gallery act on the caller's own job and images only, so
two people on one server never stop or reuse each other's work. One object per app, passed in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class Outcome:
    """The images of a session's last finished generation, with what the gallery shows beside them."""

    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)
    selected: int = 0
    has_grid: bool = False  # the first image is the grid of the others
    maps: int = 0  # the last images are this many ControlNet maps, then `boxes` detailer previews
    boxes: int = 0

    def pick(self) -> int | None:
        """The selected image's index, or None when there are no images."""
        if not self.images:
            return None
        return min(max(self.selected, 0), len(self.images) - 1)


def session_key(request: object) -> str:
    """The caller's key from a `gr.Request` (its session hash; API callers without one share one)."""
    return getattr(request, "session_hash", None) or "anonymous"


class SessionRuns:
    """session hash -> its running job id and its last outcome. Bounded: oldest sessions go first."""

    def __init__(self, keep: int = 256) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, str] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._keep = keep

    def start(self, session: str, job_id: str) -> None:
        with self._lock:
            self._jobs[session] = job_id

    def finish(self, session: str, job_id: str, outcome: Outcome | None) -> None:
        with self._lock:
            if self._jobs.get(session) == job_id:
                del self._jobs[session]
            if outcome is not None:
                self._outcomes.pop(session, None)
                self._outcomes[session] = outcome
                while len(self._outcomes) > self._keep:
                    self._outcomes.pop(next(iter(self._outcomes)))

    def job(self, session: str) -> str | None:
        with self._lock:
            return self._jobs.get(session)

    def outcome(self, session: str) -> Outcome | None:
        with self._lock:
            return self._outcomes.get(session)

    def picked(self, session: str) -> tuple[Outcome, int] | None:
        """The session's last outcome and its selected image's index; None when it has no images."""
        outcome = self.outcome(session)
        index = outcome.pick() if outcome is not None else None
        return (outcome, index) if outcome is not None and index is not None else None

    def select(self, session: str, index: int) -> Outcome | None:
        with self._lock:
            outcome = self._outcomes.get(session)
            if outcome is not None:
                outcome.selected = index
            return outcome
