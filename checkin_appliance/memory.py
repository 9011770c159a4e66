"""Keep the resident size flat on a small box.

Every scrypt hash (login) allocates a 16 MiB buffer in a worker thread. glibc raises its
mmap threshold after the first such buffer is freed, so the next ones come from per-thread
heaps that never shrink: eight logins left ~95 MB resident instead of ~45 MB. A fixed
threshold keeps big buffers in mmap, returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024


def keep_large_allocations_returnable() -> bool:
    """True when glibc took the setting; elsewhere (musl, macOS) nothing is needed or done."""
    for name in ("libc.so.6", ctypes.util.find_library("c")):
        if not name:
            continue
        try:
            mallopt = ctypes.CDLL(name).mallopt
            break
        except (OSError, AttributeError):
            continue
    else:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")
    return ok
