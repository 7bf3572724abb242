"""Binary data (RFC 8620 §6), Thread (RFC 8621 §3), Identity (RFC 8621 §6) and the EventSource push
resource (RFC 8620 §7.3), black-box over HTTP."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import urllib.parse

import httpx

from tests.conftest import CORE, Jmap, unique


# ----------------------------------------------------------------------------------------- helpers
def message(subject: str | None = None, msgid: str | None = None, in_reply_to: str | None = None,
            references: list[str] | None = None, body: str = "Hello.",
            date: str = "Mon, 01 Jan 2024 10:00:00 +0000") -> tuple[bytes, str]:
    msgid = msgid or f"<{unique('m')}@test.example>"
    lines = ["From: Sender <sender@example.com>", "To: Alice <alice@example.com>",
             f"Subject: {subject or unique('subj')}", f"Message-ID: {msgid}", f"Date: {date}"]
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append("References: " + " ".join(references))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode(), msgid


def download_url(client: Jmap, blob_id: str, name: str = "file", type_: str = "application/octet-stream",
                 account_id: str | None = None) -> str:
    template = client.session["downloadUrl"]
    values = {"accountId": account_id or client.account_id, "blobId": blob_id, "name": name, "type": type_}
    for key, value in values.items():
        template = template.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    return urllib.parse.urljoin(client.server.base + "/.well-known/jmap", template)


def upload_url(client: Jmap, account_id: str | None = None) -> str:
    url = client.session["uploadUrl"].replace("{accountId}", account_id or client.account_id)
    return urllib.parse.urljoin(client.server.base + "/.well-known/jmap", url)


def disposition_filename(header: str) -> str | None:
    """The filename of a Content-Disposition header (RFC 6266: filename* wins over filename)."""
    params = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        params[key.strip().lower()] = value.strip()
    if "filename*" in params:
        charset, _, rest = params["filename*"].partition("'")
        _, _, encoded = rest.partition("'")
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8")
    if "filename" in params:
        return params["filename"].strip('"')
    return None


# ------------------------------------------------------------------------------------------ upload
def test_upload_returns_201_with_blob_id_size_and_type(alice):
    data = f"some bytes {unique()}".encode() + bytes(range(256))
    r = alice.http.post(upload_url(alice), content=data, headers={"Content-Type": "application/x-test"})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["accountId"] == alice.account_id
    assert isinstance(info["blobId"], str) and info["blobId"]
    assert info["size"] == len(data)
    assert info["type"] == "application/x-test"


def test_upload_of_an_empty_body_is_a_blob_of_size_zero(alice):
    r = alice.http.post(upload_url(alice), content=b"", headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 0


def test_upload_to_another_users_account_is_refused(alice, bob):
    r = alice.http.post(upload_url(alice, bob.account_id), content=b"intrusion",
                        headers={"Content-Type": "text/plain"})
    assert r.status_code in (403, 404), r.text


def test_upload_larger_than_max_size_upload_is_refused(alice):
    limit = alice.session["capabilities"][CORE]["maxSizeUpload"]
    assert limit <= 100_000_000, "test would stream too much"
    chunk = b"z" * (1 << 20)

    def body():
        sent = 0
        while sent <= limit:
            yield chunk
            sent += len(chunk)

    r = alice.http.post(upload_url(alice), content=body(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code in (400, 413), r.status_code
    problem = r.json()
    assert problem["type"] == "urn:ietf:params:jmap:error:limit" and problem["limit"] == "maxSizeUpload", problem
    # the server is fine afterwards
    assert alice.upload(b"small")["size"] == 5


# ---------------------------------------------------------------------------------------- download
def test_download_returns_the_uploaded_bytes_with_name_and_type_from_the_url(alice):
    data = f"report {unique()}\n".encode() + bytes(range(256))
    blob = alice.upload(data, "application/octet-stream")
    name = "quarterly report \u00e9t\u00e9.bin"
    r = alice.http.get(download_url(alice, blob["blobId"], name=name, type_="application/pdf"))
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["content-type"].split(";")[0] == "application/pdf"
    assert disposition_filename(r.headers["content-disposition"]) == name
    r = alice.http.get(download_url(alice, blob["blobId"], name="plain.txt", type_="text/plain"))
    assert r.headers["content-type"].split(";")[0] == "text/plain"
    assert disposition_filename(r.headers["content-disposition"]) == "plain.txt"
    assert r.content == data


def test_download_name_with_reserved_characters_round_trips(alice):
    """The URL template is RFC 6570 level 1: a "/" or "?" in the name is percent-encoded into one path
    segment, and the server must still find the blob and return the name."""
    data = f"slashes {unique()}".encode()
    blob = alice.upload(data, "text/plain")
    for name in ("minutes 1/2.txt", "what?.txt", "100% done #1.txt"):
        r = alice.http.get(download_url(alice, blob["blobId"], name=name, type_="text/plain"))
        assert r.status_code == 200, (name, r.status_code)
        assert r.content == data
        assert disposition_filename(r.headers["content-disposition"]) == name


def test_download_with_a_type_that_cannot_be_a_header_is_refused_cleanly(alice):
    """The `type` variable comes from the client: one that cannot be sent as a Content-Type (control
    characters) must get an HTTP error response, not a dropped connection, and never a forged header."""
    blob = alice.upload(f"typed {unique()}".encode(), "text/plain")
    for bad in ("text/plain\r\nX-Injected: 1", "text/plain\nX-Injected: 1", "text/\x00plain"):
        try:
            r = alice.http.get(download_url(alice, blob["blobId"], type_=bad))
        except httpx.TransportError as exc:
            raise AssertionError(f"type {bad!r}: the server dropped the connection ({exc!r})") from None
        assert "x-injected" not in r.headers
        assert r.status_code in (200, 400), (bad, r.status_code)
        if r.status_code == 200:
            assert "\n" not in r.headers["content-type"] and "\x00" not in r.headers["content-type"]


def test_download_of_an_unknown_blob_is_404(alice):
    r = alice.http.get(download_url(alice, "G" + "0" * 64))
    assert r.status_code == 404
    r = alice.http.get(download_url(alice, "nonsense-blob-id"))
    assert r.status_code == 404


def test_download_of_another_users_blob_is_404(alice, bob):
    secret = f"bob's secret {unique()}".encode()
    blob = bob.upload(secret, "text/plain")
    assert bob.http.get(download_url(bob, blob["blobId"])).content == secret
    r = alice.http.get(download_url(alice, blob["blobId"]))  # alice's account, bob's blob
    assert r.status_code == 404, r.status_code
    assert secret not in r.content
    r = alice.http.get(download_url(alice, blob["blobId"], account_id=bob.account_id))
    assert r.status_code in (403, 404), r.status_code
    assert secret not in r.content


def test_blob_of_an_email_in_another_account_is_not_readable(alice, bob):
    raw, _ = message(body=f"private {unique()}")
    email = bob.import_message(raw)
    assert bob.http.get(download_url(bob, email["blobId"])).content == raw
    assert alice.http.get(download_url(alice, email["blobId"])).status_code == 404


MIXED = (
    "From: Sender <sender@example.com>\r\n"
    "To: alice@example.com\r\n"
    "Subject: {subject}\r\n"
    "Message-ID: <{msgid}@test.example>\r\n"
    "Date: Tue, 02 Jan 2024 09:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "--outer\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Caf=C3=A9 see the attachments.\r\n"
    "--outer\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "{b64}\r\n"
    "--outer\r\n"
    "Content-Type: text/csv; charset=utf-8; name=\"table.csv\"\r\n"
    "Content-Disposition: attachment; filename=\"table.csv\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "a,b=0D=0A1,2=0D=0A\r\n"
    "--outer--\r\n"
)


def test_body_part_blobs_from_email_get_are_downloadable_and_decoded(alice):
    binary = bytes(range(256)) * 4
    raw = MIXED.format(subject=unique("att"), msgid=unique("att"),
                       b64=base64.encodebytes(binary).decode().replace("\n", "\r\n").strip()).encode()
    email = alice.import_message(raw)
    [got] = alice.ok("Email/get", ids=[email["id"]],
                     properties=["attachments", "textBody", "bodyStructure", "hasAttachment", "blobId"],
                     bodyProperties=["partId", "blobId", "size", "name", "type", "subParts"])["list"]
    assert got["hasAttachment"] is True
    by_name = {a["name"]: a for a in got["attachments"]}
    assert set(by_name) == {"data.bin", "table.csv"}, got["attachments"]

    r = alice.http.get(download_url(alice, by_name["data.bin"]["blobId"], "data.bin", "application/octet-stream"))
    assert r.status_code == 200, r.text
    assert r.content == binary
    assert by_name["data.bin"]["size"] == len(binary)

    r = alice.http.get(download_url(alice, by_name["table.csv"]["blobId"], "table.csv", "text/csv"))
    assert r.status_code == 200 and r.content == b"a,b\r\n1,2\r\n"

    [text] = got["textBody"]
    r = alice.http.get(download_url(alice, text["blobId"], "body.txt", "text/plain"))
    assert r.status_code == 200
    assert r.content.decode("utf-8").startswith("Caf\u00e9 see the attachments.")

    # every leaf of the structure is downloadable, and its size is the decoded size
    def leaves(part):
        if part.get("subParts"):
            for sub in part["subParts"]:
                yield from leaves(sub)
        else:
            yield part

    parts = list(leaves(got["bodyStructure"]))
    assert len(parts) == 3
    for part in parts:
        r = alice.http.get(download_url(alice, part["blobId"], "p", part["type"]))
        assert r.status_code == 200, part
        assert len(r.content) == part["size"], part

    # the whole message too
    r = alice.http.get(download_url(alice, got["blobId"], "message.eml", "message/rfc822"))
    assert r.content == raw


# ------------------------------------------------------------------------------------------- Thread
def thread_of(client: Jmap, email_id: str) -> str:
    [e] = client.ok("Email/get", ids=[email_id], properties=["threadId"])["list"]
    return e["threadId"]


def thread_email_ids(client: Jmap, thread_id: str) -> list[str]:
    res = client.ok("Thread/get", ids=[thread_id])
    assert res["notFound"] == [], res
    [t] = res["list"]
    assert t["id"] == thread_id
    return t["emailIds"]


def test_reply_joins_the_thread_of_its_parent(alice):
    parent_raw, parent_id = message()
    reply_raw, reply_id = message(in_reply_to=parent_id, references=[parent_id])
    parent = alice.import_message(parent_raw, received_at="2024-01-01T10:00:00Z")
    reply = alice.import_message(reply_raw, received_at="2024-01-01T11:00:00Z")
    assert reply["threadId"] == parent["threadId"]
    assert thread_of(alice, reply["id"]) == parent["threadId"]
    assert thread_email_ids(alice, parent["threadId"]) == [parent["id"], reply["id"]]
    # a reply to the reply, naming only the reply in References
    raw, _ = message(references=[reply_id])
    third = alice.import_message(raw, received_at="2024-01-01T12:00:00Z")
    assert third["threadId"] == parent["threadId"]
    # an unrelated message starts its own thread
    raw, _ = message()
    other = alice.import_message(raw)
    assert other["threadId"] != parent["threadId"]
    assert thread_email_ids(alice, other["threadId"]) == [other["id"]]


def test_parent_imported_after_its_reply_joins_the_reply_thread(alice):
    parent_raw, parent_id = message()
    reply_raw, _ = message(in_reply_to=parent_id, references=[parent_id])
    reply = alice.import_message(reply_raw, received_at="2024-02-02T10:00:00Z")
    parent = alice.import_message(parent_raw, received_at="2024-02-01T10:00:00Z")
    assert parent["threadId"] == reply["threadId"]
    # sorted by receivedAt, oldest first, not by arrival
    assert thread_email_ids(alice, reply["threadId"]) == [parent["id"], reply["id"]]


def test_thread_email_ids_are_sorted_by_received_at(alice):
    root_raw, root_id = message()
    dates = ["2023-05-03T00:00:00Z", "2023-05-01T00:00:00Z", "2023-05-02T00:00:00Z"]
    ids = {}
    root = alice.import_message(root_raw, received_at="2023-04-30T00:00:00Z")
    for d in dates:
        raw, _ = message(in_reply_to=root_id, references=[root_id])
        ids[d] = alice.import_message(raw, received_at=d)["id"]
    expected = [root["id"]] + [ids[d] for d in sorted(dates)]
    assert thread_email_ids(alice, root["threadId"]) == expected


def test_thread_get_with_null_ids_does_not_claim_there_are_no_threads(alice):
    """RFC 8620 §5.1: ids null returns all records "if this is supported": a server that does not
    support it may refuse, but must not answer with an empty list when threads exist."""
    raw, _ = message()
    thread_id = alice.import_message(raw)["threadId"]
    name, res = alice.call("Thread/get", ids=None)
    if name == "error":
        assert res["type"] in ("requestTooLarge", "invalidArguments", "unsupportedFilter", "forbidden"), res
    else:
        assert thread_id in [t["id"] for t in res["list"]], res


def test_thread_get_unknown_id_is_not_found(alice):
    res = alice.ok("Thread/get", ids=["Tnope"])
    assert res["list"] == [] and res["notFound"] == ["Tnope"]
    assert isinstance(res["state"], str)


def test_thread_changes_report_new_and_grown_threads(alice):
    state = alice.ok("Thread/get", ids=[])["state"]
    raw, root_id = message()
    root = alice.import_message(raw)
    ch = alice.ok("Thread/changes", sinceState=state)
    assert ch["created"] == [root["threadId"]] and ch["updated"] == [] and ch["destroyed"] == []
    assert ch["newState"] == alice.ok("Thread/get", ids=[])["state"] != state

    state = ch["newState"]
    raw, _ = message(in_reply_to=root_id, references=[root_id])
    reply = alice.import_message(raw)
    ch = alice.ok("Thread/changes", sinceState=state)
    assert ch["updated"] == [root["threadId"]] and ch["created"] == [], ch

    state = ch["newState"]
    alice.ok("Email/set", destroy=[reply["id"]])
    ch = alice.ok("Thread/changes", sinceState=state)
    assert ch["updated"] == [root["threadId"]], ch
    state = ch["newState"]
    alice.ok("Email/set", destroy=[root["id"]])
    ch = alice.ok("Thread/changes", sinceState=state)
    assert ch["destroyed"] == [root["threadId"]] and ch["updated"] == [], ch
    assert alice.ok("Thread/get", ids=[root["threadId"]])["notFound"] == [root["threadId"]]

    name, err = alice.call("Thread/changes", sinceState="garbage")
    assert name == "error" and err["type"] == "cannotCalculateChanges"


# ----------------------------------------------------------------------------------------- Identity
def test_identity_get_returns_the_users_one_identity(alice, bob):
    res = alice.ok("Identity/get", ids=None)
    assert len(res["list"]) == 1, res
    identity = res["list"][0]
    assert identity["email"] == "alice@example.com"
    assert isinstance(identity["id"], str) and identity["id"]
    assert isinstance(identity["name"], str)
    for key in ("replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete"):
        assert key in identity, key
    again = alice.ok("Identity/get", ids=[identity["id"], "nope"])
    assert again["list"] == [identity] and again["notFound"] == ["nope"]
    [bobs] = bob.ok("Identity/get", ids=None)["list"]
    assert bobs["email"] == "bob@example.com"
    ch = alice.ok("Identity/changes", sinceState=res["state"])
    assert ch["created"] == ch["updated"] == ch["destroyed"] == []


# -------------------------------------------------------------------------------------- EventSource
class EventStream:
    """Reads the eventsource resource in a thread; events arrive on a queue as (event, data)."""

    def __init__(self, client: Jmap, types: str, closeafter: str, ping: int):
        template = client.session["eventSourceUrl"]
        url = (template.replace("{types}", types).replace("{closeafter}", closeafter)
               .replace("{ping}", str(ping)))
        self.url = urllib.parse.urljoin(client.server.base + "/.well-known/jmap", url)
        self.auth = client.http.auth
        self.connected = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        assert self.connected.wait(15), "no response from the eventsource endpoint"
        status = self.events.get(timeout=5)
        assert status[0] == "status" and status[1] == 200, status
        assert status[2].startswith("text/event-stream"), status
        time.sleep(1.0)  # let the server take its baseline of states

    def _listen(self) -> None:
        try:
            with httpx.Client(auth=self.auth, timeout=httpx.Timeout(30, read=40)) as http:
                with http.stream("GET", self.url, headers={"Accept": "text/event-stream"}) as r:
                    self.events.put(("status", r.status_code, r.headers.get("content-type", "")))
                    self.connected.set()
                    event, data = None, []
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and (event or data):
                            self.events.put((event or "message", "\n".join(data)))
                            event, data = None, []
            self.events.put(("closed",))
        except Exception as exc:  # reported to the test thread
            self.events.put(("exception", repr(exc)))
            self.connected.set()

    def next(self, timeout: float) -> tuple:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return ("timeout",)
        assert item[0] != "exception", item
        return item


def import_into_inbox(client: Jmap) -> dict:
    raw, _ = message()
    blob = client.upload(raw)
    res = client.ok("Email/import", emails={"m": {"blobId": blob["blobId"],
                                                  "mailboxIds": {client.mailbox("inbox"): True}}})
    assert res["created"], res
    return res


def test_eventsource_pushes_a_state_change_after_an_import(alice):
    stream = EventStream(alice, types="*", closeafter="state", ping=0)
    email_state = import_into_inbox(alice)["newState"]
    item = stream.next(10)
    assert item[0] == "state", item  # ping=0: no ping events, and nothing else before the change
    change = json.loads(item[1])
    assert change["@type"] == "StateChange"
    changed = change["changed"][alice.account_id]
    assert changed["Email"] == email_state, (changed, email_state)
    assert changed["Mailbox"] == alice.ok("Mailbox/get", ids=[])["state"]
    assert changed["Thread"] == alice.ok("Thread/get", ids=[])["state"]
    # closeafter=state: the server ends the response after the state event
    assert stream.next(10) == ("closed",)


def test_eventsource_reports_only_the_requested_types(alice):
    stream = EventStream(alice, types="Mailbox", closeafter="state", ping=0)
    import_into_inbox(alice)  # changes Email, Thread and the inbox's counts
    item = stream.next(10)
    assert item[0] == "state", item
    changed = json.loads(item[1])["changed"][alice.account_id]
    assert set(changed) == {"Mailbox"}, changed
    assert changed["Mailbox"] == alice.ok("Mailbox/get", ids=[])["state"]


def test_eventsource_sends_pings_with_the_interval(alice):
    # RFC 8620 §7.3: the server may raise the interval, but to no more than 30 s
    stream = EventStream(alice, types="*", closeafter="state", ping=1)
    item = stream.next(32)
    assert item[0] == "ping", item
    interval = json.loads(item[1])["interval"]
    assert isinstance(interval, int) and 1 <= interval <= 30
    # a change still arrives as a state event (and, with closeafter=state, ends the stream)
    import_into_inbox(alice)
    item = stream.next(10)
    while item[0] == "ping":
        item = stream.next(10)
    assert item[0] == "state", item
    assert stream.next(10) == ("closed",)
