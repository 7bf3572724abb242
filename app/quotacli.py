"""`tidings quota`: an administrator's limits per account (RFC 9425 leaves administration out of
JMAP, §1).  Limits are written to the store, where every write reads them: they take effect at once,
also in a running server, and the change is pushed to connected clients as a new Quota state."""

from __future__ import annotations

import argparse
import re
import textwrap

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE | re.ASCII)
MAX_LIMIT = 2**53 - 1  # an UnsignedInt (RFC 8620 §1.3)


def parse_size(text: str) -> int | None:
    """Octets of "5G", "512M", "1.5T", "100000" (K/M/G/T are powers of 1024; "KiB"/"GB" are
    accepted as the same); None for "none".  ValueError for anything else."""
    if text.strip().lower() == "none":
        return None
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"bad size {text!r}: a number with an optional unit K, M, G or T (e.g. 5G), or none")
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value > MAX_LIMIT:
        raise ValueError(f"{text!r} is more than 2^53-1 octets")
    return value


def parse_count(text: str) -> int | None:
    """A message count ("100000"), or None for "none".  ValueError for anything else."""
    if text.strip().lower() == "none":
        return None
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) > MAX_LIMIT:
        raise ValueError(f"bad message count {text!r}: a whole number, or none")
    return int(text)


def human(octets: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if octets >= _UNITS[unit]:
            return f"{octets / _UNITS[unit]:.1f} {unit}iB".replace(".0 ", " ")
    return f"{octets} B"


def register(sub, common: argparse.ArgumentParser, formatter, parser_class, examples) -> None:
    """Adds `quota set`, `quota show` and `quota list` to the CLI's subcommands."""
    p = sub.add_parser(
        "quota", parents=[common], formatter_class=formatter, help="set and show users' quotas",
        description=textwrap.dedent("""
            Limits per account (RFC 9425 quotas): the number of messages and the storage, which is
            the raw size of the account's messages (each counted once; uploads that are not yet
            part of a message do not count). A limit takes effect at once, also in a running
            server: mail that would go over it is refused (JMAP overQuota, LMTP 552 5.2.2,
            `tidings deliver` exit 73, `tidings import` stops). Clients see each limit as a Quota
            object (Quota/get); an account without limits has none."""),
        epilog=examples("""
            tidings quota set alice --storage 5G --messages 100000
            tidings quota set alice --storage none      # no storage limit any more
            tidings quota show alice
            tidings quota list
        """))
    qsub = p.add_subparsers(dest="quota_command", metavar="SUBCOMMAND", parser_class=parser_class)
    qsub.required = True

    q = qsub.add_parser(
        "set", parents=[common], formatter_class=formatter, help="set or remove a user's limits",
        description=textwrap.dedent("""
            Sets the hard limits of a user's account; a limit left out stays as it is, `none`
            removes it. Sizes take a unit K, M, G or T (powers of 1024: 5G is 5368709120 octets);
            a plain number is octets. A limit below what the account uses is allowed: nothing is
            removed, but nothing more is stored until it is under the limit again."""),
        epilog=examples("""
            tidings quota set alice --storage 5G --messages 100000
            tidings quota set bob --storage 512M
            tidings quota set alice --messages none
        """))
    q.add_argument("name", metavar="NAME", help="the user")
    q.add_argument("--storage", metavar="SIZE", help="storage limit, e.g. 5G, 750M, 1T, or none")
    q.add_argument("--messages", metavar="N", help="message limit, e.g. 100000, or none")
    q.set_defaults(func=cmd_quota_set)

    q = qsub.add_parser(
        "show", parents=[common], formatter_class=formatter, help="show a user's usage and limits",
        description="Shows what a user's account uses and its limits (maintained as mail comes and "
                    "goes, not counted now).",
        epilog=examples("tidings quota show alice"))
    q.add_argument("name", metavar="NAME", help="the user")
    q.set_defaults(func=cmd_quota_show)

    q = qsub.add_parser(
        "list", parents=[common], formatter_class=formatter, help="usage and limits of every user",
        description="One line per user: messages and storage, used and limit (- : no limit).",
        epilog=examples("tidings quota list"))
    q.set_defaults(func=cmd_quota_list)


def _pct(used: int, limit: int) -> str:
    return f" ({100 * used / limit:.1f}%)" if limit else ""


def _lines(quota: dict) -> list[str]:
    m, s = quota["messages"], quota["storage"]
    pct = _pct
    return [f"  messages  {m['used']}" + (f" of {m['limit']}{pct(m['used'], m['limit'])}"
                                         if m["limit"] is not None else " (no limit)"),
            f"  storage   {human(s['used'])} ({s['used']} octets)"
            + (f" of {human(s['limit'])} ({s['limit']} octets){pct(s['used'], s['limit'])}"
               if s["limit"] is not None else " (no limit)")]


def cmd_quota_set(args: argparse.Namespace) -> int:
    from app.cli import CliError, _data_dir, _open, _user

    if args.storage is None and args.messages is None:
        raise CliError("nothing to set: give --storage and/or --messages (see tidings quota set --help)")
    try:
        changes = {}
        if args.storage is not None:
            changes["storage"] = parse_size(args.storage)
        if args.messages is not None:
            changes["messages"] = parse_count(args.messages)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    store = _open(_data_dir(args))
    try:
        user = _user(store, args.name)
        with store.write(user["accountId"]) as w:  # one transaction: both limits or neither
            for resource, limit in changes.items():
                w.set_quota_limit(resource, limit)
            quota = w.quota()
    finally:
        store.close()
    print(f"{user['name']} ({user['accountId']})")
    print("\n".join(_lines(quota)))
    return 0


def cmd_quota_show(args: argparse.Namespace) -> int:
    from app.cli import _data_dir, _open, _user

    store = _open(_data_dir(args))
    try:
        user = _user(store, args.name)
        with store.read(user["accountId"]) as r:
            quota = r.quota()
    finally:
        store.close()
    print(f"{user['name']} ({user['accountId']})")
    print("\n".join(_lines(quota)))
    return 0


def cmd_quota_list(args: argparse.Namespace) -> int:
    from app.cli import _data_dir, _open

    store = _open(_data_dir(args))
    try:
        rows = [("NAME", "MESSAGES", "LIMIT", "STORAGE", "LIMIT")]
        for user in sorted(store.users(), key=lambda u: u["name"]):
            with store.read(user["accountId"]) as r:
                q = r.quota()
            m, s = q["messages"], q["storage"]
            rows.append((user["name"], str(m["used"]), "-" if m["limit"] is None else str(m["limit"]),
                         human(s["used"]), "-" if s["limit"] is None else human(s["limit"])))
    finally:
        store.close()
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=True)).rstrip())
    return 0
