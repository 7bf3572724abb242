"""store.mapped: giving back the pages a process maps of a file, without losing any data."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

from store import open_store
from store.mapped import drop_mappings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


def resident_kib(path: str) -> int:
    """Rss of this process's mappings of path, from /proc/self/smaps."""
    total, current = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                current = len(fields) > 5 and fields[5] == path
            elif fields[0] == "Rss:" and current:
                total += int(fields[1])
    return total


def test_a_read_only_mapping_gives_its_pages_back_and_still_reads_the_same(tmp_path):
    path = str(tmp_path / "data")
    content = os.urandom(4 << 20)
    with open(path, "wb") as f:
        f.write(content)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:] == content  # every page touched
        assert resident_kib(path) >= 4000
        assert drop_mappings(lambda p: p == path) == 1
        assert resident_kib(path) < 100
        assert m[:] == content  # faulted back in from the file


def test_a_writable_mapping_is_left_alone(tmp_path):
    path = str(tmp_path / "data")
    with open(path, "wb") as f:
        f.write(b"\0" * (1 << 20))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE) as m:
        m[:5] = b"kept!"  # a private change that dropping the page would lose
        assert drop_mappings(lambda p: p == path) == 0
        assert m[:5] == b"kept!"


def test_other_files_are_not_touched(tmp_path):
    path, other = str(tmp_path / "a"), str(tmp_path / "b")
    for p in (path, other):
        with open(p, "wb") as f:
            f.write(os.urandom(1 << 20))
    with open(other, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        m[:]  # noqa: B018 - touch every page
        before = resident_kib(other)
        drop_mappings(lambda p: p == path)
        assert resident_kib(other) == before


def test_the_store_gives_back_what_reading_mapped(tmp_path):
    store = open_store(str(tmp_path / "data"), map_size=1 << 28)
    path = os.path.realpath(str(tmp_path / "data" / "data.mdb"))
    try:
        user = store.create_user("u", "not-a-real-hash", "u@example.org")
        account = user["accountId"]
        with store.write(account) as w:
            blobs = [w.put_blob(os.urandom(3000) + bytes([i % 256]), "application/octet-stream")["blobId"]
                     for i in range(2000)]
        with store.read(account) as r:
            assert all(r.blob(b) is not None for b in blobs)
        assert resident_kib(path) > 1000
        store.release_memory()
        assert resident_kib(path) < 100
        with store.read(account) as r:
            assert all(len(r.blob(b)) == 3001 for b in blobs)
    finally:
        store.close()
