"""Blobs in full, black-box: streamed upload and download with ranges and caching, durability, the
garbage collector, Blob/copy (RFC 8620 §6.3), Blob/upload, Blob/get, Blob/lookup (RFC 9404) and
the argument checks of Email/copy (RFC 8621 §4.7)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORE, MAIL, Jmap, Server, tidings, unique
from tests.test_blob_thread_identity import MIXED, download_url, message, upload_url

BLOB = "urn:ietf:params:jmap:blob"
USING = [CORE, MAIL, BLOB]


def call(client: Jmap, method: str, using: list[str] | None = None, **args) -> tuple[str, dict]:
    args.setdefault("accountId", client.account_id)
    name, result, _ = client.request([[method, args, "c0"]], using=using or USING)["methodResponses"][0]
    return name, result


def ok(client: Jmap, method: str, **args) -> dict:
    name, result = call(client, method, **args)
    assert name == method, result
    return result


def error(client: Jmap, method: str, using: list[str] | None = None, **args) -> dict:
    name, result = call(client, method, using=using, **args)
    assert name == "error", result
    return result


def status_of(path: str | int, field: str) -> int:
    """A field of /proc/PID/status, in kB."""
    for line in Path(f"/proc/{path}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def new_server(tmp_path: Path, env: dict | None = None) -> tuple[Server, Jmap]:
    data = tmp_path / "data"
    tidings("user", "add", "carol", "--password", "carol-pw", "--email", "carol@example.com", data=data)
    srv = Server(data, env=env)
    return srv, Jmap(srv, "carol", "carol-pw")


BIG = os.urandom(3 << 20)  # a blob kept as a file (above 1 MiB)


# ------------------------------------------------------------------------------------- session
def test_session_advertises_the_blob_capability_with_its_limits(alice):
    assert alice.session["capabilities"][BLOB] == {}
    account = alice.session["accounts"][alice.account_id]["accountCapabilities"][BLOB]
    assert account == {"maxSizeBlobSet": alice.session["capabilities"][CORE]["maxSizeUpload"],
                       "maxDataSources": 64, "supportedTypeNames": ["Email", "Mailbox", "Thread"],
                       "supportedDigestAlgorithms": ["sha", "sha-256"]}
    assert alice.session["primaryAccounts"][BLOB] == alice.account_id


# ----------------------------------------------------------------------------- download, ranges
@pytest.mark.parametrize("size", ["small", "large"])
def test_download_answers_ranges_with_206_and_content_range(alice, size):
    data = (f"{unique()}:".encode() + bytes(range(256)) * 4) if size == "small" else BIG
    blob = alice.upload(data, "application/octet-stream")
    url = download_url(alice, blob["blobId"], "f.bin")
    n = len(data)
    whole = alice.http.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(n)
    assert whole.headers["etag"] == f'"{blob["blobId"]}"'
    assert whole.headers["cache-control"] == "private, immutable, max-age=31536000"
    for spec, first, last in (("bytes=0-9", 0, 9), ("bytes=-5", n - 5, n - 1), ("bytes=10-", 10, n - 1),
                              (f"bytes=100-{n + 50}", 100, n - 1)):
        r = alice.http.get(url, headers={"Range": spec})
        assert r.status_code == 206, spec
        assert r.headers["content-range"] == f"bytes {first}-{last}/{n}", spec
        assert r.content == data[first:last + 1], spec
        assert r.headers["content-length"] == str(last - first + 1)
    r = alice.http.get(url, headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{n}"
    # not a range we answer partially: the whole blob
    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3"):
        r = alice.http.get(url, headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data, ignored


def test_download_revalidates_with_the_blob_id_as_a_strong_etag(alice):
    data = f"etag {unique()}".encode()
    blob = alice.upload(data, "text/plain")
    url = download_url(alice, blob["blobId"], "e.txt", "text/plain")
    etag = f'"{blob["blobId"]}"'
    r = alice.http.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert alice.http.get(url, headers={"If-None-Match": '"other"'}).content == data
    # If-Range with another validator: the whole blob rather than a range of something else
    r = alice.http.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == data
    r = alice.http.get(url, headers={"Range": "bytes=0-1", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[:2]


def test_a_body_part_download_answers_ranges_too(alice):
    binary = bytes(range(256)) * 4
    raw = MIXED.format(subject=unique("att"), msgid=unique("att"),
                       b64=base64.encodebytes(binary).decode().replace("\n", "\r\n").strip()).encode()
    email = alice.import_message(raw)
    [got] = alice.ok("Email/get", ids=[email["id"]], properties=["attachments"])["list"]
    part = next(a for a in got["attachments"] if a["name"] == "data.bin")
    r = alice.http.get(download_url(alice, part["blobId"], "data.bin"), headers={"Range": "bytes=256-511"})
    assert r.status_code == 206 and r.content == binary[256:512]
    assert r.headers["content-range"] == f"bytes 256-511/{len(binary)}"


# ----------------------------------------------------------------------- streaming, durability
def test_a_large_upload_and_download_stream_without_holding_the_blob_in_memory(tmp_path):
    srv, carol = new_server(tmp_path)
    try:
        size = 30 << 20
        chunk = os.urandom(1 << 20)
        digest = hashlib.sha256(chunk * 30).hexdigest()

        def body():
            for _ in range(30):
                yield chunk

        carol.upload(b"warm-up", "text/plain")  # the first upload's imports are not the blob's
        before = status_of(srv.proc.pid, "VmRSS")
        Path(f"/proc/{srv.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux)
        r = carol.http.post(upload_url(carol), content=body(), headers={"Content-Type": "application/x-big"})
        assert r.status_code == 201, r.text
        assert r.json()["size"] == size and r.json()["blobId"] == "G" + digest
        h = hashlib.sha256()
        with carol.http.stream("GET", download_url(carol, r.json()["blobId"], "big.bin")) as resp:
            assert resp.status_code == 200 and resp.headers["content-length"] == str(size)
            for piece in resp.iter_bytes():
                h.update(piece)
        assert h.hexdigest() == digest
        grown = status_of(srv.proc.pid, "VmHWM") - before  # kB
        assert grown < (size >> 10) // 3, f"the server's peak RSS grew by {grown} kB for a {size >> 20} MB blob"
    finally:
        srv.stop()


def test_a_large_attachment_downloads_as_a_stream_without_holding_its_message_in_memory(tmp_path):
    size = 40 << 20
    attachment = os.urandom(size)
    digest = hashlib.sha256(attachment).hexdigest()
    raw = MIXED.format(subject="big attachment", msgid=unique("big"),
                       b64=base64.encodebytes(attachment).decode().replace("\n", "\r\n").strip()).encode()
    data = tmp_path / "data"
    tidings("user", "add", "carol", "--password", "carol-pw", "--email", "carol@example.com", data=data)
    (tmp_path / "big.eml").write_bytes(raw)  # above maxSizeUpload: imported as an administrator would
    tidings("import", "--user", "carol", str(tmp_path / "big.eml"), data=data)
    del raw
    srv = Server(data)
    try:
        carol = Jmap(srv, "carol", "carol-pw")
        [email_id] = carol.ok("Email/query")["ids"]
        [got] = carol.ok("Email/get", ids=[email_id], properties=["attachments"],
                         bodyProperties=["blobId", "name"])["list"]
        blob_id = next(a for a in got["attachments"] if a["name"] == "data.bin")["blobId"]
        url = download_url(carol, blob_id, "data.bin")
        carol.http.get(url, headers={"If-None-Match": f'"{blob_id}"'})  # warm up the route
        before = status_of(srv.proc.pid, "VmRSS")
        Path(f"/proc/{srv.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux)
        h = hashlib.sha256()
        with carol.http.stream("GET", url) as resp:
            # not measured yet: sent whole, chunked, without Content-Length
            assert resp.status_code == 200 and "content-length" not in resp.headers
            assert resp.headers["etag"] == f'"{blob_id}"' and "immutable" in resp.headers["cache-control"]
            for piece in resp.iter_bytes():
                h.update(piece)
        assert h.hexdigest() == digest
        grown = status_of(srv.proc.pid, "VmHWM") - before  # kB
        assert grown < (size >> 10) // 4, f"the server's peak RSS grew by {grown} kB for a {size >> 20} MB attachment"
        # a range of it (the size is known now), then the whole with its length
        r = carol.http.get(url, headers={"Range": f"bytes={size - 1000}-"})
        assert r.status_code == 206 and r.content == attachment[-1000:]
        assert r.headers["content-range"] == f"bytes {size - 1000}-{size - 1}/{size}"
        with carol.http.stream("GET", url) as resp:
            assert resp.status_code == 200 and resp.headers["content-length"] == str(size)
            assert hashlib.sha256(resp.read()).hexdigest() == digest
        assert carol.http.get(url, headers={"If-None-Match": f'"{blob_id}"'}).status_code == 304
    finally:
        srv.stop()


def test_a_range_of_a_large_attachment_not_yet_measured(tmp_path):
    attachment = os.urandom(3 << 20)
    raw = MIXED.format(subject="att", msgid=unique("att"),
                       b64=base64.encodebytes(attachment).decode().replace("\n", "\r\n").strip()).encode()
    srv, carol = new_server(tmp_path)
    try:
        email = carol.import_message(raw)
        [got] = carol.ok("Email/get", ids=[email["id"]], properties=["attachments"])["list"]
        blob_id = next(a for a in got["attachments"] if a["name"] == "data.bin")["blobId"]
        r = carol.http.get(download_url(carol, blob_id), headers={"Range": "bytes=1000000-1000009"})
        assert r.status_code == 206 and r.content == attachment[1000000:1000010]
        assert r.headers["content-range"] == f"bytes 1000000-1000009/{len(attachment)}"
        r = carol.http.get(download_url(carol, blob_id), headers={"Range": f"bytes={len(attachment)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(attachment)}"
        # Blob/get reads it too (its size measured by a decoding pass)
        res = ok(carol, "Blob/get", ids=[blob_id], properties=["size", "digest:sha-256"])
        assert res["list"][0]["size"] == len(attachment)
        assert res["list"][0]["digest:sha-256"] == base64.b64encode(hashlib.sha256(attachment).digest()).decode()
    finally:
        srv.stop()


def test_an_acknowledged_upload_survives_kill_9(tmp_path):
    srv, carol = new_server(tmp_path)
    small = f"small {unique()}".encode()
    blobs = [carol.upload(data, "application/octet-stream") for data in (BIG, small)]
    srv.stop(kill=True)
    srv = Server(srv.data)
    try:
        carol = Jmap(srv, "carol", "carol-pw")
        for blob, data in zip(blobs, (BIG, small), strict=True):
            r = carol.http.get(download_url(carol, blob["blobId"]))
            assert r.status_code == 200 and r.content == data
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ GC
def test_gc_removes_unused_uploads_and_destroyed_mail_but_never_referenced_or_held_blobs(tmp_path):
    srv, carol = new_server(tmp_path)
    try:
        unused = carol.upload(BIG, "application/octet-stream")["blobId"]
        small_unused = carol.upload(b"tiny " + unique().encode(), "text/plain")["blobId"]
        held_data = f"queued message {unique()}".encode()
        held = carol.upload(held_data, "message/rfc822")["blobId"]
        kept_raw, _ = message(body="kept " + "x" * 2_000_000)
        kept = carol.import_message(kept_raw)
        gone_raw, _ = message(body="destroyed")
        gone = carol.import_message(gone_raw)
        assert carol.ok("Email/set", destroy=[gone["id"]])["destroyed"] == [gone["id"]]
        from store import open_store

        store = open_store(str(srv.data))
        with store.write(carol.account_id) as w:
            w.hold_blob(held, "submission:test")
        store.close()

        out = tidings("check", data=srv.data, check=False).stdout  # (the index may lag: exit 1)
        assert "blobs: 0 reclaimable" in out and "3 unreferenced within the grace period (3.0 MiB)" in out, out
        out = tidings("gc", "--grace", "0", "--dry-run", data=srv.data).stdout
        assert out.startswith("would reclaim 3 blobs and 1 files"), out
        out = tidings("gc", "--grace", "0", data=srv.data).stdout
        assert out.startswith("reclaimed 3 blobs and 1 files, 3.0 MiB (grace 0 s); 0 unreferenced"), out
        for blob_id in (unused, small_unused, gone["blobId"]):
            assert carol.http.get(download_url(carol, blob_id)).status_code == 404, blob_id
        assert carol.http.get(download_url(carol, held)).content == held_data
        assert carol.http.get(download_url(carol, kept["blobId"])).content == kept_raw
        blob_files = [n for _, _, names in os.walk(srv.data / "blobs") for n in names]
        assert blob_files == [kept["blobId"][1:]]  # the 2 MB message; the 3 MB upload's file is gone
        assert tidings("gc", "--grace", "0", data=srv.data).stdout.startswith("reclaimed 0 blobs and 0 files")
    finally:
        srv.stop()


def test_the_server_collects_by_itself_after_the_grace_period(tmp_path):
    srv, carol = new_server(tmp_path, env={"TIDINGS_BLOB_GRACE_SECONDS": "1", "TIDINGS_BLOB_GC_INTERVAL": "0.3"})
    try:
        blob = carol.upload(b"short-lived " + unique().encode(), "text/plain")["blobId"]
        url = download_url(carol, blob)
        assert carol.http.get(url).status_code == 200  # within the grace period
        deadline = time.time() + 10
        while carol.http.get(url).status_code == 200 and time.time() < deadline:
            time.sleep(0.2)
        assert carol.http.get(url).status_code == 404
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------- Blob/upload
def test_blob_upload_concatenates_text_base64_and_ranges_of_other_blobs(alice):
    base = alice.upload(b"0123456789", "text/plain")["blobId"]
    res = ok(alice, "Blob/upload", create={
        "a": {"data": [{"data:asText": "héllo "}, {"data:asBase64": base64.b64encode(b"\x00\xff").decode()},
                       {"blobId": base, "offset": 3, "length": 4}, {"blobId": base, "offset": 8}],
              "type": "application/x-mix"},
        "b": {"data": [{"blobId": "#a", "length": 6}, {"data:asText": "!"}]},
    })
    expected_a = "héllo ".encode() + b"\x00\xff" + b"3456" + b"89"
    a, b = res["created"]["a"], res["created"]["b"]
    assert a == {"id": "G" + hashlib.sha256(expected_a).hexdigest(), "type": "application/x-mix",
                 "size": len(expected_a)}
    assert b["size"] == 7 and b["type"] is None
    assert res["notCreated"] is None
    assert alice.http.get(download_url(alice, a["id"])).content == expected_a
    assert alice.http.get(download_url(alice, b["id"])).content == "héllo!".encode()


def test_blob_upload_creation_ids_are_usable_by_later_calls(alice):
    r = alice.request([
        ["Blob/upload", {"accountId": alice.account_id, "create": {"t": {"data": [{"data:asText": "ref me"}]}}}, "0"],
        ["Blob/get", {"accountId": alice.account_id, "ids": ["#t"], "properties": ["data:asText", "size"]}, "1"],
    ], using=USING)
    [upload, get] = r["methodResponses"]
    assert get[1]["list"] == [{"id": "#t", "data:asText": "ref me", "size": 6, "isEncodingProblem": False,
                               "isTruncated": False}] or \
        get[1]["list"] == [{"id": upload[1]["created"]["t"]["id"], "data:asText": "ref me", "size": 6,
                            "isEncodingProblem": False, "isTruncated": False}]


def test_blob_upload_refuses_bad_sources_each_with_its_set_error(alice):
    base = alice.upload(b"0123456789", "text/plain")["blobId"]
    missing = "G" + "0" * 64
    res = ok(alice, "Blob/upload", create={
        "notfound": {"data": [{"blobId": missing}]},
        "range": {"data": [{"blobId": base, "offset": 8, "length": 5}]},
        "two": {"data": [{"data:asText": "x", "data:asBase64": "eA=="}]},
        "b64": {"data": [{"data:asBase64": "not base64!"}]},
        "many": {"data": [{"data:asText": "x"}] * 65},
        "past": {"data": [{"blobId": base, "offset": 11}]},
        "big": {"data": [{"data:asText": "x" * 1000}] * 64},
        "extra": {"data": [], "name": "x"},
        "empty": {"data": []},
        "nulls": {"data": [{"data:asText": "n", "offset": None, "length": None}]},
    })
    nc = res["notCreated"]
    assert nc["notfound"]["type"] == "blobNotFound" and nc["notfound"]["notFound"] == [missing]
    assert nc["range"]["type"] == "invalidProperties" and nc["range"]["properties"] == ["data/0"]
    assert nc["two"]["type"] == "invalidProperties" and nc["two"]["properties"] == ["data/0"]
    assert nc["b64"]["type"] == "invalidProperties" and nc["b64"]["properties"] == ["data/0"]
    # RFC 9404 §3.1 maxDataSources bounds the sources, not the size: the UploadObject is invalid
    assert nc["many"]["type"] == "invalidProperties" and nc["many"]["properties"] == ["data"]
    assert nc["past"]["type"] == "invalidProperties" and nc["past"]["properties"] == ["data/0"]
    assert nc["extra"]["type"] == "invalidProperties" and nc["extra"]["properties"] == ["name"]
    assert sorted(res["created"]) == ["big", "empty", "nulls"] and res["created"]["empty"]["size"] == 0
    assert res["created"]["nulls"]["size"] == 1
    assert res["created"]["big"]["size"] == 64_000  # 64 sources are allowed (§3.1: at least 64)


def test_blob_upload_over_max_size_blob_set_is_too_large(alice):
    limit = alice.session["accounts"][alice.account_id]["accountCapabilities"][BLOB]["maxSizeBlobSet"]
    big = alice.upload(BIG, "application/octet-stream")["blobId"]
    n = limit // len(BIG) + 1  # the concatenation, not any one source, exceeds the limit
    res = ok(alice, "Blob/upload", create={"over": {"data": [{"blobId": big}] * n}})
    assert res["created"] is None
    assert res["notCreated"]["over"]["type"] == "tooLarge"


def test_blob_methods_need_the_blob_capability(alice):
    assert error(alice, "Blob/get", using=[CORE, MAIL], ids=[])["type"] == "unknownMethod"
    assert error(alice, "Blob/upload", using=[CORE], create={})["type"] == "unknownMethod"


# ------------------------------------------------------------------------------------- Blob/get
def test_blob_get_gives_text_base64_digests_and_size_of_a_range(alice):
    data = "Grüße, world".encode()
    blob = alice.upload(data, "text/plain")["blobId"]
    res = ok(alice, "Blob/get", ids=[blob, "G" + "1" * 64],
             properties=["data:asText", "data:asBase64", "digest:sha", "digest:sha-256", "size"])
    assert res["notFound"] == ["G" + "1" * 64]
    assert res["list"] == [{
        "id": blob, "data:asText": "Grüße, world", "data:asBase64": base64.b64encode(data).decode(),
        "digest:sha": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "digest:sha-256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "size": len(data), "isEncodingProblem": False, "isTruncated": False}]
    [ranged] = ok(alice, "Blob/get", ids=[blob], properties=["data", "digest:sha-256", "size"],
                  offset=9, length=5)["list"]  # ü and ß are 2 octets each
    assert ranged == {"id": blob, "data:asText": "world", "size": len(data), "isEncodingProblem": False,
                      "isTruncated": False,
                      "digest:sha-256": base64.b64encode(hashlib.sha256(b"world").digest()).decode()}
    [past] = ok(alice, "Blob/get", ids=[blob], properties=["data:asText"], offset=9, length=50)["list"]
    assert past["data:asText"] == "world" and past["isTruncated"] is True
    # RFC 9404 §4.2: a null length is the rest of the blob, truncated only if the offset is past its end
    [rest] = ok(alice, "Blob/get", ids=[blob], properties=["data:asText"], offset=len(data))["list"]
    assert rest["data:asText"] == "" and rest["isTruncated"] is False
    [beyond] = ok(alice, "Blob/get", ids=[blob], properties=["data:asBase64", "size"], offset=len(data) + 1)["list"]
    assert beyond == {"id": blob, "data:asBase64": "", "size": len(data), "isTruncated": True}


def test_blob_get_reports_an_encoding_problem_and_falls_back_to_base64(alice):
    data = b"\xff\xfe binary " + unique().encode()
    blob = alice.upload(data, "application/octet-stream")["blobId"]
    [text] = ok(alice, "Blob/get", ids=[blob], properties=["data:asText"])["list"]
    assert text["data:asText"] is None and text["isEncodingProblem"] is True
    [any_] = ok(alice, "Blob/get", ids=[blob])["list"]  # default properties: data, size
    assert any_["data:asBase64"] == base64.b64encode(data).decode() and any_["size"] == len(data)
    assert "data:asText" not in any_


def test_blob_get_refuses_unknown_properties_and_null_ids(alice):
    assert error(alice, "Blob/get", ids=["x"], properties=["digest:md5"])["type"] == "invalidArguments"
    assert error(alice, "Blob/get", ids=None)["type"] == "invalidArguments"


# ---------------------------------------------------------------------------------- Blob/lookup
def test_blob_lookup_maps_a_message_and_its_parts_to_the_email_its_mailboxes_and_thread(alice):
    raw, _ = message(body=f"lookup {unique()}")
    email = alice.import_message(raw)
    [got] = alice.ok("Email/get", ids=[email["id"]], properties=["threadId", "mailboxIds", "textBody"])["list"]
    part = got["textBody"][0]["blobId"]
    unused = alice.upload(f"unused {unique()}".encode(), "text/plain")["blobId"]
    no_part = part.rpartition(".")[0] + ".9"  # a partId the message does not have
    res = ok(alice, "Blob/lookup", typeNames=["Email", "Mailbox", "Thread"],
             ids=[email["blobId"], part, unused, "G" + "2" * 64, no_part, "not-a-blob"])
    matched = {"Email": [email["id"]], "Mailbox": sorted(got["mailboxIds"]), "Thread": [got["threadId"]]}
    nothing = {"Email": [], "Mailbox": [], "Thread": []}
    # RFC 9404 §4.3: a blob that is not visible or does not exist still gets an empty array per type
    assert res["list"] == [{"id": email["blobId"], "matchedIds": matched}, {"id": part, "matchedIds": matched},
                           {"id": unused, "matchedIds": nothing}, {"id": "G" + "2" * 64, "matchedIds": nothing},
                           {"id": no_part, "matchedIds": nothing}, {"id": "not-a-blob", "matchedIds": nothing}]
    assert res["notFound"] == []
    only = ok(alice, "Blob/lookup", typeNames=["Thread"], ids=[part])["list"]
    assert only == [{"id": part, "matchedIds": {"Thread": [got["threadId"]]}}]


def test_blob_lookup_of_an_unknown_type_is_unknown_data_type(alice):
    assert error(alice, "Blob/lookup", typeNames=["Email", "Calendar"], ids=[])["type"] == "unknownDataType"


# ------------------------------------------------------------------------------------ Blob/copy
def test_blob_copy_within_the_own_account_and_of_a_part(alice):
    data = f"copy me {unique()}".encode()
    blob = alice.upload(data, "text/plain")["blobId"]
    binary = bytes(range(256)) * 2
    raw = MIXED.format(subject=unique("att"), msgid=unique("att"),
                       b64=base64.encodebytes(binary).decode().replace("\n", "\r\n").strip()).encode()
    email = alice.import_message(raw)
    [got] = alice.ok("Email/get", ids=[email["id"]], properties=["attachments"])["list"]
    part = next(a for a in got["attachments"] if a["name"] == "data.bin")["blobId"]
    res = ok(alice, "Blob/copy", fromAccountId=alice.account_id, blobIds=[blob, part, "G" + "3" * 64])
    assert res["fromAccountId"] == res["accountId"] == alice.account_id
    assert res["copied"] == {blob: blob, part: "G" + hashlib.sha256(binary).hexdigest()}
    assert res["notCopied"]["G" + "3" * 64]["type"] == "notFound"
    assert alice.http.get(download_url(alice, res["copied"][part])).content == binary


def test_blob_copy_from_or_to_an_account_the_user_cannot_access_is_refused(alice, bob):
    blob = bob.upload(f"bob's {unique()}".encode(), "text/plain")["blobId"]
    assert error(alice, "Blob/copy", fromAccountId=bob.account_id, blobIds=[blob])["type"] == "fromAccountNotFound"
    assert error(alice, "Blob/copy", fromAccountId=alice.account_id, accountId=bob.account_id,
                 blobIds=[blob])["type"] == "accountNotFound"
    assert error(alice, "Blob/copy", fromAccountId=alice.account_id, blobIds="x")["type"] == "invalidArguments"


# ----------------------------------------------------------------------------------- Email/copy
def test_email_copy_into_the_same_account_is_invalid_arguments(alice):
    raw, _ = message(body=f"copy {unique()}")
    email = alice.import_message(raw)
    err = error(alice, "Email/copy", fromAccountId=alice.account_id,
                create={"c": {"id": email["id"], "mailboxIds": {alice.mailbox("archive"): True}}})
    assert err["type"] == "invalidArguments"


def test_email_copy_from_another_users_account_is_from_account_not_found(alice, bob):
    raw, _ = message(body=f"copy {unique()}")
    email = bob.import_message(raw)
    err = error(alice, "Email/copy", fromAccountId=bob.account_id,
                create={"c": {"id": email["id"], "mailboxIds": {alice.mailbox("inbox"): True}}})
    assert err["type"] == "fromAccountNotFound"
    err = error(alice, "Email/copy", fromAccountId=alice.account_id, accountId=bob.account_id, create={})
    assert err["type"] == "accountNotFound"
    assert error(alice, "Email/copy", fromAccountId=5, create={})["type"] == "invalidArguments"


def test_download_of_a_blob_after_its_upload_is_byte_exact_over_http2_less_clients(alice):
    """A plain HTTP/1.0-style client without keep-alive reads the same bytes (Content-Length set)."""
    data = os.urandom(1 << 21)
    blob = alice.upload(data, "application/octet-stream")["blobId"]
    r = httpx.get(download_url(alice, blob), auth=("alice", "alice-pw"), headers={"Connection": "close"})
    assert r.status_code == 200 and r.content == data and r.headers["content-length"] == str(len(data))
