"""Giving freed memory back to the operating system.

glibc keeps large freed blocks in its heap for reuse, so after a checkpoint is evicted the process's
RSS stays as high as before (measured: 4.16 GB with one 2.13 GB model cached, 2.30 GB after
`malloc_trim`). Trimming makes the memory available to other programs and makes RSS mean something.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> None:
    """Returns free heap pages to the OS (glibc `malloc_trim`); does nothing elsewhere."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
