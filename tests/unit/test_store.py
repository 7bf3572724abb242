"""The LMDB store on its own: threading, incremental counts, the change log."""

from __future__ import annotations

import hashlib

import pytest

from store import CannotCalculateChanges, Collection, StoreError, open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "data"))
    yield s
    s.close()


@pytest.fixture
def account(store):
    return store.create_user("u", "hash", "u@example.com")["accountId"]


def add(w, n: int, boxes: list[str], keywords=(), ids=(), received=1_700_000_000):
    raw = f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode()
    w.put_blob(raw, "message/rfc822")
    summary = {"size": len(raw), "subject": f"m{n}", "thread_ids": list(ids), "preview": "",
               "hasAttachment": False}
    record, created = w.add_email(summary, hashlib.sha256(raw).hexdigest(), dict.fromkeys(boxes, True),
                                  dict.fromkeys(keywords, True), received + n)
    return record


def inbox(store, account):
    with store.read(account) as r:
        return next(m["id"] for m in r.mailboxes() if m["role"] == "inbox")


def test_new_account_has_the_role_mailboxes(store, account):
    with store.read(account) as r:
        roles = {m["role"] for m in r.mailboxes()}
    assert roles == {"inbox", "drafts", "sent", "archive", "junk", "trash"}


def test_same_message_is_stored_once(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        first = add(w, 1, [box])
        again = add(w, 1, [box])
    assert first["id"] == again["id"]
    with store.read(account) as r:
        assert r.email_count() == 1


def test_reply_and_late_parent_share_a_thread(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        reply = add(w, 2, [box], ids=["child@x", "parent@x"])
        parent = add(w, 1, [box], ids=["parent@x"])
        other = add(w, 3, [box], ids=["other@x"])
    assert reply["threadId"] == parent["threadId"] != other["threadId"]
    with store.read(account) as r:
        # emailIds are sorted by receivedAt: the parent (n=1) first
        assert r.thread(parent["threadId"]) == [parent["id"], reply["id"]]


def test_counts_follow_keywords_and_moves(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        other = w.create_mailbox({"name": "Other"})["id"]
        a = add(w, 1, [box], ids=["a@x"])
        b = add(w, 2, [box], keywords=["$seen"], ids=["b@x", "a@x"])
        add(w, 3, [box], keywords=["$seen"], ids=["c@x"])
    with store.read(account) as r:
        mb = r.mailbox(box)
    assert (mb["totalEmails"], mb["unreadEmails"], mb["totalThreads"], mb["unreadThreads"]) == (3, 1, 2, 1)
    with store.read(account) as r:
        assert r.mailbox_keyword_count(box, "$seen") == 2
    with store.write(account) as w:
        w.update_email(a["id"], keywords={"$seen": True})
        w.update_email(b["id"], mailbox_ids={other: True})
    with store.read(account) as r:
        mb, ob = r.mailbox(box), r.mailbox(other)
    assert (mb["totalEmails"], mb["unreadEmails"], mb["totalThreads"], mb["unreadThreads"]) == (2, 0, 2, 0)
    assert (ob["totalEmails"], ob["unreadEmails"], ob["totalThreads"]) == (1, 0, 1)
    with store.read(account) as r:
        assert r.mailbox_keyword_count(box, "$seen") == 2
        assert r.mailbox_keyword_count(other, "$seen") == 1
    with store.write(account) as w:
        w.destroy_email(b["id"])
    with store.read(account) as r:
        assert r.mailbox(other)["totalEmails"] == 0
        assert r.mailbox(other)["totalThreads"] == 0
        assert r.mailbox_keyword_count(other, "$seen") == 0


def test_keyword_counts_are_right_inside_and_after_a_transaction_of_many_updates(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        emails = [add(w, n, [box], ids=[f"k{n}@x"]) for n in range(4)]
    with store.write(account) as w:
        for e in emails[:3]:
            w.update_email(e["id"], keywords={"$flagged": True})
        w.update_email(emails[0]["id"], keywords={})
        assert w.mailbox_keyword_count(box, "$flagged") == 2  # the transaction sees its own counts
    with store.read(account) as r:
        assert r.mailbox_keyword_count(box, "$flagged") == 2
    with store.write(account) as w:
        for e in emails[1:3]:
            w.update_email(e["id"], keywords={"$seen": True})
    with store.read(account) as r:
        assert r.mailbox_keyword_count(box, "$flagged") == 0
        assert r.mailbox_keyword_count(box, "$seen") == 2
        assert r._get("mbkw", box.encode() + b"\0$flagged") is None  # a count of 0 is no key


def test_email_must_stay_in_a_mailbox(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        a = add(w, 1, [box])
    with pytest.raises(StoreError), store.write(account) as w:
        w.update_email(a["id"], mailbox_ids={})


def test_changes_collapse_and_page(store, account):
    box = inbox(store, account)
    with store.read(account) as r:
        start = r.state("Email")
    with store.write(account) as w:
        ids = [add(w, n, [box])["id"] for n in range(5)]
    with store.write(account) as w:
        w.update_email(ids[0], keywords={"$flagged": True})
        w.destroy_email(ids[1])
    with store.read(account) as r:
        ch = r.changes("Email", start, None)
        # created then updated is "created"; created then destroyed is not reported at all
        assert sorted(ch.created) == sorted([ids[0], *ids[2:]])
        assert ch.updated == [] and ch.destroyed == []
        state, seen = start, []
        while True:
            page = r.changes("Email", state, 2)
            # a page may show an email created that a later page shows destroyed
            seen = [i for i in seen + page.created if i not in page.destroyed]
            assert len(page.created) + len(page.updated) + len(page.destroyed) <= 2
            state = page.new_state
            if not page.has_more:
                break
        assert sorted(seen) == sorted(ch.created)
        assert state == r.state("Email")


def test_unknown_or_future_state_cannot_calculate(store, account):
    with store.read(account) as r:
        with pytest.raises(CannotCalculateChanges):
            r.changes("Email", "garbage", None)
        with pytest.raises(CannotCalculateChanges):
            r.changes("Email", "999999", None)


def test_date_index_ranges(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        ids = [add(w, n, [box])["id"] for n in range(4)]
    with store.read(account) as r:
        assert list(r.email_ids_by_date(box)) == ids[::-1]
        assert list(r.email_ids_by_date(box, descending=False)) == ids
        base = 1_700_000_000
        assert list(r.email_ids_by_date(box, descending=False, after=base + 1, before=base + 3)) == ids[1:3]
        assert list(r.email_ids_by_date(None, descending=True, before=base + 2)) == ids[:2][::-1]


def test_write_that_fails_leaves_nothing(store, account):
    box = inbox(store, account)
    with pytest.raises(RuntimeError), store.write(account) as w:
        add(w, 1, [box])
        raise RuntimeError("crash mid-transaction")
    with store.read(account) as r:
        assert r.email_count() == 0
        assert r.mailbox(box)["totalEmails"] == 0


# ------------------------------------------------------------------ generic collections and the journal

NOTES = Collection("Note", "N", log="Note", indexes=("owner", "priority", "tags"))


def test_generic_records_get_ids_states_and_a_change_log(store, account):
    with store.write(account) as w:
        a = w.create_record(NOTES, {"owner": "x", "priority": 2, "tags": ["a", "b"]})
        b = w.create_record(NOTES, {"owner": "y", "priority": 10, "tags": ["b"]})
    assert a["id"] != b["id"] and a["id"].startswith("N")
    with store.read(account) as r:
        state = r.state("Note")
        assert r.record(NOTES, a["id"]) == a
        mailbox_state = r.state("Mailbox")
    with store.write(account) as w:
        w.update_record(NOTES, a["id"], {**a, "priority": 5})
        w.destroy_record(NOTES, b["id"])
    with store.read(account) as r:
        ch = r.changes("Note", state, None)
        assert (ch.created, ch.updated, ch.destroyed) == ([], [a["id"]], [b["id"]])
        assert r.record(NOTES, b["id"]) is None
        assert r.state("Mailbox") == mailbox_state  # other types keep their own states


def test_declared_indexes_answer_equality_range_and_list_elements(store, account):
    with store.write(account) as w:
        made = [w.create_record(NOTES, {"owner": o, "priority": p, "tags": t})
                for o, p, t in (("x", 1, ["a"]), ("y", 5, ["a", "b"]), ("x", 9, []), ("z\x00", -3, ["b"]))]
    ids = [m["id"] for m in made]
    with store.read(account) as r:
        assert list(r.record_ids(NOTES)) == sorted(ids)
        assert set(r.record_ids(NOTES, "owner", equals="x")) == {ids[0], ids[2]}
        assert list(r.record_ids(NOTES, "owner", equals="z\x00")) == [ids[3]]
        assert list(r.record_ids(NOTES, "priority", lo=1, hi=9)) == [ids[0], ids[1]]
        assert list(r.record_ids(NOTES, "priority", lo=0)) == [ids[0], ids[1], ids[2]]
        assert list(r.record_ids(NOTES, "priority", hi=0, reverse=True)) == [ids[3]]
        assert set(r.record_ids(NOTES, "tags", equals="b")) == {ids[1], ids[3]}
        with pytest.raises(StoreError):
            list(r.record_ids(NOTES, "body", equals=1))
    with store.write(account) as w:  # an update moves the index entries
        w.update_record(NOTES, ids[0], {"owner": "y", "priority": 1, "tags": []})
    with store.read(account) as r:
        assert set(r.record_ids(NOTES, "owner", equals="y")) == {ids[0], ids[1]}
        assert set(r.record_ids(NOTES, "tags", equals="a")) == {ids[1]}


def test_every_commit_is_journaled_and_announced(store, account):
    seen = []
    store.on_commit(seen.extend)
    head = store.journal_head()
    with store.write(account) as w:
        w.create_record(NOTES, {"owner": "x"})
        mailbox = w.create_mailbox({"name": "J"})
    with store.write(account) as w:
        w.update_mailbox(mailbox["id"], {"name": "K"})
    with store.read(account) as r:
        states = {"Note": r.state("Note"), "Mailbox": r.state("Mailbox")}
    entries, intact = store.journal(head)
    assert intact
    assert [(e[1], e[2]) for e in entries] == [(account, {"Mailbox": entries[0][2]["Mailbox"], "Note": states["Note"]}),
                                               (account, {"Mailbox": states["Mailbox"]})]
    assert seen == entries and [e[0] for e in entries] == [head + 1, head + 2]
    with store.write(account) as w:
        pass  # a transaction that changes nothing announces nothing
    assert store.journal_head() == head + 2


def test_an_emails_outline_is_kept_apart_from_its_record_and_goes_with_it(store, account):
    from app.mail.ingest import ingest

    box = inbox(store, account)
    raw = (b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n"
           b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--b--\r\n")
    with store.write(account) as w:
        record, created, _ = ingest(w, raw, {box: True}, {}, 1_700_000_000)
    assert created and "outline" not in record
    with store.read(account) as r:
        outline = r.email_outline(record["id"])
        assert "outline" not in r.email(record["id"])
    assert outline[1][3] == "multipart/mixed" and [c[4] for c in outline[1][9]] == ["1", "2"]
    assert outline[1][9][1][6] == 6  # the decoded size of the image, counted once at ingest
    with store.write(account) as w:
        w.destroy_email(record["id"])
    with store.read(account) as r:
        assert r.email_outline(record["id"]) is None


def test_the_keyword_date_index_follows_every_keyword_and_mailbox_change(store, account):
    import random

    box = inbox(store, account)
    with store.write(account) as w:
        other = w.create_mailbox({"name": "Other"})["id"]
        emails = [add(w, n, [box], keywords=["$seen"] if n % 2 else [], received=1_700_000_000 + n % 7)["id"]
                  for n in range(40)]
    rng = random.Random(7)
    for _ in range(120):
        email_id = rng.choice(emails)
        with store.write(account) as w:
            if w.email(email_id) is None:
                continue
            roll = rng.random()
            if roll < 0.5:
                w.update_email(email_id, keywords=dict.fromkeys(rng.sample(["$seen", "$flagged", "k"], rng.randint(0, 3)), True))
            elif roll < 0.9:
                w.update_email(email_id, mailbox_ids=dict.fromkeys(rng.sample([box, other], rng.randint(1, 2)), True))
            else:
                w.destroy_email(email_id)
    with store.read(account) as r:
        for mailbox_id in (box, other):
            by_date = list(r.email_ids_by_date(mailbox_id))
            for keyword in ("$seen", "$flagged", "k", "absent"):
                want = [e for e in by_date if keyword in r.email(e)["keywords"]]
                assert list(r.email_ids_by_keyword(mailbox_id, keyword)) == want
                assert list(r.email_ids_by_keyword(mailbox_id, keyword, descending=False)) == want[::-1]
                assert r.mailbox_keyword_count(mailbox_id, keyword) == len(want)


def test_a_data_directory_from_before_the_keyword_date_index_gets_it_at_open(tmp_path):
    import lmdb

    path = str(tmp_path / "data")
    s = open_store(path)
    account = s.create_user("u", "hash", "u@example.com")["accountId"]
    box = inbox(s, account)
    with s.write(account) as w:
        ids = [add(w, n, [box], keywords=["$seen"])["id"] for n in range(5)]
    s.close()
    env = lmdb.open(path, max_dbs=64)  # as an older tidings left it: no index, no marker
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"mbkwdate", txn=txn), delete=False)
        txn.delete(b"\x00kwdates", db=env.open_db(b"counters", txn=txn))
    env.close()
    s = open_store(path)
    try:
        with s.read(account) as r:
            assert list(r.email_ids_by_keyword(box, "$seen")) == ids[::-1]
    finally:
        s.close()


def test_has_email_says_what_email_says(store, account):
    box = inbox(store, account)
    with store.write(account) as w:
        record = add(w, 1, [box])
    with store.read(account) as r:
        assert r.has_email(record["id"]) and r.email(record["id"]) is not None
        assert not r.has_email("Mffffff") and r.email("Mffffff") is None
    with store.write(account) as w:
        w.destroy_email(record["id"])
    with store.read(account) as r:
        assert not r.has_email(record["id"]) and r.email(record["id"]) is None


def test_shares_of_other_types_are_indexed_by_grantee_apart_from_mailboxes_and_go_with_their_owner(store, account):
    books = Collection("AddressBook", "B", log="AddressBook")
    grantee = store.create_user("g", "hash", "g@example.com")["accountId"]
    rights = {"mayRead": True}
    with store.write(account) as w:
        book = w.create_record(books, {"name": "Team"})["id"]
        box = w.create_mailbox({"name": "Shared", "shareWith": {grantee: {"mayReadItems": True}}})["id"]
        w.share("AddressBook", book, None, {grantee: rights})
        with pytest.raises(StoreError):
            w.share("Mailbox", box, None, {grantee: rights})  # a mailbox keeps its own index
    assert store.grants_to(grantee) == {account: {box: {"rights": {"mayReadItems": True}, "subscribed": False},
                                                  f"AddressBook/{book}": {"rights": rights, "subscribed": False}}}
    with store.write(account) as w:
        w.set_subscribed_for(grantee, book, True, kind="AddressBook")
        w.share("AddressBook", book, {grantee: rights}, {grantee: {"mayRead": True, "mayWrite": True}})
    # the grantee's own subscription survives a change of rights
    assert store.grants_to(grantee)[account][f"AddressBook/{book}"] == {
        "rights": {"mayRead": True, "mayWrite": True}, "subscribed": True}
    store.delete_user("u")
    assert store.grants_to(grantee) == {}


def test_cards_stored_before_the_words_index_get_it_and_are_found_by_it(store, account):
    from app.contacts.card import CARDS, CONTACT_CARD, index_words, stored_record

    card = {"addressBookIds": {"Bdefault": True}, "name": {"full": "Ada Lovelace"},
            "emails": {"e": {"address": "ada@example.org"}}}
    with store.write(account) as w:
        old = stored_record(card)
        del old["_words"]  # as an earlier version stored it
        old_id = w.create_record(CARDS, old)["id"]
        new_id = w.create_record(CARDS, stored_record({**card, "name": {"full": "Ada Byron"}}))["id"]
    assert CONTACT_CARD.index_for({"text": "lovelace ada"}) == ("_words", "lovelace")
    assert CONTACT_CARD.index_for({"phone": "5550100"}) is None  # digits match inside numbers: no index
    with store.read(account) as r:
        assert list(r.record_ids(CARDS, "_words", equals="ada")) == [new_id]
    assert index_words(store) == 1 and index_words(store) == 0
    with store.read(account) as r:
        assert sorted(r.record_ids(CARDS, "_words", equals="ada")) == sorted([old_id, new_id])
        assert list(r.record_ids(CARDS, "_words", equals="example")) != []
