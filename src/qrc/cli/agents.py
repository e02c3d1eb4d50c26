"""``qrc agents``: signed and sealed messages between agents, from the command line.

Each agent lives in a home directory (``--home``, ``QRC_AGENT_HOME``, default ``./agents``):
its keys, its card (the public side, to give to its peers) and its replay cache. Peers are
known by their cards (``--peers``: card files or directories of them). Messages go to a file
or stdout, or through the service's relay (``--relay URL``, with ``--token`` and ``--ca``)::

    qrc agents init alice && qrc agents card alice > cards/alice.json
    echo '{"task": 7}' | qrc agents send alice --to bob --peers cards -o msg.bin
    qrc agents receive bob --peers cards -i msg.bin
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.io import fail, passphrase_from, read_input, say, write_output

if TYPE_CHECKING:
    from qrc.transit.agents import Agent, ReceivedMessage
    from qrc.transit.relay_client import Mailbox

__all__ = ["agents_app"]

agents_app = typer.Typer(
    help="Signed and sealed messages between agents (ML-DSA, X25519MLKEM768), offline or "
    "through the service's relay.",
    no_args_is_help=True,
)

AgentId = Annotated[str, typer.Argument(help="The agent's ID.")]
Home = Annotated[
    Path,
    typer.Option("--home", envvar="QRC_AGENT_HOME", help="Directory of this machine's agents."),
]
Peers = Annotated[
    list[Path] | None,
    typer.Option("--peers", help="Peer cards: a card file or a directory of them (repeatable)."),
]
PassFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line encrypts the agent's keys."),
]
Relay = Annotated[
    str | None,
    typer.Option("--relay", envvar="QRC_URL", help="The service's URL: go through its relay."),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="QRC_TOKEN", help="Bearer token (with --relay).")
]
Ca = Annotated[
    Path | None,
    typer.Option("--ca", envvar="QRC_CA_FILE", help="CA certificate to trust (with --relay)."),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Window = Annotated[
    float, typer.Option("--window", min=1.0, help="Seconds of clock difference accepted.")
]
_DEFAULT_HOME = Path("agents")


@contextmanager
def _agent(
    home: Path, agent_id: str, peers: list[Path] | None, passfile: Path | None, window: float
) -> Iterator[Agent]:
    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.transit.agents_home import AgentHome, load_cards  # noqa: PLC0415

    try:
        directory = load_cards(peers or [])
        opened = AgentHome(home, passphrase_from(passfile)).open(agent_id, directory, window=window)
        agent = opened.__enter__()
    except (ValueError, OSError, CryptoError) as exc:
        fail(str(exc))
    try:
        yield agent
    except BaseException as exc:
        if not opened.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        opened.__exit__(None, None, None)


@contextmanager
def _mailbox(agent: Agent, relay: str, token: str | None, ca: Path | None) -> Iterator[Mailbox]:
    from qrc.transit.relay_client import Mailbox  # noqa: PLC0415

    if token is None:
        fail("--relay needs a token: set QRC_TOKEN or --token")
    base = relay.rstrip("/")
    if not base.endswith("/api/v1/security/qrc"):
        base += "/api/v1/security/qrc"
    if base.startswith("https://") and ca is None:
        fail("--relay over https needs the CA certificate: set QRC_CA_FILE or --ca")
    with Mailbox(agent, base, token=token, ca_file=str(ca) if ca else None) as box:
        yield box


@agents_app.command("init")
def init(
    agent_id: AgentId,
    home: Home = _DEFAULT_HOME,
    signature: Annotated[
        str, typer.Option("--signature", help="ML-DSA-44/65/87 or a composite ML-DSA ID.")
    ] = "ML-DSA-65",
    passphrase_file: PassFile = None,
    json_out: Json = False,
) -> None:
    """Make a new agent: its keys (mode 0600) and its card (share the card with its peers)."""
    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.transit.agents_home import AgentHome  # noqa: PLC0415

    agents = AgentHome(home, passphrase_from(passphrase_file))
    try:
        identity = agents.create(agent_id, signature)
    except (ValueError, OSError, CryptoError) as exc:
        fail(str(exc))
    card = agents.path(agent_id) / "card.json"
    if json_out:
        typer.echo(json.dumps({"agent_id": agent_id, "card": str(card)}))
    else:
        say(f"agent {identity.agent_id}: {identity.signing_key.algorithm}, X25519MLKEM768")
        say(f"its card (give it to its peers): {card}")


@agents_app.command("card")
def card(agent_id: AgentId, home: Home = _DEFAULT_HOME) -> None:
    """Print the agent's card (public keys only) to give to its peers."""
    from qrc.transit.agents_home import AgentHome  # noqa: PLC0415

    try:
        data = AgentHome(home).card(agent_id)
    except OSError as exc:
        fail(str(exc))
    write_output(None, data)


@agents_app.command("send")
def send(
    agent_id: AgentId,
    to: Annotated[str, typer.Option("--to", help="The recipient's agent ID.")],
    peers: Peers = None,
    home: Home = _DEFAULT_HOME,
    input_file: Annotated[Path | None, typer.Option("-i", "--input", help="Body file.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Message file.")] = None,
    content_type: Annotated[
        str, typer.Option("--content-type", help="E.g. application/json.")
    ] = "",
    relay: Relay = None,
    token: Token = None,
    ca: Ca = None,
    passphrase_file: PassFile = None,
    json_out: Json = False,
) -> None:
    """Sign and seal a message (stdin or -i) to --to: to stdout/-o, or to the relay."""
    from qrc.transit.client import TransportError  # noqa: PLC0415

    body = read_input(input_file)
    with _agent(home, agent_id, peers, passphrase_file, 300.0) as agent:
        try:
            if relay is None:
                write_output(output, agent.send(to, body, content_type=content_type))
                return
            with _mailbox(agent, relay, token, ca) as box:
                message_id = box.send(to, body, content_type=content_type)
        except LookupError as exc:
            fail(f"{exc.args[0]}: add its card with --peers")
        except TransportError as exc:
            fail(f"the relay: {exc}")
    typer.echo(json.dumps({"id": message_id}) if json_out else message_id)


def _describe(message: ReceivedMessage, json_out: bool) -> str:
    if json_out:
        return json.dumps(
            {
                "sender": message.sender,
                "recipient": message.recipient,
                "message_id": message.message_id,
                "timestamp": message.timestamp,
                "content_type": message.content_type,
                "body": base64.b64encode(message.body).decode("ascii"),
            }
        )
    kind = f", {message.content_type}" if message.content_type else ""
    return f"from {message.sender} (message {message.message_id}{kind}, {len(message.body)} bytes)"


@agents_app.command("receive")
def receive(
    agent_id: AgentId,
    peers: Peers = None,
    home: Home = _DEFAULT_HOME,
    input_file: Annotated[Path | None, typer.Option("-i", "--input", help="Message file.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Body file.")] = None,
    relay: Relay = None,
    token: Token = None,
    ca: Ca = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Relay: at most.")] = 100,
    window: Window = 300.0,
    passphrase_file: PassFile = None,
    json_out: Json = False,
) -> None:
    """Open and verify a message (stdin or -i), or fetch what waits at the relay.

    One message: its body to stdout/-o and who sent it to stderr (--json: one JSON object
    with the body in base64). Relay: one JSON line per accepted message. A refused message
    says only that it was refused (exit status 1), whatever the reason.
    """
    from qrc.transit.agents import MessageRejected  # noqa: PLC0415
    from qrc.transit.client import TransportError  # noqa: PLC0415

    with _agent(home, agent_id, peers, passphrase_file, window) as agent:
        if relay is not None:
            try:
                with _mailbox(agent, relay, token, ca) as box:
                    messages = box.receive(limit=limit)
                    rejected = box.rejected
            except TransportError as exc:
                fail(f"the relay: {exc}")
            for message in messages:
                typer.echo(_describe(message, json_out=True))
            if rejected:
                say(f"qrc: {rejected} message(s) refused (details in the log)")
            return
        wire = read_input(input_file)
        try:
            message = agent.receive(wire)
        except MessageRejected:
            fail("message rejected", code=1)
    if json_out:
        typer.echo(_describe(message, json_out=True))
        return
    write_output(output, message.body)
    if output is not None or not os.isatty(1):
        say(_describe(message, json_out=False))
