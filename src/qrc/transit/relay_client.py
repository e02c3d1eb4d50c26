"""Agents talking through the service's store-and-forward relay, over PQ TLS.

:class:`Mailbox` joins an :class:`~qrc.transit.agents.Agent` to the relay (``/relay``
routes of the API, reached with :class:`~qrc.transit.client.PQClient`)::

    box = Mailbox(agent, "https://qrc.internal:8443/api/v1/security/qrc",
                  token=os.environ["QRC_TOKEN"], ca_file="ca.pem")
    box.send("bob", b'{"task": 7}', content_type="application/json")
    for message in box.receive():       # verified, replay-checked, then acknowledged
        handle(message.sender, message.body)

The relay sees only the recipient's ID and the size. :meth:`Mailbox.receive` acknowledges
every message it fetched, the rejected ones too (a message that fails its checks never will
pass them; it is logged by the agent), so a bad message cannot block the queue.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from typing import Any

from qrc.transit import tls
from qrc.transit.agents import Agent, MessageRejected, ReceivedMessage
from qrc.transit.client import PQClient, TransportError

__all__ = ["Mailbox", "RelayError"]

_log = logging.getLogger(__name__)


class RelayError(TransportError):
    """The relay refused a request (status and problem type in the message)."""


class Mailbox:
    """An agent's mailbox at the relay: send to others, receive what waits for it."""

    def __init__(
        self,
        agent: Agent,
        base_url: str,
        *,
        token: str,
        ca_file: str | None = None,
        mode: tls.Mode = "pq-only",
        timeout: float = 30.0,
    ) -> None:
        self.agent = agent
        self.rejected = 0
        self._http = PQClient(base_url, ca_file=ca_file, token=token, mode=mode, timeout=timeout)

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if not response.ok:
            kind = ""
            with contextlib.suppress(ValueError):
                kind = str(response.json().get("type", ""))
            raise RelayError(f"relay answered {response.status} {kind}".strip())
        return response.json()

    def send(self, recipient: str, body: bytes, *, content_type: str = "") -> str:
        """Seal, sign and queue a message; returns the relay's message ID."""
        wire = self.agent.send(recipient, body, content_type=content_type)
        answer = self._call(
            "POST", "/relay/messages", json={"message": base64.b64encode(wire).decode("ascii")}
        )
        return str(answer["id"])

    def receive(self, *, limit: int = 100) -> list[ReceivedMessage]:
        """Fetch what waits (up to ``limit``), check each, acknowledge them all; returns the
        messages that passed, in queue order."""
        page = self._call(
            "GET", "/relay/messages", params={"recipient": self.agent.agent_id, "limit": limit}
        )
        accepted: list[ReceivedMessage] = []
        ids: list[str] = []
        for item in page["messages"]:
            ids.append(str(item["id"]))
            try:
                accepted.append(self.agent.receive(base64.b64decode(item["message"])))
            except (MessageRejected, ValueError):
                self.rejected += 1
        if ids:
            self._call(
                "POST",
                "/relay/messages/ack",
                json={"recipient": self.agent.agent_id, "ids": ids},
            )
        return accepted
