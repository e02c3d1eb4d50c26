"""``age-plugin-qrc``: the age plugin protocol (``c2sp.org/age-plugin``) for managed keys.

With it, the stock ``age`` binary encrypts to ``age1qrc1...`` recipients and decrypts with
``AGE-PLUGIN-QRC-1...`` identities whose private keys stay in the qrc key service:

* ``--age-plugin=recipient-v1``: wraps file keys into ``qrc-key`` stanzas locally (the
  recipient carries the public key);
* ``--age-plugin=identity-v1``: hands each ``qrc-key`` stanza to the key service named by
  the identity (``POST /decrypt`` over PQ TLS, with ``QRC_TOKEN`` and ``QRC_CA_FILE``).

Run without ``--age-plugin`` it prints keys: ``age-plugin-qrc recipient KEY`` (the
``age1qrc1`` recipient of a managed key, fetched from ``QRC_URL``) and
``age-plugin-qrc identity`` (the identity for ``QRC_URL``); both take ``--context``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import BinaryIO

from qrc.crypto.errors import CryptoError
from qrc.data.age.errors import HeaderFailure
from qrc.data.age.header import MAX_LINE, Stanza, read_stanza, write_stanza
from qrc.data.age.keyservice import (
    STANZA_TYPE,
    KeyRecipient,
    ServiceIdentity,
    addressed,
    recipient_from_client,
)
from qrc.data.age.plugin_keys import (
    ServiceLocator,
    client_for,
    decode_identity,
    decode_recipient,
    encode_identity,
    encode_recipient,
    resolve,
)
from qrc.data.age.recipients import POSTQUANTUM

__all__ = ["main"]

_PROTOCOL_BUDGET = 1 << 24


class ProtocolError(Exception):
    """The client broke the protocol (or closed the pipe)."""


class _Channel:
    """Stanzas over the plugin's stdin and stdout."""

    def __init__(self, src: BinaryIO, dst: BinaryIO) -> None:
        self._src, self._dst = src, dst

    def receive(self) -> tuple[list[str], bytes]:
        line = self._src.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise ProtocolError("the age client closed the connection")
        try:
            arguments, body, _ = read_stanza(self._src, line, _PROTOCOL_BUDGET)
        except HeaderFailure:
            raise ProtocolError("malformed stanza from the age client") from None
        return arguments, body

    def send(self, arguments: Sequence[str], body: bytes = b"") -> None:
        self._dst.write(write_stanza(arguments, body))
        self._dst.flush()

    def request(self, arguments: Sequence[str], body: bytes = b"") -> list[str]:
        """Send a command of a bi-directional phase and return the response's arguments."""
        self.send(arguments, body)
        response, _ = self.receive()
        return response

    def phase_one(self) -> list[tuple[list[str], bytes]]:
        """The client's uni-directional phase, up to ``done``."""
        commands: list[tuple[list[str], bytes]] = []
        while True:
            arguments, body = self.receive()
            if arguments == ["done"]:
                return commands
            commands.append((arguments, body))


def _recipient_v1(channel: _Channel) -> None:
    recipients: list[KeyRecipient] = []
    file_keys: list[bytes] = []
    labels_wanted = False
    errors: list[tuple[list[str], str]] = []
    index = 0
    for arguments, body in channel.phase_one():
        command = arguments[0]
        if command == "add-recipient" and len(arguments) == 2:
            try:
                recipients.append(decode_recipient(arguments[1]))
            except CryptoError as exc:
                errors.append((["error", "recipient", str(index)], str(exc)))
            index += 1
        elif command == "add-identity" and len(arguments) == 2:
            errors.append((["error", "identity", "0"], "qrc identities cannot be wrapped to"))
        elif command == "wrap-file-key":
            file_keys.append(body)
        elif command == "extension-labels":
            labels_wanted = True
    if errors:
        for arguments, message in errors:
            channel.request(arguments, message.encode())
        channel.send(["done"])
        return
    stanzas: list[tuple[int, Stanza]] = []
    for index, file_key in enumerate(file_keys):
        for recipient in recipients:
            stanzas.extend((index, s) for s in recipient.wrap(file_key))
    if labels_wanted:
        labels = set().union(*(r.labels for r in recipients)) if recipients else set()
        channel.request(["labels", *sorted(labels & {POSTQUANTUM})])
    for index, stanza in stanzas:
        channel.request(["recipient-stanza", str(index), stanza.type, *stanza.args], stanza.body)
    channel.send(["done"])


def _malformed(stanzas: Sequence[Stanza]) -> int:
    """The index of the first malformed ``qrc-key`` stanza (0 if none is)."""
    for position, stanza in enumerate(stanzas):
        if stanza.type == STANZA_TYPE:
            try:
                addressed(stanza)
            except HeaderFailure:
                return position
    return 0


def _identity_v1(channel: _Channel) -> None:
    identities: list[ServiceIdentity] = []
    errors: list[tuple[list[str], str]] = []
    files: dict[int, list[Stanza]] = {}
    for arguments, body in channel.phase_one():
        command = arguments[0]
        if command == "add-identity" and len(arguments) == 2:
            try:
                decode_identity(arguments[1])
                found = resolve(arguments[1])
            except CryptoError as exc:
                errors.append((["error", "identity", str(len(identities))], str(exc)))
                continue
            if isinstance(found, ServiceIdentity):
                identities.append(found)
        elif command == "recipient-stanza" and len(arguments) >= 3 and arguments[1].isdigit():
            stanza = Stanza(arguments[2], tuple(arguments[3:]), body)
            files.setdefault(int(arguments[1]), []).append(stanza)
    if errors:
        # Invalid identities: report them and unwrap nothing (the spec's MUST).
        for arguments, message in errors:
            channel.request(arguments, message.encode())
        channel.send(["done"])
        return
    for index, stanzas in sorted(files.items()):
        for identity in identities:
            try:
                file_key = identity.unwrap(stanzas)
            except HeaderFailure:
                channel.request(
                    ["error", "stanza", str(index), str(_malformed(stanzas))],
                    b"malformed qrc-key stanza",
                )
                break
            except CryptoError as exc:
                channel.request(["error", "internal"], str(exc).encode())
                break
            if file_key is not None:
                channel.request(["file-key", str(index)], file_key)
                break
    channel.send(["done"])


def _print_keys(argv: Sequence[str]) -> int:
    import os  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="age-plugin-qrc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("recipient", help="print the age1qrc1 recipient of a managed key")
    rec.add_argument("key", help="key ID or name")
    ident = sub.add_parser("identity", help="print the AGE-PLUGIN-QRC-1 identity of a service")
    for p in (rec, ident):
        p.add_argument("--context", default="", help="context bound to files (default empty)")
        p.add_argument("--url", default=os.environ.get("QRC_URL", "https://127.0.0.1:8443"))
    args = parser.parse_args(argv)
    if args.what == "identity":
        print(encode_identity(ServiceLocator(args.url, args.context)))
        return 0
    client = client_for(args.url)
    recipient = recipient_from_client(client, args.key, args.context)
    print(encode_recipient(recipient))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``age-plugin-qrc``."""
    args = list(sys.argv[1:] if argv is None else argv)
    machine = next((a.split("=", 1)[1] for a in args if a.startswith("--age-plugin=")), None)
    try:
        if machine is None:
            return _print_keys(args)
        channel = _Channel(sys.stdin.buffer, sys.stdout.buffer)
        if machine == "recipient-v1":
            _recipient_v1(channel)
        elif machine == "identity-v1":
            _identity_v1(channel)
        else:
            sys.stderr.write(f"age-plugin-qrc: unknown state machine {machine}\n")
            return 1
    except (ProtocolError, CryptoError, ValueError, OSError) as exc:
        sys.stderr.write(f"age-plugin-qrc: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
