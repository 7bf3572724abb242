"""Giving back a process's mappings of files (Linux): `madvise(MADV_DONTNEED)` on its read-only
mappings of them.  The data stays in the files and in the page cache; a page faults back in when it
is read again.  A process's RSS counts every file page it maps and has touched: without this, a
bulk import's RSS grows with the data it wrote and read back (LMDB's map) and with the index
segments its merges read (the search engine's maps), though none of it is memory it holds."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

_MADV_DONTNEED = 4


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def drop_mappings(wanted: Callable[[str], bool]) -> int:
    """Drops the resident pages of this process's read-only mappings of the files whose path
    `wanted(path)` accepts; returns how many mappings it advised.  A writable mapping is left alone
    (dropping one that is private would lose its changes).  Where /proc is missing: nothing."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    done = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or not wanted(fields[5].rstrip("\n")):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        _libc().madvise(start, end - start, _MADV_DONTNEED)
        done += 1
    return done
