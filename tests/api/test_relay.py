"""The agent-message relay route, on the app built in-process: queue, fetch, acknowledge;
only the recipient reads its queue; the relay holds ciphertext only; what a relay could do
wrong (deliver twice, alter a message) is caught by the recipient."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.routing import NoMatchFound

from qrc.api.app import API_PREFIX
from qrc.api.routes import relay
from qrc.crypto import get_kem, get_signature
from qrc.keys.errors import Conflict
from qrc.keys.relay_queue import RelayMessage, RelayQueues
from qrc.transit.agents import Agent, AgentIdentity, Directory, MessageRejected
from tests.api.conftest import Api, assert_problem, running_api

SECRET = b"the launch code is 0000"


def register_relay(app: Any) -> None:
    """Add the relay's routes unless the application already has them (app.py does once
    the router is registered there)."""
    try:
        app.url_path_for("relay_acknowledge")
    except NoMatchFound:
        app.include_router(relay.router, prefix=API_PREFIX)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("relay")) as api:
        register_relay(api.app)
        for name in ("alice", "bob"):
            _, api.tokens[name] = api.clients.create(name=name, role="crypto_user", actor="test")
        yield api


@pytest.fixture(scope="module")
def agents() -> dict[str, Agent]:
    directory = Directory()
    out = {}
    for name in ("alice", "bob"):
        sig, kem = get_signature("ML-DSA-65").generate(), get_kem("X25519MLKEM768").generate()
        directory.add(AgentIdentity(name, sig.public_key(), kem.public_key()))
        out[name] = Agent(name, sig, kem, directory)
    return out


def _send(api: Api, wire: bytes, role: str = "alice") -> dict[str, object]:
    response = api.post("/relay/messages", role, json={"message": base64.b64encode(wire).decode()})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def _fetch(api: Api, recipient: str = "bob", role: str = "bob") -> list[dict[str, object]]:
    response = api.get("/relay/messages", role, params={"recipient": recipient})
    assert response.status_code == 200, response.text
    messages: list[dict[str, object]] = response.json()["messages"]
    return messages


def _ack(api: Api, ids: list[str], recipient: str = "bob", role: str = "bob") -> int:
    response = api.post("/relay/messages/ack", role, json={"recipient": recipient, "ids": ids})
    assert response.status_code == 200, response.text
    acknowledged: int = response.json()["acknowledged"]
    return acknowledged


def _drain(api: Api) -> None:
    while messages := _fetch(api):
        _ack(api, [str(m["id"]) for m in messages])


def test_send_fetch_receive_acknowledge(api: Api, agents: dict[str, Agent]) -> None:
    _drain(api)
    receipt = _send(api, agents["alice"].send("bob", SECRET, content_type="text/plain"))
    assert receipt["recipient"] == "bob"
    (message,) = _fetch(api)
    assert message["id"] == receipt["id"]
    got = agents["bob"].receive(base64.b64decode(str(message["message"])))
    assert (got.sender, got.body) == ("alice", SECRET)
    assert _ack(api, [str(message["id"])]) == 1
    assert _fetch(api) == []
    assert _ack(api, [str(message["id"])]) == 0  # twice counts once


def test_delivery_is_at_least_once_and_the_duplicate_is_dropped(
    api: Api, agents: dict[str, Agent]
) -> None:
    _drain(api)
    _send(api, agents["alice"].send("bob", b"once"))
    first = _fetch(api)
    again = _fetch(api)  # not acknowledged: delivered again
    assert [m["id"] for m in first] == [m["id"] for m in again]
    wire = base64.b64decode(str(first[0]["message"]))
    assert agents["bob"].receive(wire).body == b"once"
    with pytest.raises(MessageRejected):
        agents["bob"].receive(wire)
    _ack(api, [str(first[0]["id"])])


def test_a_relay_replaying_a_message_is_caught(api: Api, agents: dict[str, Agent]) -> None:
    _drain(api)
    wire = agents["alice"].send("bob", b"pay 10")
    _send(api, wire)
    _send(api, wire)  # queued twice: the relay cannot tell, the recipient can
    first, second = _fetch(api)
    assert agents["bob"].receive(base64.b64decode(str(first["message"]))).body == b"pay 10"
    with pytest.raises(MessageRejected):
        agents["bob"].receive(base64.b64decode(str(second["message"])))
    _drain(api)


def test_the_relay_stores_ciphertext_only(api: Api, agents: dict[str, Agent]) -> None:
    _drain(api)
    _send(api, agents["alice"].send("bob", SECRET * 10))
    with api.service.db.read_session() as session:
        stored = list(session.scalars(select(RelayMessage.message)))
    assert stored
    assert all(SECRET not in row and b"alice" not in row for row in stored)
    _drain(api)


def test_a_message_altered_in_the_relay_is_refused(api: Api, agents: dict[str, Agent]) -> None:
    _drain(api)
    receipt = _send(api, agents["alice"].send("bob", b"original"))
    with api.service.db.session() as session:
        row = session.scalars(
            select(RelayMessage).where(RelayMessage.message_id == receipt["id"])
        ).one()
        altered = bytearray(row.message)
        altered[-20] ^= 0x80
        session.execute(
            update(RelayMessage)
            .where(RelayMessage.message_id == receipt["id"])
            .values(message=bytes(altered))
        )
    (message,) = _fetch(api)
    with pytest.raises(MessageRejected):
        agents["bob"].receive(base64.b64decode(str(message["message"])))
    _drain(api)


def test_only_the_recipient_reads_or_acknowledges_its_queue(
    api: Api, agents: dict[str, Agent]
) -> None:
    _drain(api)
    receipt = _send(api, agents["alice"].send("bob", b"private"))
    for role in ("alice", "crypto_user"):
        assert_problem(
            api.get("/relay/messages", role, params={"recipient": "bob"}), 404, "not-found"
        )
        assert_problem(
            api.post(
                "/relay/messages/ack", role, json={"recipient": "bob", "ids": [receipt["id"]]}
            ),
            404,
            "not-found",
        )
    for other in ("auditor", "viewer", None):
        response = api.get("/relay/messages", other, params={"recipient": "bob"})
        assert response.status_code in (401, 403)
    assert len(_fetch(api)) == 1  # still there for bob
    refused, _ = api.service.audit.query(event_type="api.forbidden")
    assert sum(1 for e in refused if e.actor.endswith(":alice")) == 2  # fetch and ack
    assert _ack(api, [str(receipt["id"])], recipient="alice", role="alice") == 0  # not hers
    assert len(_fetch(api)) == 1
    _drain(api)


def test_a_token_scoped_to_the_agents_key_reads_its_queue(api: Api) -> None:
    key = api.service.keys.create_key(
        name=api.unique("agent-sig"), purpose="signing", algorithm="ML-DSA-65", actor="test"
    )
    _, token = api.clients.create(
        name=api.unique("agent"), role="crypto_user", keys=[key.id], actor="test"
    )
    api.tokens["scoped"] = token
    assert _fetch(api, recipient=key.id, role="scoped") == []


@pytest.mark.parametrize(
    "message", [b"", b"not an agent message", b"QRAM\x02" + b"\x00" * 2000, b"QRAM\x01\x03bob"]
)
def test_what_is_not_an_agent_message_is_refused(api: Api, message: bytes) -> None:
    response = api.post(
        "/relay/messages", "alice", json={"message": base64.b64encode(message).decode()}
    )
    assert_problem(response, 422, "invalid-request")


def test_sending_is_audited_without_content(api: Api, agents: dict[str, Agent]) -> None:
    _drain(api)
    receipt = _send(api, agents["alice"].send("bob", SECRET))
    events, _ = api.service.audit.query(event_type="relay.enqueue")
    mine = [e for e in events if e.details.get("message") == receipt["id"]]
    assert len(mine) == 1
    assert mine[0].details["recipient"] == "bob"
    assert mine[0].actor.endswith(":alice")
    assert SECRET.decode() not in str(mine[0].details)
    _drain(api)


def test_a_full_queue_refuses_more(tmp_path: Path, agents: dict[str, Agent]) -> None:
    with running_api(tmp_path) as api:
        queues = RelayQueues(api.service.ctx, max_queue=2)
        wire = agents["alice"].send("bob", b"x")
        queues.enqueue("bob", wire, actor="test")
        queues.enqueue("bob", wire, actor="test")
        with pytest.raises(Conflict):
            queues.enqueue("bob", wire, actor="test")
        assert queues.depth("bob") == 2


def test_unacknowledged_messages_expire(tmp_path: Path, agents: dict[str, Agent]) -> None:
    with running_api(tmp_path) as api:
        expired = RelayQueues(api.service.ctx, ttl=timedelta(0))
        expired.enqueue("bob", agents["alice"].send("bob", b"x"), actor="test")
        assert expired.fetch("bob") == []
        fresh = RelayQueues(api.service.ctx)
        fresh.enqueue("bob", agents["alice"].send("bob", b"y"), actor="test")  # purges
        assert fresh.depth("bob") == 1


def test_the_largest_relayed_message_is_set_by_the_api_body_limit(
    api: Api, agents: dict[str, Agent]
) -> None:
    """With the default 1 MiB request body, a 760,000-byte body goes through (about 765 KB
    of message, 1.02 MB of JSON); a 1 MiB body does not (413)."""
    _drain(api)
    big = agents["alice"].send("bob", b"b" * 760_000)
    _send(api, big)
    (message,) = _fetch(api)
    assert agents["bob"].receive(base64.b64decode(str(message["message"]))).body == b"b" * 760_000
    _drain(api)
    too_big = agents["alice"].send("bob", b"b" * (1 << 20))
    response = api.post(
        "/relay/messages", "alice", json={"message": base64.b64encode(too_big).decode()}
    )
    assert_problem(response, 413, "payload-too-large")
