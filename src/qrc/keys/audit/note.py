"""Audit checkpoints as signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint shape).

What a witness keeps (``docs/formats.md``, "Witnessed checkpoint"). The note text is::

    qrc.audit/<audit key ID>        origin: the log's identity
    <seq>                           the number of events covered (seqs run 1, 2, ...)
    <base64(head hash)>             the hash of event <seq>: the hash chain's head

followed by a blank line and one signature line ``— <origin> base64(key ID || signature)``.
The chain is a hash chain, not a Merkle tree, so line 3 is its head hash, not an RFC 6962
root; there are no extension lines.

The note specification assigns no signature type to ML-DSA or SLH-DSA over a whole note, so
this one uses its escape, type byte ``0xff`` followed by a longer identifier::

    signature type = 0xff || "qrc-note-sig:" || algorithm ID || 0x0a
    key ID         = SHA-256(key name || 0x0a || signature type || public key)[:4]
    signature      = the algorithm's signature over the note text, with the context string
                     "qrc-audit-note-v1" (ML-DSA and SLH-DSA take one; reserved: no other
                     signing path in the service can use it)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.errors import InvalidSignature
from qrc.keys.audit.format import AuditError

__all__ = [
    "NOTE_CONTEXT",
    "CheckpointNote",
    "InvalidNote",
    "key_hash",
    "origin_for",
    "parse_note",
    "sign_note",
    "verify_note",
]

NOTE_CONTEXT = b"qrc-audit-note-v1"
_ORIGIN_PREFIX = "qrc.audit/"
_DASH = "\u2014"
_MAX_NOTE = 16 * 1024
_MAX_SIGNATURES = 16


class InvalidNote(AuditError):
    """A witnessed checkpoint that is malformed or does not verify (one error for all)."""


@dataclass(frozen=True)
class CheckpointNote:
    """A parsed note: its origin, the events it covers and their head, and its signatures."""

    origin: str
    seq: int
    head_hash: bytes
    text: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (key name, key ID, signature)


def origin_for(audit_key_id: str) -> str:
    """The origin (and key name) of the audit log whose checkpoints that key signs."""
    return _ORIGIN_PREFIX + audit_key_id


def _signature_type(algorithm: str) -> bytes:
    return b"\xffqrc-note-sig:" + algorithm.encode("ascii") + b"\n"


def key_hash(name: str, public: VerifyingKey) -> bytes:
    """The 4-byte key ID of ``public`` under key name ``name``."""
    material = name.encode("utf-8") + b"\n" + _signature_type(public.algorithm)
    return hashlib.sha256(material + public.public_bytes()).digest()[:4]


def _text(origin: str, seq: int, head_hash: bytes) -> bytes:
    return f"{origin}\n{seq}\n{base64.b64encode(head_hash).decode('ascii')}\n".encode()


def sign_note(origin: str, seq: int, head_hash: bytes, signer: SigningKey) -> bytes:
    """The signed note of a checkpoint of ``seq`` events with head ``head_hash``."""
    text = _text(origin, seq, head_hash)
    signature = signer.sign(text, NOTE_CONTEXT)
    blob = key_hash(origin, signer.public_key()) + signature
    line = f"{_DASH} {origin} {base64.b64encode(blob).decode('ascii')}\n"
    return text + b"\n" + line.encode("utf-8")


def parse_note(data: bytes) -> CheckpointNote:
    """Parse (strictly, not verify) a checkpoint note.

    Raises:
        InvalidNote: anything that is not a well-formed qrc checkpoint note.
    """
    try:
        if len(data) > _MAX_NOTE:
            raise ValueError("too large")
        decoded = data.decode("utf-8")
        if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded) or not decoded.endswith("\n"):
            raise ValueError("control characters or no final newline")
        text, sep, signature_block = decoded.rpartition("\n\n")
        if not sep:
            raise ValueError("no blank line before the signatures")
        lines = text.split("\n")
        if len(lines) != 3 or not all(lines):
            raise ValueError("the text is not exactly origin, size and head")
        origin, size, head_b64 = lines
        if not origin.startswith(_ORIGIN_PREFIX) or " " in origin or "+" in origin:
            raise ValueError("not a qrc audit origin")
        if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise ValueError("bad size")
        head_hash = base64.b64decode(head_b64, validate=True)
        if len(head_hash) != 32 or base64.b64encode(head_hash).decode("ascii") != head_b64:
            raise ValueError("bad head hash")
        signature_lines = signature_block.split("\n")
        if signature_lines[-1] != "":
            raise ValueError("signatures do not end in a newline")
        signatures = []
        for line in signature_lines[:-1]:
            dash, name, blob_b64 = line.split(" ")
            blob = base64.b64decode(blob_b64, validate=True)
            if dash != _DASH or not name or len(blob) < 5:
                raise ValueError("bad signature line")
            signatures.append((name, blob[:4], blob[4:]))
        if not 1 <= len(signatures) <= _MAX_SIGNATURES:
            raise ValueError("too many or no signatures")
        seq = int(size)
        if seq > 2**63 - 1:
            raise ValueError("size out of range")
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise InvalidNote(f"not a checkpoint note ({exc})") from None
    return CheckpointNote(origin, seq, head_hash, (text + "\n").encode("utf-8"), tuple(signatures))


def verify_note(data: bytes, trusted: Iterable[VerifyingKey]) -> CheckpointNote:
    """Parse ``data`` and check that a trusted key signed it (``trusted``: pinned keys).

    Signatures by unknown keys are ignored (as the note specification requires); one by a
    known key that does not verify rejects the note.

    Raises:
        InvalidNote: malformed, or no trusted key's signature verifies.
    """
    note = parse_note(data)
    keys = list(trusted)
    verified = False
    for name, kid, signature in note.signatures:
        if name != note.origin:
            continue
        for public in keys:
            if not hmac.compare_digest(key_hash(name, public), kid):
                continue
            try:
                public.verify(signature, note.text, NOTE_CONTEXT)
            except InvalidSignature:
                raise InvalidNote("a checkpoint note's signature does not verify") from None
            verified = True
    if not verified:
        raise InvalidNote("no pinned audit key signed the checkpoint note")
    return note
