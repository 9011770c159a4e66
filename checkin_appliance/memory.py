"""Keep the resident size flat on a small box: three settings of glibc's allocator.

Every scrypt hash (login) allocates a 16 MiB buffer in a worker thread. glibc raises its
mmap threshold after the first such buffer is freed, so the next ones come from per-thread
heaps that never shrink: eight logins left ~95 MB resident instead of ~45 MB. A fixed
threshold keeps big buffers in mmap, returned to the system when freed.

glibc also gives each thread that allocates at the same time as another its own heap (up to
eight per core), and each keeps its free pages. Two heaps are enough here: the main thread's
(the event loop) and one that SQLite's two threads, photo decodes and logins share. That
saves ~0.5 MiB at the 200-subscriber peak of `make bench` against glibc's default. One heap
for all saved no more, but cost the single-subscriber check-in cell ~10 % (A/B, 10 runs
each): SQLite works outside the GIL, so the writer's allocations and the loop's fought over
the one heap's lock.

A photo's decode frees many small buffers in the middle of the heap, which glibc keeps;
`return_free_memory()` after each photo hands those pages back (~0.5 MiB at that peak,
a fraction of a millisecond a photo).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)

# From glibc's malloc.h.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2  # the event loop's heap, and one for every other thread


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None elsewhere (musl, macOS), where nothing is needed or done."""
    for name in ("libc.so.6", ctypes.util.find_library("c")):
        if not name:
            continue
        try:
            libc = ctypes.CDLL(name)
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.mallopt.restype = ctypes.c_int
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            continue
        return libc
    return None


def tune_allocator() -> bool:
    """At start, before any thread: True when glibc took both settings."""
    libc = _libc()
    if libc is None:
        return False
    ok = True
    for option, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_ARENA_MAX, ARENA_MAX)):
        if libc.mallopt(option, value) != 1:
            log.debug("mallopt(%d, %d) was refused", option, value)
            ok = False
    return ok


def return_free_memory() -> None:
    """Hands the heap's free pages back to the kernel (glibc's malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
