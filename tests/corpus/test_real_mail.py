"""Real mail as a test (issue 6): every message of a corpus goes through a real `tidings serve` (upload,
Email/import, Email/get with every property and every body value, blob download), and invariants that
hold for any message are checked on what comes back.

- Without TIDINGS_CORPUS: the committed sample in tests/corpus/sample/ (part of `make test`), one test
  per message, named by its file.
- TIDINGS_CORPUS=DIR (`make test-corpus`): every message in DIR (the files listed in DIR/manifest.tsv
  when there is one, as `scripts/corpus.py` writes it; else every file below DIR). All failures are
  collected and reported once at the end: counts per invariant and the first paths of each. The full list
  goes to TIDINGS_CORPUS_REPORT (a TSV file; default corpus-failures.tsv in pytest's temp dir).

Reproduce one message: `TIDINGS_CORPUS=path/to/file.eml .venv/bin/pytest tests/corpus -q`.

The invariants (RFC 8620, RFC 8621):
  import      Email/import creates it; the only acceptable refusals are invalidEmail for something that is
              not mail at all, or alreadyExists for bytes already imported
  get         Email/get returns it in `list` (no method error, not notFound)
  serverFail  no serverFail anywhere (method or SetError), no HTTP 5xx
  i-json      every response body is I-JSON (RFC 7493): valid UTF-8, no lone surrogate in any string, no
              duplicate member names, integers within +-(2^53-1)
  subject/from/sentAt/messageId
              a header field the stdlib `email` package (policy.default) parses on the raw bytes comes
              back non-null; a Subject the stdlib decodes without defects, undecodable bytes or control
              characters comes back as the same text (whitespace collapsed). Only an empty line ends the
              header section here: a stray line in it is skipped before the stdlib sees it
  alternatives
              neither textBody nor htmlBody holds both the text/plain and the text/html child of one
              multipart/alternative
  preview     a string of at most 256 characters, no control characters, no HTML tags that are not in the
              plain-text body itself
  blob        the email's blobId downloads byte-identical to the upload
  bodyValues  every bodyValues entry has a string value (and boolean flags)
  type        every part's `type` is its own Content-Type (lower-case type/subtype) when that parses
  server log  the server logs no traceback or error during the run
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import json
import os
import re
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORE, MAIL, Jmap, Server, tidings

HERE = Path(__file__).parent
SAMPLE = HERE / "sample"
CORPUS = os.environ.get("TIDINGS_CORPUS")

UPLOAD_TYPE = "message/rfc822"
IMPORT_BATCH = 100
GET_BATCH = 50

# Sample messages that fail today: file -> (the invariant that fails, why). Any other failure of these
# files fails the test; once the server is fixed the test fails too, asking to remove the entry.
KNOWN_FAILURES: dict[str, tuple[str, str]] = {}

HEADER_PROPERTIES = [
    "header:Subject:asText", "header:Subject:asText:all", "header:From:asAddresses",
    "header:From:asGroupedAddresses", "header:Sender:asAddresses", "header:To:asAddresses",
    "header:Cc:asGroupedAddresses", "header:Reply-To:asAddresses", "header:Date:asDate",
    "header:Resent-Date:asDate:all", "header:Message-ID:asMessageIds", "header:In-Reply-To:asMessageIds",
    "header:References:asMessageIds", "header:List-Post:asURLs", "header:List-Unsubscribe:asURLs",
    "header:List-Id:asText", "header:Comments:asText", "header:Keywords:asText", "header:Received:all",
    "header:Content-Type", "header:X-Mailer:asText", "header:MIME-Version:asRaw",
]
PROPERTIES = [
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "headers",
    "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
    "sentAt", "bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments", "hasAttachment",
    "preview", *HEADER_PROPERTIES,
]
BODY_PROPERTIES = ["partId", "blobId", "size", "headers", "name", "type", "charset", "disposition", "cid",
                   "language", "location", "subParts", "header:Content-Type", "header:Content-ID:asMessageIds"]

INVARIANTS = ("import", "get", "serverFail", "i-json", "subject", "from", "sentAt", "messageId",
              "alternatives", "preview", "blob", "bodyValues", "type")

# https://html.spec.whatwg.org/#elements-3 and the obsolete ones mail still uses
HTML_ELEMENTS = (
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite "
    "code col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link "
    "main map mark menu meta meter nav noscript object ol optgroup option output p param picture pre progress "
    "q rp rt ruby s samp script section select slot small source span strong style sub summary sup table "
    "tbody td template textarea tfoot th thead time title tr track u ul var video wbr "
    "basefont big blink center font frame frameset marquee nobr noframes strike tt xmp o:p v:shape"
).split()
_TAG = re.compile(r"</?(?:" + "|".join(re.escape(t) for t in sorted(HTML_ELEMENTS, key=len, reverse=True))
                  + r")(?=[\s/>])", re.I)
_CT_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+/[!#$%&'*+\-.^_`|~0-9a-z]+")
_STDLIB_HEADER_LINE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+:|[ \t])")
MAX_SAFE_INT = 2**53 - 1


# -- what to run ------------------------------------------------------------------------------------

def corpus_root() -> Path:
    return Path(CORPUS) if CORPUS else SAMPLE


def message_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    manifest = root / "manifest.tsv"
    if manifest.exists():
        with manifest.open(newline="") as f:
            return [root / row["file"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in {".md", ".tsv"})


def rel(path: Path) -> str:
    root = corpus_root()
    try:
        return path.relative_to(root if root.is_dir() else root.parent).as_posix()
    except ValueError:
        return path.as_posix()


# -- I-JSON -------------------------------------------------------------------------------------------

class IJsonError(ValueError):
    pass


def _pairs(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise IJsonError(f"duplicate member names {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    return dict(pairs)


def _constant(name):
    raise IJsonError(f"{name} is not JSON")


def parse_ijson(raw: bytes):
    """The parsed body; IJsonError if it is not valid UTF-8 or not strict JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IJsonError(f"invalid UTF-8 at byte {e.start}: {raw[max(0, e.start - 20):e.end + 20]!r}") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise IJsonError(f"not JSON: {e}") from None


def ijson_problems(value, path: str = "$") -> list[str]:
    """Lone surrogates in strings (keys too) and integers outside the I-JSON range."""
    out = []
    if isinstance(value, str):
        if any("\ud800" <= c <= "\udfff" for c in value):
            out.append(f"{path}: lone surrogate in {value[:80]!r}")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            out.append(f"{path}: integer {value} outside I-JSON range")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += ijson_problems(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            out += ijson_problems(k, f"{path}.<key>")
            out += ijson_problems(v, f"{path}.{k}")
    return out


# -- the independent view of the header: the stdlib -------------------------------------------------

def stdlib_header(raw: bytes) -> email.message.EmailMessage | None:
    """The header section parsed by the stdlib, or None when the message has no header section. Only an
    empty line ends the header section (RFC 5322 §2.1): a stray line in it (an mbox `From ` line, junk) is
    skipped here, where the stdlib alone would end the header at it."""
    lines = raw.split(b"\n")
    kept = []
    for i, line in enumerate(lines):
        bare = line.rstrip(b"\r")
        if not bare:
            break
        if _STDLIB_HEADER_LINE.match(bare) and not (i == 0 and bare[:1] in b" \t"):
            kept.append(bare)
        elif i == 0 and not bare.startswith(b"From "):
            return None
    if not kept:
        return None
    return email.message_from_bytes(b"\r\n".join(kept) + b"\r\n\r\n", policy=email.policy.default)


def last_header(msg, name: str):
    try:
        values = msg.get_all(name)
    except Exception:  # a header the stdlib itself cannot parse: nothing to compare with
        return None
    return values[-1] if values else None


def collapse(text: str) -> str:
    return " ".join(text.split())


def has_surrogates(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def has_controls(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


# A time followed by a numeric zone that is malformed ("+-0500", "+1", "GMT+1") or has no sign after
# a year ("2002 23:37:59 0530"): the stdlib reads the first as an unknown zone (-0000), an instant
# hours off, and guesses "+" for the second; tidings gives no date rather than a guessed instant
# (tests/unit/test_header_forms.py holds the forms)
MALFORMED_ZONE = re.compile(r"\d:\d\d(?::\d\d?)?\s*(?:GMT|UTC|UT)?[+-](?!\d\d:?\d\d(?!\d))"
                            r"|\d{4}\s+\d\d?:\d\d(?::\d\d?)?\s+\d+\s*$", re.I)


def malformed_zone(msg) -> bool:
    dates = [value for name, value in msg.raw_items() if name.lower() == "date"]
    return bool(dates) and MALFORMED_ZONE.search(str(dates[-1])) is not None


def header_expectations(raw: bytes) -> dict[str, tuple[str, str | None]]:
    """property -> (what the stdlib saw, exact text expected or None for 'non-null')."""
    msg = stdlib_header(raw)
    if msg is None:
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    h = last_header(msg, "subject")
    if h is not None:
        text = str(h)
        # compared exactly only when the stdlib decodes cleanly: no defects, no undecodable bytes, no
        # control characters (ISO-8859-1's C1 range, which a server may rightly read as windows-1252)
        clean = not h.defects and not has_surrogates(text) and not has_controls(text.replace("\t", " "))
        exact = collapse(text) if clean else None
        out["subject"] = (f"Subject {text[:100]!r}", exact)
    h = last_header(msg, "from")
    if h is not None:
        try:
            addrs = [a for a in h.addresses if a.addr_spec and "@" in a.addr_spec]
        except Exception:
            addrs = []
        if addrs and not h.defects:
            out["from"] = (f"From {str(h)[:100]!r}", None)
    h = last_header(msg, "date")
    if (h is not None and not h.defects and getattr(h, "datetime", None) is not None
            and not malformed_zone(msg)):
        out["sentAt"] = (f"Date {str(h)!r}", None)
    h = last_header(msg, "message-id")
    if h is not None and not h.defects and re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", str(h).strip()):
        out["messageId"] = (f"Message-ID {str(h)!r}", None)
    return out


def looks_like_mail(raw: bytes) -> bool:
    """Has a header section: its first line (after an mbox `From ` line) is a header field."""
    first = raw.split(b"\n", 2)
    line = first[1] if first[0].startswith(b"From ") and len(first) > 1 else first[0]
    return bool(re.match(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:", line))


# -- the checks on one Email ------------------------------------------------------------------------

def walk_parts(part: dict):
    yield part
    for sub in part.get("subParts") or []:
        yield from walk_parts(sub)


def check_email(raw: bytes, em: dict, applied: Counter | None = None) -> list[tuple[str, str]]:
    """The failed invariants of one Email; `applied` counts the checks that had something to check."""
    applied = Counter() if applied is None else applied
    fails: list[tuple[str, str]] = []
    # header fields the stdlib parses come back
    for prop, (seen, exact) in header_expectations(raw).items():
        applied[prop] += 1
        applied["subject text compared"] += prop == "subject" and exact is not None
        got = em.get(prop)
        if got is None or got == []:
            fails.append((prop, f"{seen} parses, but {prop} is {got!r}"))
        elif exact is not None and collapse(got) != exact:
            fails.append((prop, f"stdlib decodes {exact[:120]!r}, server {collapse(got)[:120]!r}"))
    structure = em.get("bodyStructure")
    if not isinstance(structure, dict):
        fails.append(("type", f"bodyStructure is {structure!r}"))
        structure = {}
    # neither textBody nor htmlBody holds both alternatives
    for node in walk_parts(structure):
        if (node.get("type") or "").lower() != "multipart/alternative":
            continue
        applied["multipart/alternative"] += 1
        kids = [k for k in node.get("subParts") or [] if not k.get("subParts")]
        plain = {k["partId"] for k in kids if k.get("type") == "text/plain"}
        html = {k["partId"] for k in kids if k.get("type") == "text/html"}
        for prop in ("textBody", "htmlBody"):
            ids = {p.get("partId") for p in em.get(prop) or []}
            if ids & plain and ids & html:
                fails.append(("alternatives", f"{prop} holds both text/plain {sorted(ids & plain)} and "
                                              f"text/html {sorted(ids & html)} of alternative {node.get('partId')}"))
    # every part's type is its own Content-Type
    for part in walk_parts(structure):
        typ = part.get("type")
        if not isinstance(typ, str) or not _CT_TYPE.fullmatch(typ):
            fails.append(("type", f"part {part.get('partId')} type {typ!r} is not a lower-case type/subtype"))
            continue
        cts = [h["value"] for h in part.get("headers") or [] if h.get("name", "").lower() == "content-type"]
        if len(set(cts)) == 1:
            own = cts[0].split(";", 1)[0].strip().lower()
            applied["part type compared"] += bool(_CT_TYPE.fullmatch(own))
            if _CT_TYPE.fullmatch(own) and own != typ:
                fails.append(("type", f"part {part.get('partId')} has Content-Type {cts[0].strip()[:80]!r} "
                                      f"but type {typ!r}"))
    # bodyValues
    values = em.get("bodyValues")
    if not isinstance(values, dict):
        fails.append(("bodyValues", f"bodyValues is {type(values).__name__}"))
        values = {}
    for pid, bv in values.items():
        if not isinstance(bv, dict) or not isinstance(bv.get("value"), str):
            fails.append(("bodyValues", f"part {pid}: value is {bv!r:.80}"))
        elif not isinstance(bv.get("isEncodingProblem"), bool) or not isinstance(bv.get("isTruncated"), bool):
            fails.append(("bodyValues", f"part {pid}: flags {bv.get('isEncodingProblem')!r} "
                                        f"{bv.get('isTruncated')!r}"))
    # preview is plain text
    preview = em.get("preview")
    if not isinstance(preview, str):
        fails.append(("preview", f"preview is {preview!r}"))
    else:
        if len(preview) > 256:
            fails.append(("preview", f"{len(preview)} characters"))
        controls = sorted({c for c in preview if has_controls(c)})
        if controls:
            fails.append(("preview", f"control characters {controls!r} in {preview[:80]!r}"))
        plain_text = " ".join(values.get(p.get("partId"), {}).get("value", "") or ""
                              for p in em.get("textBody") or [] if p.get("type") == "text/plain")
        tags = sorted({m.group(0).lower() for m in _TAG.finditer(preview)}
                      - {m.group(0).lower() for m in _TAG.finditer(plain_text)})
        if tags:
            fails.append(("preview", f"HTML tags {tags} in {preview[:120]!r}"))
    return fails


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class Result:
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    timings: dict[str, float] = field(default_factory=dict)
    applied: Counter = field(default_factory=Counter)
    server_log: list[str] = field(default_factory=list)  # lines of the server's log that tell of errors
    count: int = 0

    def fail(self, path: Path, invariant: str, detail: str) -> None:
        self.failures[rel(path)].append((invariant, detail))


class Ring:
    def __init__(self, client: Jmap, result: Result):
        self.c = client
        self.r = result
        self.inbox = client.mailbox("inbox")
        self.download = client.session["downloadUrl"]

    def post(self, calls: list) -> tuple[int, bytes]:
        body = {"using": [CORE, MAIL], "methodCalls": calls}
        resp = self.c.http.post(self.c.api_url, json=body)
        return resp.status_code, resp.content

    def api(self, calls: list, paths: list[Path], what: str) -> list | None:
        """The methodResponses, or None after recording why for every path in the batch."""
        status, content = self.post(calls)
        if status != 200:
            inv = "serverFail" if status >= 500 else what
            for p in paths:
                self.r.fail(p, inv, f"{what}: HTTP {status} {content[:200]!r}")
            return None
        try:
            body = parse_ijson(content)
        except IJsonError as e:
            for p in paths:
                self.r.fail(p, "i-json", f"{what} response: {e}")
            return None
        return body["methodResponses"]

    # upload + import

    def upload(self, path: Path, raw: bytes) -> str | None:
        url = self.c.session["uploadUrl"].replace("{accountId}", self.c.account_id)
        resp = self.c.http.post(url, content=raw, headers={"Content-Type": UPLOAD_TYPE})
        if resp.status_code != 201:
            self.r.fail(path, "serverFail" if resp.status_code >= 500 else "import",
                        f"upload: HTTP {resp.status_code} {resp.content[:200]!r}")
            return None
        try:
            return parse_ijson(resp.content)["blobId"]
        except IJsonError as e:
            self.r.fail(path, "i-json", f"upload response: {e}")
            return None

    def import_batch(self, batch: list[tuple[Path, bytes, str]], ids: dict[Path, str],
                     seen: dict[str, Path]) -> None:
        emails = {f"m{i}": {"blobId": blob, "mailboxIds": {self.inbox: True}}
                  for i, (_, _, blob) in enumerate(batch)}
        paths = [p for p, _, _ in batch]
        calls = [["Email/import", {"accountId": self.c.account_id, "emails": emails}, "i"]]
        responses = self.api(calls, paths, "Email/import") if len(batch) == 1 else self._quiet(calls)
        if responses is None or responses[0][0] != "Email/import":
            if len(batch) > 1:  # one message may fail the whole call: find which, one by one
                for one in batch:
                    self.import_batch([one], ids, seen)
                return
            if responses is not None:
                err = responses[0][1]
                inv = "serverFail" if err.get("type") == "serverFail" else "import"
                self.r.fail(paths[0], inv, f"Email/import error {err}")
            return
        args = responses[0][1]
        for i, (path, raw, _) in enumerate(batch):
            cid = f"m{i}"
            created = (args.get("created") or {}).get(cid)
            refused = (args.get("notCreated") or {}).get(cid)
            for prob in ijson_problems(created) + ijson_problems(refused):
                self.r.fail(path, "i-json", f"Email/import: {prob}")
            digest = hashlib.sha256(raw).hexdigest()
            if created:
                ids[path] = created["id"]
                seen[digest] = path
            elif refused and refused.get("type") == "alreadyExists" and digest in seen:
                ids[path] = refused.get("existingId")
            elif refused and refused.get("type") == "invalidEmail" and not looks_like_mail(raw):
                pass  # not mail at all: refusing it is right
            else:
                inv = "serverFail" if (refused or {}).get("type") == "serverFail" else "import"
                self.r.fail(path, inv, f"Email/import notCreated {refused!r:.300}")
        rest = {k: v for k, v in args.items() if k not in ("created", "notCreated")}
        for prob in ijson_problems(rest):
            for p in paths:
                self.r.fail(p, "i-json", f"Email/import: {prob}")

    def _quiet(self, calls: list) -> list | None:
        """A batch call whose failures are not recorded (the caller retries one by one)."""
        status, content = self.post(calls)
        if status != 200:
            return None
        try:
            return parse_ijson(content)["methodResponses"]
        except IJsonError:
            return None

    # get + checks

    def get_batch(self, batch: list[tuple[Path, bytes, str]]) -> None:
        paths = [p for p, _, _ in batch]
        calls = [["Email/get", {"accountId": self.c.account_id, "ids": [i for _, _, i in batch],
                                "properties": PROPERTIES, "bodyProperties": BODY_PROPERTIES,
                                "fetchAllBodyValues": True}, "g"]]
        responses = self.api(calls, paths, "Email/get") if len(batch) == 1 else self._quiet(calls)
        if responses is None or responses[0][0] != "Email/get":
            if len(batch) > 1:
                for one in batch:
                    self.get_batch([one])
                return
            if responses is not None:
                err = responses[0][1]
                inv = "serverFail" if err.get("type") == "serverFail" else "get"
                self.r.fail(paths[0], inv, f"Email/get error {err}")
            return
        args = responses[0][1]
        by_id = {e.get("id"): e for e in args.get("list") or []}
        not_found = set(args.get("notFound") or [])
        for path, raw, eid in batch:
            em = by_id.get(eid)
            if em is None:
                self.r.fail(path, "get", f"Email/get: {eid} {'in notFound' if eid in not_found else 'missing'}")
                continue
            for prob in ijson_problems(em)[:5]:
                self.r.fail(path, "i-json", f"Email/get: {prob}")
            for inv, detail in check_email(raw, em, self.r.applied):
                self.r.fail(path, inv, detail)
            self.check_blob(path, raw, em.get("blobId"))

    def check_blob(self, path: Path, raw: bytes, blob_id: str | None) -> None:
        if not isinstance(blob_id, str):
            self.r.fail(path, "blob", f"blobId is {blob_id!r}")
            return
        url = (self.download.replace("{accountId}", self.c.account_id).replace("{blobId}", blob_id)
               .replace("{name}", "message.eml").replace("{type}", "message/rfc822"))
        resp = self.c.http.get(url)
        if resp.status_code != 200:
            self.r.fail(path, "serverFail" if resp.status_code >= 500 else "blob",
                        f"download: HTTP {resp.status_code}")
        elif resp.content != raw:
            self.r.fail(path, "blob", f"downloaded {len(resp.content)} bytes differ from the {len(raw)} uploaded")

    def run(self, files: list[Path]) -> None:
        t0 = time.monotonic()
        uploaded = []
        for path in files:
            raw = path.read_bytes()
            blob = self.upload(path, raw)
            if blob:
                uploaded.append((path, raw, blob))
        t1 = time.monotonic()
        ids: dict[Path, str] = {}
        seen: dict[str, Path] = {}
        for i in range(0, len(uploaded), IMPORT_BATCH):
            self.import_batch(uploaded[i:i + IMPORT_BATCH], ids, seen)
        t2 = time.monotonic()
        imported = [(p, raw, ids[p]) for p, raw, _ in uploaded if p in ids]
        for i in range(0, len(imported), GET_BATCH):
            self.get_batch(imported[i:i + GET_BATCH])
        t3 = time.monotonic()
        self.r.count = len(files)
        self.r.timings = {"upload": t1 - t0, "import": t2 - t1, "get+checks+download": t3 - t2}


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> Result:
    data = tmp_path_factory.mktemp("corpus-data")
    tidings("user", "add", "corpus", "--password", "corpus-pw", "--email", "corpus@example.com", data=data)
    srv = Server(data)
    result = Result()
    try:
        client = Jmap(srv, "corpus", "corpus-pw")
        client.http.timeout = httpx.Timeout(300)
        Ring(client, result).run(message_files(corpus_root()))
    finally:
        srv.stop()
    log = (data / f"server-{srv.port}.log").read_text(errors="replace").splitlines()
    result.server_log = [line for line in log if re.search(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception", line)]
    return result


def describe(fails: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {inv}: {detail}" for inv, detail in fails)


if CORPUS is None:
    SAMPLE_FILES = message_files(SAMPLE)

    @pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
    def test_real_mail(ring: Result, path: Path) -> None:
        fails = ring.failures.get(rel(path), [])
        known = KNOWN_FAILURES.get(path.name)
        if known is None:
            if fails:
                pytest.fail(f"{rel(path)}:\n{describe(fails)}", pytrace=False)
            return
        invariant, reason = known
        if not fails:
            pytest.fail(f"{path.name} passes now: remove it from KNOWN_FAILURES", pytrace=False)
        if any(inv != invariant for inv, _ in fails):
            pytest.fail(f"{rel(path)} (known to fail {invariant} only):\n{describe(fails)}", pytrace=False)
        pytest.xfail(reason)

    def test_server_log(ring: Result) -> None:
        if ring.server_log:
            pytest.fail("the server logged errors:\n" + "\n".join(ring.server_log[:20]), pytrace=False)

else:
    def test_corpus(ring: Result, tmp_path_factory) -> None:
        report = Path(os.environ.get("TIDINGS_CORPUS_REPORT")
                      or tmp_path_factory.getbasetemp() / "corpus-failures.tsv")
        with report.open("w") as f:
            f.write("path\tinvariant\tdetail\n")
            for path, fails in sorted(ring.failures.items()):
                for inv, detail in fails:
                    f.write(f"{path}\t{inv}\t{' '.join(detail.split())}\n")
        by_invariant: dict[str, list[str]] = defaultdict(list)
        for path, fails in sorted(ring.failures.items()):
            for inv in dict.fromkeys(inv for inv, _ in fails):
                by_invariant[inv].append(path)
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in ring.timings.items())
        lines = [f"{ring.count} messages from {corpus_root()} ({timing}); "
                 f"{len(ring.failures)} with failures; full list: {report}",
                 "checks applied: " + ", ".join(f"{k} {v}" for k, v in sorted(ring.applied.items()))]
        if ring.server_log:
            lines.append(f"server log: {len(ring.server_log)} error lines, first: {ring.server_log[0][:200]}")
        for inv in sorted(by_invariant, key=INVARIANTS.index):
            paths = by_invariant[inv]
            lines.append(f"{inv}: {len(paths)} messages")
            for p in paths[:5]:
                first = next(d for i, d in ring.failures[p] if i == inv)
                lines.append(f"    {p}: {first[:200]}")
        if ring.failures or ring.server_log:
            pytest.fail("\n".join(lines), pytrace=False)
        print("\n".join(lines))
