"""The budget switch shared by the property tests in tests/fuzz/ and by bench/fuzz.py.

`@fuzz(examples, **strategies)` is `@given(**strategies)` with bounded settings: `examples` times
EASEL_FUZZ_SCALE (read at import; default 1, which keeps the whole directory to a few seconds of
examples per property), no deadline (a loaded machine would make one flaky: the properties that
are about time measure it themselves, with wide margins), no example database (nothing is
written under the repository). Each run of a property's body is counted in RUNS, so bench/fuzz.py
can report how many examples it ran, and stops the search with `TimeUp` once `stop_at()` has
passed, so bench/fuzz.py can give each property a time slice instead of a count.

`@example(...)` decorators go above `@fuzz(...)`, as above `@given(...)`.
"""

from __future__ import annotations

import inspect
import os
import time
from collections import Counter
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException

SCALE = float(os.environ.get("EASEL_FUZZ_SCALE", "1"))
RUNS: Counter[str] = Counter()
LAST_INPUT: dict[str, dict[str, Any]] = {}
FIRST_FAILURE: dict[str, tuple[dict[str, Any], str]] = {}  # before shrinking, which a time slice may cut short
_stop_at: float | None = None


class TimeUp(BaseException):
    """Raised inside a property when bench/fuzz.py's time slice is over. A BaseException, so
    hypothesis lets it through instead of taking it for a failure and shrinking it."""


def stop_at(deadline: float | None) -> None:
    """Properties stop (TimeUp) once time.monotonic() passes `deadline`; None: never."""
    global _stop_at
    _stop_at = deadline


def budget(examples: int) -> int:
    return max(1, int(examples * SCALE))


def fuzz(examples: int, shrink: bool = True, **strategies: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`shrink=False` for properties about time: a slow case is reported as found, not rerun
    dozens of times while hypothesis looks for a smaller one."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        name = test.__name__

        def counted(*args: Any, **kwargs: Any) -> None:
            if _stop_at is not None and time.monotonic() > _stop_at:
                raise TimeUp
            RUNS[name] += 1
            LAST_INPUT[name] = {**dict(zip(inspect.signature(test).parameters, args)), **kwargs}  # after a failure: the (shrunk) example hypothesis reran last
            try:
                test(*args, **kwargs)
            except HypothesisException:
                raise  # assume() and friends: not a failure
            except Exception as error:
                FIRST_FAILURE.setdefault(name, (LAST_INPUT[name], f"{type(error).__name__}: {error}"))
                raise

        # The test's own name and signature, for hypothesis and pytest.
        counted.__name__ = counted.__qualname__ = name
        counted.__module__, counted.__doc__ = test.__module__, test.__doc__
        counted.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]

        return settings(
            max_examples=budget(examples),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
            phases=list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate],
        )(given(**strategies)(counted))

    return decorate


def timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """The result (or the exception raised) and the CPU seconds `function(*args)` took: CPU time,
    not wall time, so a machine busy with other work does not fail a linear-time property."""
    started = time.process_time()
    try:
        result = function(*args)
    except Exception as error:  # the caller asserts on it
        result = error
    return result, time.process_time() - started
