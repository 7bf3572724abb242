"""Mailbox (RFC 8621 §2), black-box over HTTP: default roles, Mailbox/set validation and SetErrors,
destroy rules, the four counts, Mailbox/changes with updatedProperties, Mailbox/query filters, sorts,
trees and windows, and Mailbox/queryChanges."""

from __future__ import annotations

import pytest

from tests.conftest import Jmap, tidings, unique

DEFAULT_ROLES = {"inbox", "drafts", "sent", "archive", "junk", "trash"}
COUNTS = {"totalEmails", "unreadEmails", "totalThreads", "unreadThreads"}
RIGHTS = {"mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords", "mayCreateChild",
          "mayRename", "mayDelete", "maySubmit"}


# ----------------------------------------------------------------------------------------- helpers
def message(subject: str | None = None, msgid: str | None = None, in_reply_to: str | None = None,
            body: str = "Hello there.", sender: str = "Sender <sender@example.com>",
            date: str = "Mon, 01 Jan 2024 10:00:00 +0000") -> tuple[bytes, str]:
    """A small RFC 5322 message with CRLF line endings; returns (raw, Message-ID)."""
    msgid = msgid or f"<{unique('m')}@test.example>"
    lines = [f"From: {sender}", "To: Alice <alice@example.com>", f"Subject: {subject or unique('subj')}",
             f"Message-ID: {msgid}", f"Date: {date}"]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode(), msgid


def create_mailbox(client: Jmap, **props) -> str:
    props.setdefault("name", unique("mb"))
    res = client.ok("Mailbox/set", create={"k": props})
    assert res["created"] and "k" in res["created"], res
    return res["created"]["k"]["id"]


def get_mailbox(client: Jmap, mailbox_id: str) -> dict:
    [mb] = client.ok("Mailbox/get", ids=[mailbox_id])["list"]
    return mb


def counts(client: Jmap, mailbox_id: str) -> dict:
    mb = get_mailbox(client, mailbox_id)
    return {k: mb[k] for k in COUNTS}


def c(total: int, unread: int, threads: int, unread_threads: int) -> dict:
    return {"totalEmails": total, "unreadEmails": unread, "totalThreads": threads,
            "unreadThreads": unread_threads}


def not_created(client: Jmap, obj: dict) -> dict:
    res = client.ok("Mailbox/set", create={"bad": obj})
    assert not res.get("created"), res
    return res["notCreated"]["bad"]


def not_updated(client: Jmap, mailbox_id: str, patch: dict) -> dict:
    res = client.ok("Mailbox/set", update={mailbox_id: patch})
    assert not res.get("updated"), res
    return res["notUpdated"][mailbox_id]


def query(client: Jmap, **args) -> dict:
    return client.ok("Mailbox/query", **args)


def set_keywords(client: Jmap, email_id: str, keywords: dict) -> None:
    res = client.ok("Email/set", update={email_id: {"keywords": keywords}})
    assert email_id in (res.get("updated") or {}), res


def move(client: Jmap, email_id: str, mailbox_ids: dict) -> None:
    res = client.ok("Email/set", update={email_id: {"mailboxIds": mailbox_ids}})
    assert email_id in (res.get("updated") or {}), res


# ---------------------------------------------------------------------------------- default roles
def test_new_account_has_the_default_role_mailboxes(server):
    name = unique("new")
    tidings("user", "add", name, "--password", "pw", "--email", f"{name}@example.com", data=server.data)
    client = Jmap(server, name, "pw")
    mailboxes = client.ok("Mailbox/get", ids=None)["list"]
    roles = [mb["role"] for mb in mailboxes if mb["role"]]
    assert DEFAULT_ROLES <= set(roles)
    assert len(roles) == len(set(roles)), "no two mailboxes share a role"
    for mb in mailboxes:
        assert mb["parentId"] is None
        assert isinstance(mb["name"], str) and mb["name"]
        assert {k: mb[k] for k in COUNTS} == c(0, 0, 0, 0)
        assert set(mb["myRights"]) == RIGHTS and all(mb["myRights"].values())
        assert isinstance(mb["sortOrder"], int) and isinstance(mb["isSubscribed"], bool)
    names = [mb["name"].casefold() for mb in mailboxes]
    assert len(names) == len(set(names))


def test_mailbox_get_returns_every_property(alice):
    mb = get_mailbox(alice, alice.mailbox("inbox"))
    assert set(mb) == {"id", "name", "parentId", "role", "sortOrder", "myRights", "isSubscribed", "shareWith"} | COUNTS


# ------------------------------------------------------------------------------------- Mailbox/set
def test_create_returns_server_set_properties_and_defaults(alice):
    name = unique("new")
    res = alice.ok("Mailbox/set", create={"n": {"name": name}})
    created = res["created"]["n"]
    assert isinstance(created["id"], str) and created["id"]
    for key in COUNTS:
        assert created[key] == 0, key
    assert created["parentId"] is None
    assert created["role"] is None
    assert created["sortOrder"] == 0
    assert created["isSubscribed"] is True
    assert set(created["myRights"]) == RIGHTS
    assert res["oldState"] != res["newState"]
    mb = get_mailbox(alice, created["id"])
    assert mb["name"] == name and mb["parentId"] is None and mb["role"] is None


def test_create_lists_every_invalid_property_with_a_description(alice):
    err = not_created(alice, {"name": "", "role": "notarole", "totalEmails": 5, "bogus": 1,
                              "sortOrder": -1, "isSubscribed": "yes"})
    assert err["type"] == "invalidProperties"
    assert set(err["properties"]) == {"name", "role", "totalEmails", "bogus", "sortOrder", "isSubscribed"}
    assert isinstance(err.get("description"), str) and err["description"]


@pytest.mark.parametrize("obj, prop", [
    ({}, "name"),
    ({"name": None}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": "ok", "parentId": "no-such-mailbox"}, "parentId"),
    ({"name": "ok", "parentId": 5}, "parentId"),
    ({"name": "ok", "role": "INBOX-ish"}, "role"),
    ({"name": "ok", "sortOrder": 2**31}, "sortOrder"),
    ({"name": "ok", "sortOrder": 1.5}, "sortOrder"),
    ({"name": "ok", "id": "Bmine"}, "id"),
    ({"name": "ok", "myRights": {}}, "myRights"),
    ({"name": "ok", "unreadThreads": 0}, "unreadThreads"),
])
def test_create_refuses_each_invalid_property(alice, obj, prop):
    if obj.get("name") == "ok":
        obj = {**obj, "name": unique("ok")}
    err = not_created(alice, obj)
    assert err["type"] == "invalidProperties", err
    assert prop in err["properties"], err
    assert err.get("description")


def test_duplicate_sibling_name_is_refused(alice):
    name = unique("dup")
    parent = create_mailbox(alice)
    create_mailbox(alice, name=name)
    create_mailbox(alice, name=name, parentId=parent)  # same name under another parent is fine
    for obj in ({"name": name}, {"name": name, "parentId": parent}):
        err = not_created(alice, obj)
        assert err["type"] in ("invalidProperties", "alreadyExists"), err
        if err["type"] == "invalidProperties":
            assert "name" in err["properties"]
    # two creates with one name in a single call: only one may succeed
    other = unique("dup2")
    res = alice.ok("Mailbox/set", create={"a": {"name": other}, "b": {"name": other}})
    assert len(res["created"] or {}) == 1 and len(res["notCreated"] or {}) == 1, res
    # renaming onto a sibling's name is refused as well
    third = create_mailbox(alice)
    err = not_updated(alice, third, {"name": name})
    assert err["type"] in ("invalidProperties", "alreadyExists"), err


def test_duplicate_role_is_refused(alice):
    err = not_created(alice, {"name": unique("role"), "role": "inbox"})
    assert err["type"] == "invalidProperties" and "role" in err["properties"], err
    mine = create_mailbox(alice)
    err = not_updated(alice, mine, {"role": "trash"})
    assert err["type"] == "invalidProperties" and "role" in err["properties"], err


def test_role_can_be_given_and_taken_away(alice):
    roles = {mb["role"] for mb in alice.ok("Mailbox/get", ids=None)["list"]}
    role = next(r for r in ("flagged", "important", "memos", "snoozed", "scheduled", "all") if r not in roles)
    mine = create_mailbox(alice, role=role)
    assert get_mailbox(alice, mine)["role"] == role
    assert alice.ok("Mailbox/set", update={mine: {"role": None}})["updated"] == {mine: None}
    assert get_mailbox(alice, mine)["role"] is None
    alice.ok("Mailbox/set", destroy=[mine])


def test_parent_id_may_reference_a_creation_id_in_the_same_and_a_later_call(alice):
    top, child, grandchild = unique("top"), unique("child"), unique("grand")
    body = alice.request([
        ["Mailbox/set", {"accountId": alice.account_id,
                         "create": {"top": {"name": top}, "child": {"name": child, "parentId": "#top"}}}, "a"],
        ["Mailbox/set", {"accountId": alice.account_id,
                         "create": {"grand": {"name": grandchild, "parentId": "#child"}}}, "b"]])
    (n1, r1, _), (n2, r2, _) = body["methodResponses"]
    assert n1 == "Mailbox/set" and set(r1["created"]) == {"top", "child"}, r1
    assert n2 == "Mailbox/set" and set(r2["created"]) == {"grand"}, r2
    top_id, child_id = r1["created"]["top"]["id"], r1["created"]["child"]["id"]
    assert get_mailbox(alice, child_id)["parentId"] == top_id
    assert get_mailbox(alice, r2["created"]["grand"]["id"])["parentId"] == child_id


def test_creates_are_ordered_so_a_reference_to_a_later_create_resolves(alice):
    """RFC 8620 §5.3: "the server MUST order the creates and updates within a single method call so
    that creates happen before their creation ids are referenced by another create/update/destroy"."""
    top, child = unique("top"), unique("child")
    res = alice.ok("Mailbox/set", create={"child": {"name": child, "parentId": "#top"},
                                          "top": {"name": top}})
    assert set(res["created"] or {}) == {"child", "top"}, res
    assert get_mailbox(alice, res["created"]["child"]["id"])["parentId"] == res["created"]["top"]["id"]


def test_update_and_destroy_in_the_same_call_may_reference_a_create(alice):
    existing = create_mailbox(alice)
    res = alice.ok("Mailbox/set", create={"p": {"name": unique("newparent")}, "gone": {"name": unique("gone")}},
                   update={existing: {"parentId": "#p"}}, destroy=["#gone"])
    assert set(res["created"] or {}) == {"p", "gone"}, res
    assert res["updated"] and existing in res["updated"], res
    assert res["destroyed"] == [res["created"]["gone"]["id"]], res
    assert get_mailbox(alice, existing)["parentId"] == res["created"]["p"]["id"]


def test_hierarchy_may_be_exactly_max_mailbox_depth_deep(alice):
    """RFC 8621 §1.3.1 maxMailboxDepth: "one more than the maximum number of ancestors a Mailbox may
    have": with 10, a chain of 10 mailboxes is allowed and an 11th level is not."""
    depth = alice.session["accounts"][alice.account_id]["accountCapabilities"][
        "urn:ietf:params:jmap:mail"]["maxMailboxDepth"]
    if depth is None:
        return  # no limit advertised: nothing to check
    assert depth <= 50
    parent = None
    for level in range(1, depth + 1):
        res = alice.ok("Mailbox/set", create={"k": {"name": unique(f"lvl{level}-"), "parentId": parent}})
        assert res["created"], (level, res)
        parent = res["created"]["k"]["id"]
    err = not_created(alice, {"name": unique("toodeep"), "parentId": parent})
    assert err["type"] == "invalidProperties" and "parentId" in err["properties"], err


def test_moving_a_subtree_cannot_exceed_max_mailbox_depth(alice):
    depth = alice.session["accounts"][alice.account_id]["accountCapabilities"][
        "urn:ietf:params:jmap:mail"]["maxMailboxDepth"]
    if depth is None:
        return
    assert depth >= 3

    def chain(n: int) -> list[str]:
        ids, parent = [], None
        for _ in range(n):
            res = alice.ok("Mailbox/set", create={"k": {"name": unique("ch"), "parentId": parent}})
            assert res["created"], res
            parent = res["created"]["k"]["id"]
            ids.append(parent)
        return ids

    deep = chain(depth - 2)   # its last mailbox is at level depth - 2
    subtree = chain(3)        # three levels: moved under `deep`, its leaf would be at depth + 1
    err = not_updated(alice, subtree[0], {"parentId": deep[-1]})
    assert err["type"] == "invalidProperties" and "parentId" in err["properties"], err
    assert get_mailbox(alice, subtree[0])["parentId"] is None


def test_name_of_max_size_mailbox_name_octets_is_allowed(alice):
    limit = alice.session["accounts"][alice.account_id]["accountCapabilities"][
        "urn:ietf:params:jmap:mail"]["maxSizeMailboxName"]
    prefix = unique("long")
    name = prefix + "x" * (limit - len(prefix))
    mine = create_mailbox(alice, name=name)
    assert get_mailbox(alice, mine)["name"] == name
    err = not_created(alice, {"name": prefix + "\u00e9" * ((limit - len(prefix)) // 2 + 1)})
    assert err["type"] == "invalidProperties" and "name" in err["properties"], err


def test_unknown_creation_id_reference_is_refused(alice):
    err = not_created(alice, {"name": unique("orphan"), "parentId": "#never-created"})
    assert err["type"] == "invalidProperties" and err["properties"] == ["parentId"], err


def test_update_cannot_create_a_cycle(alice):
    a = create_mailbox(alice)
    b = create_mailbox(alice, parentId=a)
    cc = create_mailbox(alice, parentId=b)
    for patch_target, new_parent in ((a, b), (a, cc), (a, a), (b, cc)):
        err = not_updated(alice, patch_target, {"parentId": new_parent})
        assert err["type"] == "invalidProperties" and "parentId" in err["properties"], err
    assert get_mailbox(alice, a)["parentId"] is None
    # a legal move still works
    assert alice.ok("Mailbox/set", update={cc: {"parentId": a}})["updated"] == {cc: None}
    assert get_mailbox(alice, cc)["parentId"] == a


def test_patch_update_changes_only_the_given_properties(alice):
    mine = create_mailbox(alice, sortOrder=7, isSubscribed=True)
    new_name = unique("renamed")
    res = alice.ok("Mailbox/set", update={mine: {"name": new_name, "isSubscribed": False}})
    assert res["updated"] == {mine: None} or res["updated"][mine] in (None, {}), res
    mb = get_mailbox(alice, mine)
    assert mb["name"] == new_name and mb["isSubscribed"] is False and mb["sortOrder"] == 7


def test_update_of_server_set_or_unknown_properties_is_refused(alice):
    mine = create_mailbox(alice)
    err = not_updated(alice, mine, {"totalEmails": 99, "bogus": 1})
    assert err["type"] == "invalidProperties"
    assert set(err["properties"]) == {"totalEmails", "bogus"}, err
    # setting a server-set property to its current value is allowed (RFC 8620 §5.3)
    assert alice.ok("Mailbox/set", update={mine: {"totalEmails": 0}})["updated"] == {mine: None}


def test_update_and_destroy_of_unknown_ids_are_not_found(alice):
    res = alice.ok("Mailbox/set", update={"Bnope": {"name": unique()}}, destroy=["Bnope2"])
    assert res["notUpdated"]["Bnope"]["type"] == "notFound"
    assert res["notDestroyed"]["Bnope2"]["type"] == "notFound"
    assert res["updated"] is None and res["destroyed"] is None and res["created"] is None


def test_if_in_state_mismatch_is_a_method_error_and_changes_nothing(alice):
    name = unique("iis")
    state = alice.ok("Mailbox/get", ids=[])["state"]
    name_, result = alice.call("Mailbox/set", ifInState="not-the-state", create={"x": {"name": name}})
    assert name_ == "error" and result["type"] == "stateMismatch", result
    assert alice.ok("Mailbox/get", ids=[])["state"] == state
    assert not query(alice, filter={"name": name})["ids"]
    res = alice.ok("Mailbox/set", ifInState=state, create={"x": {"name": name}})
    assert res["oldState"] == state and res["created"]["x"]["id"]


def test_destroy_refuses_a_mailbox_with_children(alice):
    parent = create_mailbox(alice)
    child = create_mailbox(alice, parentId=parent)
    res = alice.ok("Mailbox/set", destroy=[parent])
    assert res["notDestroyed"][parent]["type"] == "mailboxHasChild", res
    assert get_mailbox(alice, parent)
    res = alice.ok("Mailbox/set", destroy=[child])
    assert res["destroyed"] == [child]
    res = alice.ok("Mailbox/set", destroy=[parent])
    assert res["destroyed"] == [parent]
    assert alice.ok("Mailbox/get", ids=[parent, child])["notFound"] == [parent, child]


def test_destroy_refuses_a_mailbox_with_email_unless_asked_to_remove_them(alice):
    box = create_mailbox(alice)
    raw, _ = message()
    alice.import_message(raw, mailbox=box)
    res = alice.ok("Mailbox/set", destroy=[box])
    assert res["notDestroyed"][box]["type"] == "mailboxHasEmail", res
    res = alice.ok("Mailbox/set", destroy=[box], onDestroyRemoveEmails=False)
    assert res["notDestroyed"][box]["type"] == "mailboxHasEmail", res
    assert get_mailbox(alice, box)["totalEmails"] == 1


def test_on_destroy_remove_emails_destroys_emails_only_in_that_mailbox(alice):
    doomed, keeper = create_mailbox(alice), create_mailbox(alice)
    only, _ = message()
    shared, _ = message()
    only_id = alice.import_message(only, mailbox=doomed)["id"]
    blob = alice.upload(shared)
    res = alice.ok("Email/import", emails={"s": {"blobId": blob["blobId"],
                                                 "mailboxIds": {doomed: True, keeper: True}}})
    shared_id = res["created"]["s"]["id"]
    email_state = alice.ok("Email/get", ids=[])["state"]

    res = alice.ok("Mailbox/set", destroy=[doomed], onDestroyRemoveEmails=True)
    assert res["destroyed"] == [doomed], res
    got = alice.ok("Email/get", ids=[only_id, shared_id], properties=["mailboxIds"])
    assert got["notFound"] == [only_id]
    assert got["list"] == [{"id": shared_id, "mailboxIds": {keeper: True}}]
    assert counts(alice, keeper) == c(1, 1, 1, 1)
    ch = alice.ok("Email/changes", sinceState=email_state)
    assert ch["destroyed"] == [only_id] and ch["updated"] == [shared_id], ch


# ---------------------------------------------------------------------------------------- counts
def test_counts_follow_imports_keywords_and_moves(alice):
    box, other = create_mailbox(alice), create_mailbox(alice)
    assert counts(alice, box) == c(0, 0, 0, 0)
    raw1, id1 = message()
    m1 = alice.import_message(raw1, mailbox=box)
    raw2, _ = message(in_reply_to=id1)  # same thread as m1
    m2 = alice.import_message(raw2, mailbox=box)
    assert m1["threadId"] == m2["threadId"]
    raw3, _ = message()
    m3 = alice.import_message(raw3, mailbox=box, keywords={"$seen": True})
    assert counts(alice, box) == c(3, 2, 2, 1)

    set_keywords(alice, m1["id"], {"$seen": True})
    assert counts(alice, box) == c(3, 1, 2, 1)  # m2 keeps its thread unread
    set_keywords(alice, m2["id"], {"$seen": True, "$flagged": True})
    assert counts(alice, box) == c(3, 0, 2, 0)
    set_keywords(alice, m3["id"], {})
    assert counts(alice, box) == c(3, 1, 2, 1)
    set_keywords(alice, m3["id"], {"$draft": True})  # $draft counts as read (RFC 8621 §2)
    assert counts(alice, box) == c(3, 0, 2, 0)
    set_keywords(alice, m3["id"], {})

    move(alice, m3["id"], {other: True})
    assert counts(alice, box) == c(2, 0, 1, 0)
    assert counts(alice, other) == c(1, 1, 1, 1)
    move(alice, m1["id"], {box: True, other: True})  # in two mailboxes at once
    assert counts(alice, box) == c(2, 0, 1, 0)
    assert counts(alice, other) == c(2, 1, 2, 1)
    res = alice.ok("Email/set", update={m1["id"]: {f"mailboxIds/{box}": None}})
    assert m1["id"] in res["updated"], res
    assert counts(alice, box) == c(1, 0, 1, 0)
    res = alice.ok("Email/set", update={m2["id"]: {"keywords/$seen": None}})
    assert m2["id"] in res["updated"], res
    assert counts(alice, box) == c(1, 1, 1, 1)

    res = alice.ok("Email/set", destroy=[m2["id"], m3["id"]])
    assert sorted(res["destroyed"]) == sorted([m2["id"], m3["id"]])
    assert counts(alice, box) == c(0, 0, 0, 0)
    assert counts(alice, other) == c(1, 0, 1, 0)


# ---------------------------------------------------------------------------------- Mailbox/changes
def test_mailbox_changes_report_created_updated_and_destroyed(alice):
    s0 = alice.ok("Mailbox/get", ids=[])["state"]
    box = create_mailbox(alice)
    ch = alice.ok("Mailbox/changes", sinceState=s0)
    assert ch["created"] == [box] and ch["updated"] == [] and ch["destroyed"] == []
    assert ch["updatedProperties"] is None
    assert ch["newState"] == alice.ok("Mailbox/get", ids=[])["state"]

    s1 = ch["newState"]
    alice.ok("Mailbox/set", update={box: {"name": unique("ren")}})
    ch = alice.ok("Mailbox/changes", sinceState=s1)
    assert ch["updated"] == [box] and ch["created"] == [] and ch["destroyed"] == []
    assert ch["updatedProperties"] is None

    s2 = ch["newState"]
    raw, _ = message()
    email = alice.import_message(raw, mailbox=box)
    ch = alice.ok("Mailbox/changes", sinceState=s2)
    assert ch["updated"] == [box], ch
    assert ch["updatedProperties"] is not None and set(ch["updatedProperties"]) == COUNTS, ch

    s3 = ch["newState"]
    set_keywords(alice, email["id"], {"$seen": True})
    ch = alice.ok("Mailbox/changes", sinceState=s3)
    assert ch["updated"] == [box] and set(ch["updatedProperties"] or []) == COUNTS, ch

    # a rename and a count change in the window: not only counts any more
    alice.ok("Mailbox/set", update={box: {"sortOrder": 3}})
    ch = alice.ok("Mailbox/changes", sinceState=s2)
    assert ch["updated"] == [box] and ch["updatedProperties"] is None, ch

    s4 = alice.ok("Mailbox/get", ids=[])["state"]
    alice.ok("Mailbox/set", destroy=[box], onDestroyRemoveEmails=True)
    ch = alice.ok("Mailbox/changes", sinceState=s4)
    assert ch["destroyed"] == [box] and ch["created"] == [] and ch["updated"] == []


def test_updated_properties_can_feed_a_mailbox_get_by_reference(alice):
    box = create_mailbox(alice)
    state = alice.ok("Mailbox/get", ids=[])["state"]
    raw, _ = message()
    alice.import_message(raw, mailbox=box)
    body = alice.request([
        ["Mailbox/changes", {"accountId": alice.account_id, "sinceState": state}, "ch"],
        ["Mailbox/get", {"accountId": alice.account_id,
                         "#ids": {"resultOf": "ch", "name": "Mailbox/changes", "path": "/updated"},
                         "#properties": {"resultOf": "ch", "name": "Mailbox/changes",
                                         "path": "/updatedProperties"}}, "get"]])
    name, result, _ = body["methodResponses"][1]
    assert name == "Mailbox/get", result
    assert result["list"] == [{"id": box, "totalEmails": 1, "unreadEmails": 1, "totalThreads": 1,
                               "unreadThreads": 1}]


# ----------------------------------------------------------------------------------- Mailbox/query
@pytest.fixture
def tree(alice) -> dict:
    """A small tree whose names all contain a unique token, except "other":

        root (sortOrder 5)
        ├── a (sortOrder 2)
        │   └── c (sortOrder 0)
        └── b (sortOrder 1, not subscribed)
            └── other  (name without the token)
                └── y
    """
    tok = unique("tree")
    ids: dict[str, str] = {"tok": tok}
    res = alice.ok("Mailbox/set", create={
        "root": {"name": f"{tok}-root", "sortOrder": 5},
        "a": {"name": f"{tok}-a", "parentId": "#root", "sortOrder": 2},
        "b": {"name": f"{tok}-b", "parentId": "#root", "sortOrder": 1, "isSubscribed": False},
        "c": {"name": f"{tok}-c", "parentId": "#a", "sortOrder": 0},
        "other": {"name": unique("other"), "parentId": "#b"},
        "y": {"name": f"{tok}-y", "parentId": "#other"},
    })
    assert res["created"] and len(res["created"]) == 6, res
    ids.update({k: v["id"] for k, v in res["created"].items()})
    return ids


def test_query_filters_by_parent_name_role_and_subscription(alice, tree):
    t = tree
    assert set(query(alice, filter={"parentId": t["root"]})["ids"]) == {t["a"], t["b"]}
    assert set(query(alice, filter={"name": t["tok"]})["ids"]) == {t["root"], t["a"], t["b"], t["c"], t["y"]}
    assert set(query(alice, filter={"name": t["tok"].upper()})["ids"]) == \
        {t["root"], t["a"], t["b"], t["c"], t["y"]}, "name matching ignores case"
    assert query(alice, filter={"role": "inbox"})["ids"] == [alice.mailbox("inbox")]
    with_role = set(query(alice, filter={"hasAnyRole": True})["ids"])
    all_boxes = alice.ok("Mailbox/get", ids=None)["list"]
    assert with_role == {mb["id"] for mb in all_boxes if mb["role"]}
    without_role = set(query(alice, filter={"hasAnyRole": False})["ids"])
    assert without_role == {mb["id"] for mb in all_boxes if not mb["role"]}
    assert t["root"] in without_role
    unsubscribed = set(query(alice, filter={"isSubscribed": False, "name": t["tok"]})["ids"])
    assert unsubscribed == {t["b"]}
    no_role = set(query(alice, filter={"role": None})["ids"])
    assert no_role == without_role
    top_level = set(query(alice, filter={"parentId": None})["ids"])
    assert t["root"] in top_level and t["a"] not in top_level
    assert alice.mailbox("inbox") in top_level


def test_query_filter_operators(alice, tree):
    t = tree
    both = {"operator": "AND", "conditions": [{"name": t["tok"]}, {"parentId": t["root"]}]}
    assert set(query(alice, filter=both)["ids"]) == {t["a"], t["b"]}
    either = {"operator": "OR", "conditions": [{"parentId": t["a"]}, {"parentId": t["other"]}]}
    assert set(query(alice, filter=either)["ids"]) == {t["c"], t["y"]}
    neither = {"operator": "AND", "conditions": [
        {"name": t["tok"]},
        {"operator": "NOT", "conditions": [{"parentId": t["root"]}, {"parentId": None}]}]}
    assert set(query(alice, filter=neither)["ids"]) == {t["c"], t["y"]}
    assert query(alice, filter={"operator": "OR", "conditions": []})["ids"] == []


def test_query_unknown_filter_or_sort_is_refused(alice):
    name, res = alice.call("Mailbox/query", filter={"colour": "red"})
    assert name == "error" and res["type"] in ("unsupportedFilter", "invalidArguments"), res
    name, res = alice.call("Mailbox/query", sort=[{"property": "totalEmails"}])
    assert name == "error" and res["type"] == "unsupportedSort", res


def test_query_sorts_by_name_and_by_sort_order(alice, tree):
    t = tree
    children = {"parentId": t["root"]}
    assert query(alice, filter=children, sort=[{"property": "name"}])["ids"] == [t["a"], t["b"]]
    assert query(alice, filter=children, sort=[{"property": "name", "isAscending": False}])["ids"] == \
        [t["b"], t["a"]]
    assert query(alice, filter=children, sort=[{"property": "sortOrder"}])["ids"] == [t["b"], t["a"]]
    named = {"name": t["tok"]}
    assert query(alice, filter=named, sort=[{"property": "name"}])["ids"] == \
        [t["a"], t["b"], t["c"], t["root"], t["y"]]


def test_query_sort_as_tree_puts_parents_before_children(alice, tree):
    t = tree
    res = query(alice, filter={"name": t["tok"]}, sort=[{"property": "name"}], sortAsTree=True)
    assert res["ids"] == [t["root"], t["a"], t["c"], t["b"], t["y"]]
    res = query(alice, filter={"name": t["tok"]}, sort=[{"property": "sortOrder"}], sortAsTree=True)
    assert res["ids"] == [t["root"], t["b"], t["y"], t["a"], t["c"]]


def test_query_filter_as_tree_drops_mailboxes_below_a_non_matching_one(alice, tree):
    t = tree
    res = query(alice, filter={"name": t["tok"]}, sort=[{"property": "name"}], sortAsTree=True,
                filterAsTree=True)
    assert res["ids"] == [t["root"], t["a"], t["c"], t["b"]]
    res = query(alice, filter={"name": t["tok"]}, filterAsTree=True)
    assert set(res["ids"]) == {t["root"], t["a"], t["c"], t["b"]}


def test_query_window_position_limit_anchor_and_total(alice):
    parent = create_mailbox(alice)
    res = alice.ok("Mailbox/set", create={f"n{i}": {"name": f"n{i}", "parentId": parent} for i in range(5)})
    n = [res["created"][f"n{i}"]["id"] for i in range(5)]
    base = {"filter": {"parentId": parent}, "sort": [{"property": "name"}]}

    full = query(alice, **base, calculateTotal=True)
    assert full["ids"] == n and full["total"] == 5 and full["position"] == 0
    assert isinstance(full["queryState"], str) and isinstance(full["canCalculateChanges"], bool)
    assert "total" not in query(alice, **base) or query(alice, **base).get("total") in (None, 5)

    page = query(alice, **base, position=1, limit=2, calculateTotal=True)
    assert page["ids"] == n[1:3] and page["position"] == 1 and page["total"] == 5
    page = query(alice, **base, position=-2)
    assert page["ids"] == n[3:] and page["position"] == 3
    page = query(alice, **base, position=-10)
    assert page["ids"] == n and page["position"] == 0
    page = query(alice, **base, position=7, calculateTotal=True)
    assert page["ids"] == [] and page["total"] == 5
    page = query(alice, **base, limit=0)
    assert page["ids"] == []

    page = query(alice, **base, anchor=n[2], anchorOffset=-1, limit=2)
    assert page["ids"] == n[1:3] and page["position"] == 1
    page = query(alice, **base, anchor=n[3])
    assert page["ids"] == n[3:] and page["position"] == 3
    page = query(alice, **base, anchor=n[1], anchorOffset=-5, limit=2)
    assert page["ids"] == n[:2] and page["position"] == 0
    page = query(alice, **base, anchor=n[1], anchorOffset=10)
    assert page["ids"] == []
    page = query(alice, **base, anchor=n[3], position=1)  # position is ignored with an anchor
    assert page["ids"] == n[3:] and page["position"] == 3

    name, err = alice.call("Mailbox/query", **base, anchor="Bnot-in-results")
    assert name == "error" and err["type"] == "anchorNotFound", err
    name, err = alice.call("Mailbox/query", **base, limit=-1)
    assert name == "error" and err["type"] == "invalidArguments", err


def apply_query_changes(old: list[str], changes: dict) -> list[str]:
    out = [i for i in old if i not in set(changes["removed"])]
    for item in sorted(changes["added"], key=lambda a: a["index"]):
        out.insert(item["index"], item["id"])
    return out


def test_query_changes_after_a_rename_transform_the_old_results_into_the_new(alice):
    parent = create_mailbox(alice)
    res = alice.ok("Mailbox/set", create={f"n{i}": {"name": f"n{i}", "parentId": parent} for i in range(5)})
    n = [res["created"][f"n{i}"]["id"] for i in range(5)]
    args = {"filter": {"parentId": parent}, "sort": [{"property": "name"}]}
    before = query(alice, **args)
    assert before["ids"] == n and before["canCalculateChanges"] is True

    alice.ok("Mailbox/set", update={n[0]: {"name": "zz"}})
    after = query(alice, **args, calculateTotal=True)
    assert after["ids"] == n[1:] + [n[0]]
    ch = alice.ok("Mailbox/queryChanges", **args, sinceQueryState=before["queryState"], calculateTotal=True)
    assert ch["oldQueryState"] == before["queryState"]
    assert ch["newQueryState"] == after["queryState"]
    assert n[0] in ch["removed"]
    assert {"id": n[0], "index": 4} in ch["added"]
    assert ch["total"] == 5
    assert apply_query_changes(before["ids"], ch) == after["ids"]

    # a new mailbox and a destroyed one
    alice.ok("Mailbox/set", destroy=[n[2]])
    created = alice.ok("Mailbox/set", create={"m": {"name": "n15", "parentId": parent}})["created"]["m"]["id"]
    latest = query(alice, **args)
    ch = alice.ok("Mailbox/queryChanges", **args, sinceQueryState=after["queryState"])
    assert n[2] in ch["removed"]
    assert created in [a["id"] for a in ch["added"]]
    assert apply_query_changes(after["ids"], ch) == latest["ids"]
    ch = alice.ok("Mailbox/queryChanges", **args, sinceQueryState=before["queryState"])
    assert apply_query_changes(before["ids"], ch) == latest["ids"]


def test_query_changes_from_an_unknown_state_is_cannot_calculate_changes(alice):
    name, err = alice.call("Mailbox/queryChanges", sinceQueryState="garbage")
    assert name == "error" and err["type"] == "cannotCalculateChanges", err


def test_query_changes_with_too_few_max_changes_is_too_many_changes(alice):
    parent = create_mailbox(alice)
    args = {"filter": {"parentId": parent}}
    state = query(alice, **args)["queryState"]
    alice.ok("Mailbox/set", create={f"n{i}": {"name": f"n{i}", "parentId": parent} for i in range(3)})
    name, err = alice.call("Mailbox/queryChanges", **args, sinceQueryState=state, maxChanges=1)
    assert name == "error" and err["type"] == "tooManyChanges", err


# ------------------------------------------------------------ RFC 8620 §5.3: only the final state counts

def test_two_siblings_may_swap_names_in_one_call(alice):
    a_name, b_name = unique("swapA"), unique("swapB")
    a, b = create_mailbox(alice, name=a_name), create_mailbox(alice, name=b_name)
    res = alice.ok("Mailbox/set", update={a: {"name": b_name}, b: {"name": a_name}})
    assert res["notUpdated"] is None, res
    assert (get_mailbox(alice, a)["name"], get_mailbox(alice, b)["name"]) == (b_name, a_name)


def test_two_mailboxes_may_swap_roles_in_one_call(alice):
    archive = next(m for m in alice.ok("Mailbox/get", ids=None)["list"] if m["role"] == "archive") \
        if any(m["role"] == "archive" for m in alice.ok("Mailbox/get", ids=None)["list"]) else None
    holder = archive["id"] if archive else create_mailbox(alice, role="archive")
    other = create_mailbox(alice)
    res = alice.ok("Mailbox/set", update={holder: {"role": None}, other: {"role": "archive"}})
    assert res["notUpdated"] is None, res
    assert get_mailbox(alice, other)["role"] == "archive"
    res = alice.ok("Mailbox/set", update={holder: {"role": "archive"}, other: {"role": None}})
    assert res["notUpdated"] is None, res


def test_a_chain_may_be_reversed_in_one_call(alice):
    top = create_mailbox(alice)
    below = create_mailbox(alice, parentId=top)
    # below goes to the top level and top moves under it: a cycle only part-way through
    res = alice.ok("Mailbox/set", update={top: {"parentId": below}, below: {"parentId": None}})
    assert res["notUpdated"] is None, res
    assert get_mailbox(alice, top)["parentId"] == below


def test_a_cycle_in_the_final_state_is_refused(alice):
    a = create_mailbox(alice)
    b = create_mailbox(alice, parentId=a)
    res = alice.ok("Mailbox/set", update={a: {"parentId": b}})
    assert res["notUpdated"][a]["properties"] == ["parentId"]


def test_a_parent_whose_child_cannot_be_destroyed_stays_too(alice):
    parent = create_mailbox(alice)
    child = create_mailbox(alice, parentId=parent)
    raw, _ = message(unique("kept"))
    alice.import_message(raw, mailbox=child)
    res = alice.ok("Mailbox/set", destroy=[parent, child])
    assert res["destroyed"] is None, res
    assert res["notDestroyed"][child]["type"] == "mailboxHasEmail"
    assert res["notDestroyed"][parent]["type"] == "mailboxHasChild"


def test_a_destroy_fails_when_a_create_of_the_same_call_puts_a_child_under_it(alice):
    parent = create_mailbox(alice)
    res = alice.ok("Mailbox/set", create={"k": {"name": unique("kid"), "parentId": parent}}, destroy=[parent])
    assert res["created"] and "k" in res["created"]
    assert res["notDestroyed"][parent]["type"] == "mailboxHasChild"


def test_a_mutable_property_of_the_wrong_json_type_is_refused_even_when_equal_in_python(alice):
    mailbox_id = create_mailbox(alice, sortOrder=1)
    err = not_updated(alice, mailbox_id, {"sortOrder": True})
    assert err["type"] == "invalidProperties" and err["properties"] == ["sortOrder"]


def test_names_are_stored_nfc_and_compared_after_normalisation_on_rename_too(alice):
    base = unique("Nfc")
    a = create_mailbox(alice, name=base + "Cafe\u0301")
    assert get_mailbox(alice, a)["name"] == base + "Caf\u00e9"
    b = create_mailbox(alice)
    err = not_updated(alice, b, {"name": base + "CAF\u00c9"})
    assert err["properties"] == ["name"]
