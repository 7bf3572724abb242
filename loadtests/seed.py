"""Seed a data directory for the load test: N accounts load001..loadN, each with its own generated
mail (`corpus.py` of the shared JMAP benchmark, seed S+i for account i).

    .venv/bin/python loadtests/seed.py [--accounts 20] [--messages 500] [--seed 1]

Run it with a Python that has tidings installed (the main venv): it calls `python -m app user add`
and `python -m app import` from this checkout. Of each account's messages 60% go to the Inbox
marked $seen, 20% to the Inbox unread, 20% to the Archive marked $seen. It also writes
`terms.txt`, words common in the corpus' subjects, which the locustfile searches for.

Idempotent: the result is cached under `loadtests/.data/seed-a{N}-m{K}-s{S}/` (gitignored) and
reused as it is when its `seed.json` exists (`--reseed` builds it again). The load test never
writes to it: `run.py` serves a copy. Prints the cached directory's path on its last line.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "loadtests" / ".data"
WORDS = Path("/usr/share/dict/words")
PREFIX = "load"
PASSWORD = "load-pw"
STOP = {"with", "from", "that", "this", "have", "your", "about", "re", "fwd", "were", "will", "what", "when",
        "there", "their", "which", "would", "could", "should", "into", "than", "then", "them", "been"}


def corpus_script() -> Path | None:
    candidates = [os.environ.get("TIDINGS_CORPUS_PY", ""), ROOT.parent / "shared" / "bench" / "corpus.py",
                  "/work/shared/bench/corpus.py"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def account_name(i: int) -> str:
    return f"{PREFIX}{i:03d}"


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mboxrd file, each with its own "From " line."""
    parts = re.split(rb"(?m)^(?=From )", data)
    return [p for p in parts if p.startswith(b"From ")]


def subject_terms(messages: list[bytes], out: collections.Counter) -> None:
    for m in messages:
        head = m.split(b"\n\n", 1)[0]
        found = re.search(rb"(?mi)^Subject:(.*)$", head)
        if not found or b"=?" in found.group(1):
            continue
        for word in re.findall(rb"[A-Za-z]{5,}", found.group(1)):
            w = word.decode().lower()
            if w not in STOP:
                out[w] += 1


def tidings(python: str, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([python, "-m", "app", *args], cwd=ROOT, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"seed: `tidings {' '.join(args)}` failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def seed(accounts: int, messages: int, base_seed: int, python: str, reseed: bool = False) -> Path:
    target = CACHE / f"seed-a{accounts}-m{messages}-s{base_seed}"
    if (target / "seed.json").is_file() and not reseed:
        return target
    script = corpus_script()
    if script is None:
        sys.exit("seed: corpus.py not found: set TIDINGS_CORPUS_PY to shared/bench/corpus.py")
    if not WORDS.is_file():
        sys.exit(f"seed: {WORDS} is missing: `apt-get install -y wamerican` (the corpus' word list)")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"{target.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    data, mbox = work / "data", work / "mbox"
    mbox.mkdir(parents=True)
    started = time.monotonic()
    terms: collections.Counter = collections.Counter()
    for i in range(1, accounts + 1):
        name = account_name(i)
        raw = mbox / f"{name}.mbox"
        subprocess.run([sys.executable, str(script), "--count", str(messages), "--seed", str(base_seed + i - 1),
                        "--out", str(raw)], check=True, capture_output=True)
        msgs = split_mbox(raw.read_bytes())
        subject_terms(msgs, terms)
        n_seen, n_unread = len(msgs) * 6 // 10, len(msgs) * 2 // 10
        parts = {"inbox-seen": msgs[:n_seen], "inbox-unread": msgs[n_seen:n_seen + n_unread],
                 "archive": msgs[n_seen + n_unread:]}
        tidings(python, "user", "add", name, "--password-stdin", "--data", str(data), stdin=PASSWORD + "\n")
        for part, content in parts.items():
            f = mbox / f"{name}-{part}.mbox"
            f.write_bytes(b"".join(content))
            args = ["import", "--user", name, "--no-progress", "--data", str(data)]
            if part != "inbox-unread":
                args += ["--keyword", "$seen"]
            if part == "archive":
                args += ["--mailbox", "archive"]
            tidings(python, *args, str(f))
        print(f"seed: {name}: {len(msgs)} messages", flush=True)
    shutil.rmtree(mbox)
    (work / "terms.txt").write_text("".join(f"{w}\n" for w, _ in terms.most_common(300)))
    (work / "seed.json").write_text(json.dumps({
        "accounts": accounts, "messages": messages, "seed": base_seed, "prefix": PREFIX, "password": PASSWORD,
        "corpus": str(script), "seconds": round(time.monotonic() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1) + "\n")
    work.rename(target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--messages", type=int, default=500, help="messages per account")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed of the first account (+i for the others)")
    ap.add_argument("--python", default=sys.executable, help="a Python with tidings' dependencies (default: this one)")
    ap.add_argument("--reseed", action="store_true", help="build the cached directory again")
    opts = ap.parse_args()
    if opts.accounts < 1 or opts.messages < 5:
        ap.error("--accounts must be >= 1 and --messages >= 5")
    print(seed(opts.accounts, opts.messages, opts.seed, opts.python, opts.reseed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
