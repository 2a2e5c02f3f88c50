"""Give memory the node freed back to the operating system (glibc's malloc).

A node's transient work comes in large pieces (a POST of thousands of jobs,
its parsed items and raft command; a tick's callback bodies; a page of
10,000 jobs) between small objects that live on. glibc keeps freed space
inside its heap while a live chunk sits above it, and after the first large
buffer is freed it raises its mmap threshold (up to 32 MB), so later large
buffers land in that heap too. ``bench/isolation.py`` (a receiver that never
answers, then its jobs paused) measured a node whose live heap was back to
18 MB over its start while the heap still held 251 MB of free chunks: RSS
stayed 260 MB up, and the memory guard (``MaxMemory``, which reads RSS)
counted that as used.

Two remedies, both no-ops where the C library is not glibc:

* :func:`configure`, once at start: buffers of at least ``MMAP_THRESHOLD``
  bytes are mapped on their own and unmapped when freed (fixing the threshold
  also stops glibc from raising it);
* :class:`Trimmer`, every ``period`` seconds off the event loop: when the
  heap holds more than ``TRIM_FREE_BYTES`` free, ``malloc_trim(0)`` returns
  the free pages inside it (not only its top) to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 * 1024
"""Bytes from which one allocation gets its own mapping (glibc's default is
128 KB, raised up to 32 MB as large buffers are freed)."""
TRIM_FREE_BYTES = 32 * 2**20
"""Free bytes inside the heap above which the trimmer gives them back."""
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers of glibc's malloc.h
_M_TRIM_THRESHOLD = -1


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class Heap:
    """glibc's heap now: bytes in use, and bytes free inside it (all arenas)."""

    in_use: int
    free: int


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc with ``mallinfo2`` (2.33+), else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError, ValueError):
        return None
    return libc


_LIBC = _glibc()


def configure() -> bool:
    """Fix glibc's mmap threshold (see the module's docstring); False where
    there is no glibc. Call once, early: it applies to later allocations."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    # Fixed too (the mmap threshold no longer moves it): a free at the top of
    # the heap beyond this is given back at once.
    ok = bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)) and ok
    return ok


def heap() -> Heap | None:
    """The heap's figures (a walk of its free lists: call off the event loop)."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return Heap(in_use=info.uordblks + info.hblkhd, free=info.fordblks)


def trim(free_over: int = TRIM_FREE_BYTES) -> int:
    """Give the heap's free pages back when more than ``free_over`` bytes are
    free in it; return how many free bytes it held (0 when it did not trim)."""
    found = heap()
    if found is None or found.free <= free_over:
        return 0
    assert _LIBC is not None
    _LIBC.malloc_trim(0)
    return found.free


class Trimmer:
    """Calls :func:`trim` every ``period`` seconds in a worker thread (ctypes
    releases the GIL: the event loop keeps running meanwhile)."""

    def __init__(self, period: float = 1.0, free_over: int = TRIM_FREE_BYTES) -> None:
        self._period = period
        self._free_over = free_over

    async def run(self) -> None:
        if _LIBC is None:
            return
        while True:
            await asyncio.sleep(self._period)
            freed = await asyncio.to_thread(trim, self._free_over)
            if freed:
                log.debug("gave %d MB of free heap back to the system", freed // 2**20)
