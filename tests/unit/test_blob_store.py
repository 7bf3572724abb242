"""The store's blobs on their own: small ones in LMDB, large ones as files, holds and the collector."""

from __future__ import annotations

import hashlib
import os

import pytest

from store import NotFound, blobfiles, ids, open_store


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def store(data):
    s = open_store(str(data))
    s.inline_max = 1000  # anything above 1000 octets is a file in these tests
    yield s
    s.close()


@pytest.fixture
def account(store):
    return store.create_user("u", "hash", "u@example.com")["accountId"]


def put(store, account, data: bytes, streamed: bool = False) -> str:
    with store.write(account) as w:
        if streamed:
            with store.blob_sink() as sink:
                for i in range(0, len(data), 300):
                    sink.write(data[i:i + 300])
                sink.finish()
                return w.put_blob(sink, "application/octet-stream")["blobId"]
        return w.put_blob(data, "application/octet-stream")["blobId"]


def files(data) -> list[str]:
    return sorted(name for _, _, names in os.walk(data / "blobs") for name in names)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_small_blob_stays_in_lmdb_and_a_large_one_is_a_file_at_its_content_address(store, account, data,
                                                                                     streamed):
    small, large = b"s" * 1000, os.urandom(5000)
    small_id, large_id = put(store, account, small, streamed), put(store, account, large, streamed)
    assert large_id == ids.blob_id(hashlib.sha256(large).hexdigest())
    guid = ids.guid_of(large_id)
    assert (data / "blobs" / guid[:2] / guid).read_bytes() == large
    assert files(data) == [guid]  # no temp file left, the small blob is not a file
    with store.read(account) as r:
        assert r.blob(small_id) == small and r.blob(large_id) == large
        with r.open_blob(large_id) as f:
            f.seek(4990)
            assert f.read() == large[4990:]
        with r.open_blob(small_id) as f:
            assert f.read() == small
        assert r.blob_info(large_id)["size"] == 5000


def test_an_unstored_sink_leaves_no_file(store, data):
    with store.blob_sink() as sink:
        sink.write(os.urandom(4000))
        sink.finish()
    assert files(data) == []


def test_gc_removes_unreferenced_blobs_after_the_grace_period_but_never_held_or_emailed_ones(store, account, data):
    unused, held, mail = os.urandom(3000), os.urandom(3000), b"Subject: x\r\n\r\n" + b"y" * 3000
    unused_id, held_id = put(store, account, unused), put(store, account, held)
    small_id = put(store, account, b"tiny")
    with store.write(account) as w:
        w.put_blob(mail, "message/rfc822")
        inbox = next(m["id"] for m in w.mailboxes() if m["role"] == "inbox")
        email, _ = w.add_email({"size": len(mail), "thread_ids": []}, hashlib.sha256(mail).hexdigest(),
                               {inbox: True}, {}, 1_700_000_000)
        w.hold_blob(held_id, "queue:1")
    # within the grace period nothing goes
    report = store.collect_garbage(grace=3600)
    assert report["blobs"] == 0 and report["pending"] == 2
    assert store.collect_garbage(grace=0, dry_run=True)["blobs"] == 2
    report = store.collect_garbage(grace=0)
    assert report["blobs"] == 2 and report["bytes"] == 3000 + 4 and report["files"] == 1
    with store.read(account) as r:
        assert r.blob(unused_id) is None and r.blob(small_id) is None
        assert r.blob(held_id) == held and r.blob(email["blobId"]) == mail
        assert r.blob_holders(held_id) == ["queue:1"]
    assert ids.guid_of(unused_id) not in files(data)
    # released and destroyed: gone after the grace period that starts then
    with store.write(account) as w:
        w.release_blob(held_id, "queue:1")
        w.destroy_email(email["id"])
    assert store.collect_garbage(grace=3600)["blobs"] == 0
    assert store.collect_garbage(grace=0)["blobs"] == 2
    assert files(data) == []


def test_a_blob_two_accounts_have_stays_until_neither_has_it(store, account):
    other = store.create_user("v", "hash", "v@example.com")["accountId"]
    blob_id = put(store, account, os.urandom(2000))
    with store.read(account) as r, store.write(other) as w:
        assert w.grant_blob(blob_id, r)["size"] == 2000
    with store.write(other) as w:
        w.hold_blob(blob_id, "h")
    report = store.collect_garbage(grace=0)
    assert report["blobs"] == 0  # only the first account's access went
    with store.read(account) as r:
        assert r.blob(blob_id) is None
    with store.read(other) as r:
        assert len(r.blob(blob_id)) == 2000


def test_holding_a_blob_the_account_does_not_have_is_not_found(store, account):
    with pytest.raises(NotFound), store.write(account) as w:
        w.hold_blob("G" + "0" * 64, "h")


def test_an_orphan_file_no_commit_recorded_is_removed(store, data):
    guid = "ab" * 32
    os.makedirs(data / "blobs" / "ab", exist_ok=True)
    (data / "blobs" / "ab" / guid).write_bytes(b"x" * 10)
    assert store.collect_garbage(grace=3600)["files"] == 0
    assert store.collect_garbage(grace=0)["files"] == 1
    assert files(data) == []
    assert blobfiles.path_of(str(data), guid).endswith("/blobs/ab/" + guid)


@pytest.mark.parametrize("batch", [1, 3])
def test_gc_in_tiny_batches_removes_exactly_the_unreferenced_blobs(store, account, data, batch):
    other = store.create_user("v", "hash", "v@example.com")["accountId"]
    kinds: dict[str, list[str]] = {"unused": [], "held": [], "mail": [], "shared": []}
    with store.write(account) as w:
        inbox = next(m["id"] for m in w.mailboxes() if m["role"] == "inbox")
    for i in range(40):
        # every fourth is large (a file), so both kinds of content go through the batches
        body = os.urandom(1500 if i % 4 == 0 else 100)
        kind = ("unused", "held", "mail", "shared", "unused")[i % 5]
        with store.write(account) as w:
            if kind == "mail":
                raw = b"Subject: %d\r\n\r\n" % i + body
                w.put_blob(raw, "message/rfc822")
                email, _ = w.add_email({"size": len(raw), "thread_ids": []}, hashlib.sha256(raw).hexdigest(),
                                       {inbox: True}, {}, 1_700_000_000 + i)
                kinds[kind].append(email["blobId"])
                continue
            blob_id = w.put_blob(body, "application/octet-stream")["blobId"]
            if kind == "held":
                w.hold_blob(blob_id, f"queue:{i}")
        if kind == "shared":  # the other account keeps it: only this account's access goes
            with store.read(account) as r, store.write(other) as w:
                w.grant_blob(blob_id, r)
                w.hold_blob(blob_id, "h")
        kinds[kind].append(blob_id)
    with store.read(account) as r:
        expected_bytes = sum(r.blob_info(b)["size"] for b in kinds["unused"])
    unused_files = [b for b in kinds["unused"] if ids.guid_of(b) in files(data)]
    assert len(unused_files) == 4
    dry = store.collect_garbage(grace=0, dry_run=True, batch=batch)
    report = store.collect_garbage(grace=0, batch=batch)
    assert report["blobs"] == dry["blobs"] == len(kinds["unused"]) == 16
    assert report["bytes"] == dry["bytes"] == expected_bytes
    assert report["files"] == dry["files"] == len(unused_files)
    with store.read(account) as r:
        assert all(r.blob_info(b) is None for b in kinds["unused"] + kinds["shared"])
        assert all(r.blob(b) is not None for b in kinds["held"] + kinds["mail"])
    with store.read(other) as r:
        assert all(r.blob(b) is not None for b in kinds["shared"])
    assert not any(ids.guid_of(b) in files(data) for b in kinds["unused"])
    assert store.collect_garbage(grace=0, batch=batch)["blobs"] == 0


def test_gc_checks_each_candidate_again_under_the_writer_lock(store, account):
    """A blob referenced between the scan and its batch's deletion is kept."""
    blob_ids = [put(store, account, b"blob %d" % i) for i in range(6)]
    scan = store._gc_chunks

    def racing(db_name, batch, wanted):
        for chunk in scan(db_name, batch, wanted):
            if db_name == "blobref":
                with store.write(account) as w:  # a hold arrives after the scan saw the blob unreferenced
                    w.hold_blob(chunk[0].partition(b"\0")[2].decode(), "late")
            yield chunk

    store._gc_chunks = racing
    report = store.collect_garbage(grace=0, batch=2)
    store._gc_chunks = scan
    assert report["blobs"] == 3  # one of every batch of 2 was held in time
    with store.read(account) as r:
        assert sorted(b for b in blob_ids if r.blob_info(b) is not None) == sorted(
            b for b in blob_ids if r.blob_holders(b) == ["late"])
