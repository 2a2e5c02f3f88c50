"""allocator.trim gives the heap's free pages back to the system (glibc only)."""

from __future__ import annotations

import pytest

from scheduler0.daemon import allocator

MB = 2**20

pytestmark = pytest.mark.skipif(
    allocator.heap() is None, reason="the C library is not glibc 2.33+ (no mallinfo2)"
)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def fragment(big: int = 20_000, count: int = 10_000) -> list[bytes]:
    """Leave ~``big * count`` bytes free inside the heap, behind small live
    objects allocated between them (what a tick of 20 KB callbacks left)."""
    keep: list[bytes] = []
    freed: list[bytes] = []
    for n in range(count):
        freed.append(bytes(big))
        keep.append(n.to_bytes(64, "big"))
    del freed
    return keep


def test_trim_gives_the_free_heap_back() -> None:
    keep = fragment()
    found = allocator.heap()
    assert found is not None and found.free > 150 * MB  # freed, yet inside the heap
    before = rss()
    freed = allocator.trim(free_over=32 * MB)
    assert freed == found.free
    assert before - rss() > 150 * MB
    assert len(keep) == 10_000  # the live objects stay


def test_trim_does_nothing_while_little_is_free() -> None:
    allocator.trim(free_over=0)  # start from a trimmed heap
    found = allocator.heap()
    assert found is not None and found.free < 32 * MB
    assert allocator.trim(free_over=32 * MB) == 0
