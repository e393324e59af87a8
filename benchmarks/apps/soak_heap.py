"""What the soak apps report about their own memory, beside RSS.

RSS alone cannot tell memory still held from memory freed but kept by the C allocator (glibc
keeps freed heap pages unless they are at the top of the heap), so the apps also report the
bytes glibc's malloc has handed out and not got back (``mallinfo2``: ``uordblks`` + ``hblkhd``).
Big buffers (messages, attachments, socket reads) live there; Python's small objects live in
pymalloc arenas outside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
from typing import Any

# struct mallinfo2 (glibc 2.33+), in order.
_FIELDS = [
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
]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _mallinfo2() -> Any:
    """glibc's mallinfo2 (2.33+), or None where there is none (musl, macOS, old glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def rss_kib() -> int:
    """Resident memory now, from /proc (Linux); the peak from getrusage elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def heap(collect: bool) -> dict[str, int | None]:
    """RSS and malloc's bytes in use, in KiB; ``collect`` runs gc.collect() first."""
    if collect:
        gc.collect()
    in_use = None
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        in_use = (info.uordblks + info.hblkhd) // 1024
    return {"rss_kib": rss_kib(), "malloc_in_use_kib": in_use}
