"""Sharing between users (RFC 9670 with the Mailbox rights of RFC 8621 §2): a mailbox shared with
shareWith or `tidings share`, seen and used by the grantee through every method, exactly as
granted; revocation taking effect on the next request."""

from __future__ import annotations

import pytest

from tests.conftest import Jmap, serve_users, tidings, unique

PRINCIPALS = "urn:ietf:params:jmap:principals"
OWNER_CAP = "urn:ietf:params:jmap:principals:owner"
ALL = ["mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords", "mayCreateChild",
       "mayRename", "mayDelete", "maySubmit"]


def rights(*granted: str) -> dict:
    return {r: r in granted for r in ALL}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_users(tmp_path_factory, "sharing", ("alice", "bob", "carol"))


@pytest.fixture(scope="module")
def alice(server):
    return Jmap(server, "alice", "pw")


@pytest.fixture(scope="module")
def bob(server):
    return Jmap(server, "bob", "pw")


@pytest.fixture(scope="module")
def carol(server):
    return Jmap(server, "carol", "pw")


def message(subject: str) -> bytes:
    return (f"From: dave@example.net\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nabout {subject}\r\n").encode()


@pytest.fixture
def shared(alice, bob):
    """A mailbox of alice's with one email, shared with bob for reading; one email elsewhere."""
    box = alice.ok("Mailbox/set", create={"b": {"name": unique("Shared ")}})["created"]["b"]["id"]
    inside = alice.import_message(message(unique("inside ")), mailbox=box)["id"]
    outside = alice.import_message(message(unique("outside ")))["id"]
    res = alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights("mayReadItems")}}})
    assert res["updated"] == {box: None}, res
    yield box, inside, outside
    alice.ok("Mailbox/set", update={box: {"shareWith": None}})


def as_bob(bob, alice, method: str, **args) -> tuple[str, dict]:
    return bob.call(method, {"accountId": alice.account_id, **args})


# ---------------------------------------------------------------------------------- session
def test_the_grantee_sees_the_sharers_account_in_the_session(alice, bob, shared):
    session = bob.http.get("/.well-known/jmap").json()
    account = session["accounts"][alice.account_id]
    assert account["name"] == "alice@example.org"
    assert (account["isPersonal"], account["isReadOnly"]) == (False, True)
    caps = account["accountCapabilities"]
    assert "urn:ietf:params:jmap:mail" in caps and caps["urn:ietf:params:jmap:mail"]["mayCreateTopLevelMailbox"] is False
    assert caps[OWNER_CAP] == {"accountIdForPrincipal": bob.account_id, "principalId": alice.account_id}
    assert "urn:ietf:params:jmap:submission" not in caps and PRINCIPALS not in caps
    assert session["primaryAccounts"]["urn:ietf:params:jmap:mail"] == bob.account_id
    own = session["accounts"][bob.account_id]["accountCapabilities"]
    assert own[PRINCIPALS] == {"currentUserPrincipalId": bob.account_id}


def test_granting_a_write_right_makes_the_account_writable(alice, bob, shared):
    box, _, _ = shared
    alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights("mayReadItems", "maySetSeen")}}})
    session = bob.http.get("/.well-known/jmap").json()
    assert session["accounts"][alice.account_id]["isReadOnly"] is False


# ---------------------------------------------------------------------------------- reading
def test_the_grantee_sees_only_the_shared_mailbox_with_its_rights(alice, bob, shared):
    box, _, _ = shared
    name, res = as_bob(bob, alice, "Mailbox/get", ids=None)
    assert name == "Mailbox/get"
    [mb] = res["list"]
    assert mb["id"] == box
    assert mb["myRights"] == rights("mayReadItems")
    assert mb["shareWith"] is None and mb["isSubscribed"] is False  # §2: per user, off for shared ones
    owner_view = alice.ok("Mailbox/get", ids=[box])["list"][0]
    assert owner_view["shareWith"] == {bob.account_id: rights("mayReadItems")}
    assert owner_view["myRights"] == rights(*ALL)
    assert as_bob(bob, alice, "Mailbox/query")[1]["ids"] == [box]


def test_the_grantee_reads_only_mail_in_the_shared_mailbox(alice, bob, shared):
    box, inside, outside = shared
    name, res = as_bob(bob, alice, "Email/query")
    assert name == "Email/query" and res["ids"] == [inside]
    name, res = as_bob(bob, alice, "Email/get", ids=[inside, outside], properties=["mailboxIds", "subject"])
    assert [e["id"] for e in res["list"]] == [inside] and res["notFound"] == [outside]
    assert res["list"][0]["mailboxIds"] == {box: True}
    thread = alice.ok("Email/get", ids=[outside], properties=["threadId"])["list"][0]["threadId"]
    assert as_bob(bob, alice, "Thread/get", ids=[thread])[1]["notFound"] == [thread]
    snippets = as_bob(bob, alice, "SearchSnippet/get", emailIds=[inside, outside], filter={"text": "about"})[1]
    assert [s["emailId"] for s in snippets["list"]] == [inside] and snippets["notFound"] == [outside]


def test_the_grantee_downloads_blobs_of_shared_mail_only(alice, bob, shared):
    _, inside, outside = shared
    blobs = {e["id"]: e["blobId"] for e in alice.ok("Email/get", ids=[inside, outside], properties=["blobId"])["list"]}
    url = bob.session["downloadUrl"].replace("{accountId}", alice.account_id).replace("{name}", "m.eml").replace(
        "{type}", "message/rfc822")
    assert bob.http.get(url.replace("{blobId}", blobs[inside])).status_code == 200
    assert bob.http.get(url.replace("{blobId}", blobs[outside])).status_code == 404


# ---------------------------------------------------------------------------------- writing
def test_a_read_only_grantee_cannot_change_anything(alice, bob, shared):
    box, inside, _ = shared
    res = as_bob(bob, alice, "Email/set", update={inside: {"keywords/$seen": True}})[1]
    assert res["notUpdated"][inside]["type"] == "forbidden"
    res = as_bob(bob, alice, "Email/set", destroy=[inside])[1]
    assert res["notDestroyed"][inside]["type"] == "forbidden"
    res = as_bob(bob, alice, "Mailbox/set", update={box: {"name": "mine now"}}, destroy=[box])[1]
    assert res["notUpdated"][box]["type"] == "forbidden" and res["notDestroyed"][box]["type"] == "forbidden"
    res = as_bob(bob, alice, "Mailbox/set", create={"c": {"name": "child", "parentId": box}})[1]
    assert res["notCreated"]["c"]["type"] == "forbidden"
    assert alice.ok("Email/get", ids=[inside], properties=["keywords"])["list"][0]["keywords"] == {}


def test_the_grantee_may_do_exactly_what_was_granted(alice, bob, shared):
    box, inside, _ = shared
    alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights("mayReadItems", "maySetSeen")}}})
    res = as_bob(bob, alice, "Email/set", update={inside: {"keywords/$seen": True}})[1]
    assert res["updated"] == {inside: None}
    res = as_bob(bob, alice, "Email/set", update={inside: {"keywords/$flagged": True}})[1]
    assert res["notUpdated"][inside]["type"] == "forbidden"  # maySetKeywords was not granted
    assert alice.ok("Email/get", ids=[inside], properties=["keywords"])["list"][0]["keywords"] == {"$seen": True}


def test_a_grantee_with_add_and_remove_moves_mail_only_between_shared_mailboxes(alice, bob, shared):
    box, inside, _ = shared
    other = alice.ok("Mailbox/set", create={"o": {"name": unique("Other ")}})["created"]["o"]["id"]
    alice.ok("Mailbox/set", update={
        box: {"shareWith": {bob.account_id: rights("mayReadItems", "mayRemoveItems")}},
        other: {"shareWith": {bob.account_id: rights("mayReadItems", "mayAddItems")}}})
    res = as_bob(bob, alice, "Email/set", update={inside: {"mailboxIds": {other: True}}})[1]
    assert res["updated"] == {inside: None}
    # back again needs mayAddItems on box and mayRemoveItems on other: neither was granted
    res = as_bob(bob, alice, "Email/set", update={inside: {"mailboxIds": {box: True}}})[1]
    assert res["notUpdated"][inside]["type"] == "forbidden"
    alice.ok("Email/set", update={inside: {"mailboxIds": {box: True}}})
    alice.ok("Mailbox/set", update={other: {"shareWith": None}})


def test_the_grantee_keeps_their_own_subscription(alice, bob, shared):
    box, _, _ = shared
    res = as_bob(bob, alice, "Mailbox/set", update={box: {"isSubscribed": True}})[1]
    assert res["updated"] == {box: None}
    assert as_bob(bob, alice, "Mailbox/get", ids=[box])[1]["list"][0]["isSubscribed"] is True
    assert alice.ok("Mailbox/get", ids=[box])["list"][0]["isSubscribed"] is True  # alice's own, unchanged
    alice.ok("Mailbox/set", update={box: {"isSubscribed": False}})
    assert as_bob(bob, alice, "Mailbox/get", ids=[box])[1]["list"][0]["isSubscribed"] is True


def test_only_the_owner_shares(alice, bob, carol, shared):
    box, _, _ = shared
    alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights(*ALL)}}})
    res = as_bob(bob, alice, "Mailbox/set", update={box: {"shareWith": {carol.account_id: rights("mayReadItems")}}})[1]
    assert res["notUpdated"][box]["type"] == "forbidden"


def test_share_with_unknown_principals_or_rights_is_invalid(alice, bob, shared):
    box, _, _ = shared
    for share_with in ({"Anobody": rights("mayReadItems")}, {alice.account_id: rights("mayReadItems")},
                       {bob.account_id: {"mayFly": True}}, {bob.account_id: {"mayReadItems": 1}}):
        res = alice.ok("Mailbox/set", update={box: {"shareWith": share_with}})
        err = res["notUpdated"][box]
        assert err["type"] == "invalidProperties" and err["properties"] == ["shareWith"], share_with


def test_email_copy_from_a_shared_account_with_destroy_original_needs_remove(alice, bob, shared):
    box, inside, _ = shared
    inbox = bob.mailbox("inbox")
    copy = {"fromAccountId": alice.account_id, "accountId": bob.account_id,
            "create": {"c": {"id": inside, "mailboxIds": {inbox: True}}}, "onSuccessDestroyOriginal": True}
    resp = bob.request([["Email/copy", copy, "0"]])["methodResponses"]
    assert resp[0][0] == "Email/copy" and resp[0][1]["created"]["c"]["id"]
    assert resp[1][0] == "Email/set" and resp[1][1]["notDestroyed"][inside]["type"] == "forbidden"
    assert alice.ok("Email/get", ids=[inside])["list"]  # still there: mayRemoveItems was not granted


# ---------------------------------------------------------------------------------- refusals
def test_an_account_not_shared_is_indistinguishable_from_none(alice, carol, shared):
    for account in (alice.account_id, "Anonexistent"):
        name, res = carol.call("Mailbox/get", accountId=account)
        assert (name, res["type"]) == ("error", "accountNotFound")
        assert res["description"] == f"no account {account!r} for this user"


def test_methods_outside_mail_answer_account_not_supported_in_a_shared_account(alice, bob, shared):
    for method in ("Identity/get", "EmailSubmission/get", "VacationResponse/get"):
        name, res = bob.request([[method, {"accountId": alice.account_id}, "0"]], using=[
            "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission",
            "urn:ietf:params:jmap:vacationresponse"])["methodResponses"][0][:2]
        assert (name, res["type"]) == ("error", "accountNotSupportedByMethod"), method


def test_revoking_takes_effect_on_the_next_request(alice, bob, shared):
    box, inside, _ = shared
    assert as_bob(bob, alice, "Email/get", ids=[inside])[1]["list"]
    alice.ok("Mailbox/set", update={box: {"shareWith": None}})
    name, res = as_bob(bob, alice, "Email/get", ids=[inside])
    assert (name, res["type"]) == ("error", "accountNotFound")
    assert alice.account_id not in bob.http.get("/.well-known/jmap").json()["accounts"]


def test_mailbox_changes_of_the_grantee_show_a_revoked_mailbox_as_destroyed(alice, bob, carol, shared):
    box, _, _ = shared
    other = alice.ok("Mailbox/set", create={"o": {"name": unique("Kept ")}})["created"]["o"]["id"]
    alice.ok("Mailbox/set", update={other: {"shareWith": {bob.account_id: rights("mayReadItems")}}})
    state = as_bob(bob, alice, "Mailbox/get", ids=[])[1]["state"]
    alice.ok("Mailbox/set", update={box: {"shareWith": None}})
    changes = as_bob(bob, alice, "Mailbox/changes", sinceState=state)[1]
    assert changes["destroyed"] == [box] and changes["updated"] == [] and changes["created"] == []
    alice.ok("Mailbox/set", update={other: {"shareWith": None}})


# ---------------------------------------------------------------------------------- principals
def test_principals_are_the_users_of_the_server(alice, bob, shared):
    using = ["urn:ietf:params:jmap:core", PRINCIPALS]
    res = bob.request([["Principal/query", {"accountId": bob.account_id, "filter": {"email": "alice@"}}, "0"],
                       ["Principal/get", {"accountId": bob.account_id,
                                          "#ids": {"resultOf": "0", "name": "Principal/query", "path": "/ids"}}, "1"]],
                      using=using)["methodResponses"]
    assert res[0][1]["ids"] == [alice.account_id]
    [principal] = res[1][1]["list"]
    assert principal["type"] == "individual" and principal["name"] == "alice"
    assert principal["email"] == "alice@example.org"
    assert principal["accounts"] == {alice.account_id: {"name": "alice@example.org", "isPersonal": False,
                                                        "isReadOnly": True}}
    state = res[1][1]["state"]
    changes = bob.request([["Principal/changes", {"accountId": bob.account_id, "sinceState": state}, "0"]],
                          using=using)["methodResponses"][0][1]
    assert (changes["newState"], changes["created"]) == (state, [])


def test_share_cli_grants_lists_and_revokes(server, alice, bob):
    name = unique("Cli")
    box = alice.ok("Mailbox/set", create={"b": {"name": name}})["created"]["b"]["id"]
    out = tidings("share", "alice", name, "--with", "bob", "--rights", "read,seen", data=server.data).stdout
    assert "bob may read,seen" in out
    assert as_bob(bob, alice, "Mailbox/get", ids=[box])[1]["list"][0]["myRights"] == rights("mayReadItems", "maySetSeen")
    listed = tidings("share", "alice", data=server.data).stdout
    assert f"{name}\tbob\tread,seen" in listed
    tidings("share", "alice", name, "--with", "bob", "--revoke", data=server.data)
    assert as_bob(bob, alice, "Mailbox/get", ids=[box])[0] == "error"
    res = tidings("share", "alice", name, "--with", "bob", "--rights", "fly", data=server.data, check=False)
    assert res.returncode == 1 and "unknown right" in res.stderr


# ---------------------------------------------------------------------------------- push
def test_open_push_connections_report_shared_changes_until_revoked(server, alice, bob, shared):
    import asyncio

    from tests.test_push import EventStream

    box, inside, _ = shared

    async def scenario():
        async with EventStream(server.base, ("bob", "pw"), query="types=*&closeafter=no&ping=0") as es:
            first = await es.state()
            assert alice.account_id in first["data"]["changed"]  # the shared account is watched
            # only the shared account's mail types: not its Identity, Quota, Calendar ... states
            assert set(first["data"]["changed"][alice.account_id]) == {"Email", "Mailbox", "Thread"}
            await asyncio.to_thread(alice.ok, "Email/set", update={inside: {"keywords/$flagged": True}})
            event = await es.state()
            assert list(event["data"]["changed"]) == [alice.account_id]
            await asyncio.to_thread(alice.ok, "Mailbox/set", update={box: {"shareWith": None}})
            await asyncio.to_thread(alice.ok, "Email/set", update={inside: {"keywords/$flagged": None}})
            # bob's own change still arrives; alice's account no longer does
            await asyncio.to_thread(bob.ok, "Mailbox/set", create={"x": {"name": unique("mine ")}})
            while True:
                event = await es.state()
                assert alice.account_id not in event["data"]["changed"], event
                if bob.account_id in event["data"]["changed"]:
                    break

    asyncio.run(asyncio.wait_for(scenario(), 30))


# ------------------------------------------------------------------------- review findings
def test_email_parse_and_blob_copy_do_not_reach_unshared_mail(alice, bob, shared):
    _, inside, outside = shared
    blobs = {e["id"]: e["blobId"] for e in alice.ok("Email/get", ids=[inside, outside], properties=["blobId"])["list"]}
    name, res = as_bob(bob, alice, "Email/parse", blobIds=[blobs[inside], blobs[outside]])
    assert name == "Email/parse" and list(res["parsed"]) == [blobs[inside]] and res["notFound"] == [blobs[outside]]
    res = bob.ok("Blob/copy", fromAccountId=alice.account_id, accountId=bob.account_id,
                 blobIds=[blobs[inside], blobs[outside], "P" + blobs[outside][1:] + ".1"])
    assert list(res["copied"]) == [blobs[inside]]
    assert sorted(res["notCopied"]) == sorted([blobs[outside], "P" + blobs[outside][1:] + ".1"])


def test_thread_keyword_filters_see_only_the_grantees_part_of_the_thread(alice, bob, shared):
    box, inside, _ = shared
    subject = unique("thread secret ")
    first = alice.import_message(message(subject), mailbox=box)
    reply = (f"From: dave@example.net\r\nTo: alice@example.org\r\nSubject: Re: {subject}\r\n"
             f"In-Reply-To: <{subject.replace(' ', '.')}@example.net>\r\nMessage-ID: <r.{unique()}@x>\r\n\r\nsecret\r\n")
    hidden = alice.import_message(reply.encode(), keywords={"secretlabel": True})
    assert hidden["threadId"] == first["threadId"]
    cond = {"someInThreadHaveKeyword": "secretlabel"}
    assert alice.ok("Email/query", filter=cond)["ids"] == [hidden["id"], first["id"]]
    assert as_bob(bob, alice, "Email/query", filter=cond)[1]["ids"] == []
    assert first["id"] in as_bob(bob, alice, "Email/query", filter={"noneInThreadHaveKeyword": "secretlabel"})[1]["ids"]


def test_keywords_of_new_mail_need_the_keyword_rights(alice, bob, shared):
    box, _, _ = shared
    alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights("mayReadItems", "mayAddItems")}}})
    blob = bob.http.post(bob.session["uploadUrl"].replace("{accountId}", alice.account_id),
                         content=message(unique("kw ")), headers={"Content-Type": "message/rfc822"}).json()["blobId"]
    res = as_bob(bob, alice, "Email/import", emails={"i": {"blobId": blob, "mailboxIds": {box: True},
                                                           "keywords": {"$seen": True}}})[1]
    assert res["notCreated"]["i"]["type"] == "forbidden"
    res = as_bob(bob, alice, "Email/import", emails={"i": {"blobId": blob, "mailboxIds": {box: True}}})[1]
    assert res["created"]["i"]["id"]


def test_a_grantee_with_create_child_creates_a_child_shared_like_its_parent(alice, bob, shared):
    box, _, _ = shared
    alice.ok("Mailbox/set", update={box: {"shareWith": {bob.account_id: rights("mayReadItems", "mayCreateChild")}}})
    name, res = as_bob(bob, alice, "Mailbox/set", create={"c": {"name": unique("child "), "parentId": box}})
    assert name == "Mailbox/set", res
    child = res["created"]["c"]
    assert child["myRights"] == rights("mayReadItems", "mayCreateChild")
    got = as_bob(bob, alice, "Mailbox/get", ids=[child["id"]])[1]["list"][0]
    assert got["parentId"] == box and got["myRights"] == rights("mayReadItems", "mayCreateChild")
    assert alice.ok("Mailbox/get", ids=[child["id"]])["list"][0]["shareWith"] == {
        bob.account_id: rights("mayReadItems", "mayCreateChild")}


def test_principal_query_takes_null_conditions_as_absent(alice):
    res = alice.request([["Principal/query", {"accountId": alice.account_id, "filter": {"text": None}}, "0"]],
                        using=["urn:ietf:params:jmap:core", PRINCIPALS])["methodResponses"][0]
    assert res[0] == "Principal/query" and alice.account_id in res[1]["ids"]
