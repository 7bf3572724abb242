"""What a push connection sends when it starts: the current states, or what changed since the
event id (EventSource ``Last-Event-ID``) or pushState (WebSocket) the client last saw.

Both are a journal seq in decimal: "every change up to seq N". Blocking store reads: run them in a
worker thread."""

from __future__ import annotations

from collections.abc import Collection

from .bus import READ_LIMIT

StateMap = dict[str, dict[str, str]]  # {account id: {type name: state}}


def current(store, accounts: Collection[str], types: Collection[str]) -> tuple[int, StateMap]:
    """The seq and the current states of every type of every account. The seq is read first, so
    the states are at least as new as it says (a change in between may be sent twice, never
    missed)."""
    seq = store.journal_head()
    out: StateMap = {}
    for account_id in accounts:
        with store.read(account_id) as reader:
            states = {t: reader.state(t) for t in types}
        if states:
            out[account_id] = states
    return seq, out


def parse_seq(token: str | None) -> int | None:
    if token is None:
        return None
    token = token.strip()
    if not token.isascii() or not token.isdigit() or len(token) > 19:
        return None
    return int(token)


def since(store, token: str, accounts: Collection[str], types: Collection[str]) -> tuple[int, StateMap]:
    """What changed after the seq `token`, as the latest state of each changed type of each
    account: read from the journal. A token that is not one of ours, from the future (the data
    was restored from a backup), or older than what the journal keeps gives the current states
    of all the types, so that the client checks each of them."""
    after = parse_seq(token)
    if after is None or after > store.journal_head():
        return current(store, accounts, types)
    wanted = set(accounts)
    out: StateMap = {}
    seq = after
    first = True
    while True:
        entries, intact = store.journal(seq, READ_LIMIT)
        if first and not intact:
            return current(store, accounts, types)
        first = False
        for entry_seq, account_id, changed in entries:
            if account_id in wanted:
                for type_name, state in changed.items():
                    if type_name in types:
                        out.setdefault(account_id, {})[type_name] = state
            seq = entry_seq
        if len(entries) < READ_LIMIT:
            return seq, out
