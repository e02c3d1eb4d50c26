"""Reading recipients and identities from strings and files, as ``age`` does.

Identity files hold one identity per line; ``#`` lines and blank lines are ignored (this
is the format ``age-keygen`` and ``qrc keygen --age`` write). Recipient files hold one
recipient per line, with the same comments. Plugin identities and recipients
(``AGE-PLUGIN-QRC-1...``, ``age1qrc1...``) are resolved by a ``plugins`` callback so that
this module needs no key service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from qrc.crypto.errors import KeyFormatError
from qrc.data.age.recipients import (
    HybridIdentity,
    HybridRecipient,
    Identity,
    Recipient,
    X25519Identity,
    X25519Recipient,
)

__all__ = [
    "identity_file",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
    "parse_recipients",
]

PluginResolver = Callable[[str], "Identity | Recipient | None"]
# Bound the files we read: an identity file of a million lines is a mistake.
MAX_KEY_FILE = 1 << 20


def parse_recipient(text: str, plugins: PluginResolver | None = None) -> Recipient:
    """An ``age1pq1``, ``age1`` (or plugin) recipient string.

    Raises:
        KeyFormatError: not a recipient we can encrypt to.
    """
    text = text.strip()
    lower = text.lower()
    if lower.startswith("age1pq1"):
        return HybridRecipient.parse(text)
    if lower.startswith("age1") and lower.rfind("1") == 3:
        return X25519Recipient.parse(text)
    if plugins is not None:
        found = plugins(text)
        if isinstance(found, Recipient):
            return found
    if lower.startswith("ssh-"):
        raise KeyFormatError("SSH keys are not supported as age recipients")
    raise KeyFormatError(f"unknown age recipient {text[:24]!r}")


def parse_identity(text: str, plugins: PluginResolver | None = None) -> Identity:
    """An ``AGE-SECRET-KEY-PQ-1``, ``AGE-SECRET-KEY-1`` (or plugin) identity string.

    Raises:
        KeyFormatError: not an identity we can decrypt with.
    """
    text = text.strip()
    upper = text.upper()
    if upper.startswith("AGE-SECRET-KEY-PQ-1"):
        return HybridIdentity.parse(text)
    if upper.startswith("AGE-SECRET-KEY-1"):
        return X25519Identity.parse(text)
    if plugins is not None:
        found = plugins(text)
        if isinstance(found, Identity):
            return found
    raise KeyFormatError("unknown age identity (expected AGE-SECRET-KEY-... lines)")


def _lines(text: str) -> Iterable[tuple[int, str]]:
    if len(text) > MAX_KEY_FILE:
        raise KeyFormatError("key file too large")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_identities(text: str, plugins: PluginResolver | None = None) -> list[Identity]:
    """Every identity of an identity file.

    Raises:
        KeyFormatError: a line that is not an identity (its number is given), or none.
    """
    found = []
    for number, line in _lines(text):
        try:
            found.append(parse_identity(line, plugins))
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    if not found:
        raise KeyFormatError("no identities in the file")
    return found


def parse_recipients(text: str, plugins: PluginResolver | None = None) -> list[Recipient]:
    """Every recipient of a recipients file (``-R``).

    Raises:
        KeyFormatError: a line that is not a recipient (its number is given), or none.
    """
    found = []
    for number, line in _lines(text):
        try:
            found.append(parse_recipient(line, plugins))
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    if not found:
        raise KeyFormatError("no recipients in the file")
    return found


def identity_file(identity: str, recipient: str, now: datetime | None = None) -> str:
    """An identity file as ``age-keygen`` writes it: two comment lines, then the key."""
    created = (now or datetime.now(UTC)).replace(microsecond=0).isoformat()
    created = created.replace("+00:00", "Z")
    return f"# created: {created}\n# public key: {recipient}\n{identity}\n"
