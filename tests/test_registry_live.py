"""The data-type model end to end: a type declared only in the tests (tests/tiny_type.py), loaded by
a real server with TIDINGS_EXTRA_TYPES, is in the session and answers every standard method over
HTTP, and its changes are pushed, with no change to tidings outside the type's own definition."""

from __future__ import annotations

import pytest

from tests.conftest import CORE, Server, tidings

NOTES = "urn:tidings:test:notes"


@pytest.fixture(scope="module")
def notes_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("notes")
    tidings("user", "add", "nora", "--password", "nora-pw", data=data)
    srv = Server(data, env={"TIDINGS_EXTRA_TYPES": "tests.tiny_type"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def nora(notes_server):
    from tests.conftest import Jmap

    client = Jmap(notes_server, "nora", "nora-pw")
    client.account_id = next(iter(client.session["accounts"]))
    return client


def notes(client, method: str, args: dict) -> dict:
    resp = client.request([[method, {"accountId": client.account_id, **args}, "n"]], using=[CORE, NOTES])
    name, result, _ = resp["methodResponses"][0]
    assert name == method, result
    return result


def test_the_session_offers_the_types_capability(nora):
    assert NOTES in nora.session["capabilities"]
    assert NOTES in nora.session["accounts"][nora.account_id]["accountCapabilities"]
    assert nora.session["primaryAccounts"][NOTES] == nora.account_id


def test_the_type_answers_every_standard_method_over_http(nora):
    state = notes(nora, "Note/get", {"ids": []})["state"]
    made = notes(nora, "Note/set", {"create": {"a": {"title": "alpha", "priority": 3},
                                               "b": {"title": "beta", "folder": "work"}}})["created"]
    a, b = made["a"]["id"], made["b"]["id"]
    assert notes(nora, "Note/get", {"ids": [a]})["list"][0]["title"] == "alpha"
    assert notes(nora, "Note/query", {"filter": {"folder": "work"}})["ids"] == [b]
    notes(nora, "Note/set", {"update": {a: {"done": True}}, "destroy": [b]})
    ch = notes(nora, "Note/changes", {"sinceState": state})
    assert (sorted(ch["created"]), ch["destroyed"]) == ([a], [])  # created since: b came and went
    qc = notes(nora, "Note/queryChanges", {"sinceQueryState": state, "filter": {"done": True}})
    assert qc["added"] == [{"id": a, "index": 0}]
    bad = notes(nora, "Note/set", {"create": {"x": {"title": 5, "priority": "high"}}})["notCreated"]["x"]
    assert set(bad["properties"]) == {"title", "priority"}


def test_without_its_capability_in_using_the_type_is_unknown(nora):
    resp = nora.request([["Note/get", {"accountId": nora.account_id, "ids": []}, "n"]], using=[CORE])
    assert resp["methodResponses"][0][1]["type"] == "unknownMethod"


def test_a_change_of_the_type_is_pushed_on_eventsource_and_websocket(nora, notes_server):
    from tests.test_push import EventStream, basic, run

    async def scenario() -> tuple[dict, dict]:
        import asyncio
        import json

        import websockets

        ws_url = notes_server.base.replace("http", "ws", 1) + "/jmap/ws/"
        async with EventStream(notes_server.base, ("nora", "nora-pw"), "types=Note&closeafter=no&ping=0") as es:
            first = await es.state()  # the current state of the requested type
            async with websockets.connect(ws_url, subprotocols=["jmap"],
                                          additional_headers={"Authorization": basic("nora", "nora-pw")}) as ws:
                await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Note"]}))
                await asyncio.sleep(0.2)
                made = await asyncio.to_thread(notes, nora, "Note/set", {"create": {"p": {"title": "pushed"}}})
                state = (await asyncio.to_thread(notes, nora, "Note/get", {"ids": []}))["state"]
                event = await es.state()
                pushed = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert made["created"]["p"]["id"]
        assert first["data"]["changed"][nora.account_id].keys() == {"Note"}
        assert event["data"]["changed"] == {nora.account_id: {"Note": state}}
        return pushed, state

    pushed, state = run(scenario())
    assert pushed["@type"] == "StateChange" and pushed["changed"] == {nora.account_id: {"Note": state}}
