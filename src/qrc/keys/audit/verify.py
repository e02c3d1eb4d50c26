"""Recomputing the audit chain and checking its signed checkpoints, from any source.

The store (:meth:`qrc.keys.audit.AuditLog.verify`) and an offline export
(:func:`qrc.keys.audit.export.verify_export`) feed the same :class:`ChainVerifier`, so the
two can never disagree about what counts as intact.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from qrc.crypto.base import VerifyingKey
from qrc.crypto.errors import InvalidSignature
from qrc.keys.audit.format import (
    CHECKPOINT_CONTEXT,
    GENESIS_HASH,
    InvalidAuditEvent,
    canonical_event,
    checkpoint_message,
    event_hash,
)

__all__ = [
    "ChainBroken",
    "ChainCheckpoint",
    "ChainEvent",
    "ChainVerifier",
    "KeyLookup",
    "VerificationReport",
    "lookup_from",
    "run_verifier",
]

KeyLookup: TypeAlias = (
    Mapping[tuple[str, int], VerifyingKey] | Callable[[str, int], VerifyingKey | None]
)


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of :meth:`AuditLog.verify` / :func:`verify_export`.

    ``events`` counts the events that verified (before the first break, if any);
    ``first_bad_event`` is the seq of the first event that is missing, edited or out of
    place (``None`` when the chain is intact, or when only a checkpoint is at fault);
    ``checkpoints_verified`` counts checkpoints whose signature and head hash both held;
    ``witnessed_seq`` is the event up to which the store matches the witness's checkpoint.
    """

    valid: bool
    events: int
    first_bad_event: int | None
    reason: str
    checkpoints_verified: int
    last_checkpoint_seq: int | None = None
    witnessed_seq: int | None = None


@dataclass(slots=True)
class ChainEvent:
    """One event as read from the store or an export (not yet trusted)."""

    seq: int
    at: datetime
    event_type: str
    actor: str
    key_id: str | None
    key_version: int | None
    algorithm: str | None
    result: str
    details: Any
    prev_hash: bytes
    hash: bytes


@dataclass(slots=True)
class ChainCheckpoint:
    """One checkpoint as read from the store or an export (not yet trusted)."""

    seq: int
    head_hash: bytes
    at: datetime
    algorithm: str
    signer_key_id: str
    signer_key_version: int
    signature: bytes


class ChainBroken(Exception):
    """The chain is broken here; carries what goes into the report."""

    def __init__(self, first_bad_event: int | None, reason: str) -> None:
        super().__init__(reason)
        self.first_bad_event = first_bad_event
        self.reason = reason


class ChainVerifier:
    """Consumes events and checkpoints in chain order (a checkpoint right after its seq)."""

    def __init__(self, lookup: Callable[[str, int], VerifyingKey | None] | None) -> None:
        self.lookup = lookup
        self.seq = 0
        self.head = GENESIS_HASH
        self.events = 0
        self.checkpoints = 0
        self.anchored_seq = 0  # the last seq a signed checkpoint (or head hash) vouched for
        self.last_checkpoint_seq: int | None = None

    def resume(self, seq: int, head: bytes) -> None:
        """Continue after event ``seq`` with hash ``head``, taking the events before as read."""
        self.seq, self.head = seq, head

    def event(self, ev: ChainEvent) -> None:
        expected = self.seq + 1
        if ev.seq != expected:
            if ev.seq > expected:
                raise ChainBroken(expected, _missing(expected, ev.seq - 1))
            raise ChainBroken(ev.seq, f"event {ev.seq} is out of order (after event {self.seq})")
        if not hmac.compare_digest(ev.prev_hash, self.head):
            raise ChainBroken(
                ev.seq, f"event {ev.seq}: prev_hash does not link to event {self.seq}"
            )
        try:
            canonical = canonical_event(
                seq=ev.seq,
                at=ev.at,
                event_type=ev.event_type,
                actor=ev.actor,
                result=ev.result,
                key_id=ev.key_id,
                key_version=ev.key_version,
                algorithm=ev.algorithm,
                details=ev.details,
            )
        except InvalidAuditEvent as exc:
            raise ChainBroken(ev.seq, f"event {ev.seq} is malformed: {exc}") from None
        if not hmac.compare_digest(event_hash(self.head, canonical), ev.hash):
            raise ChainBroken(ev.seq, f"event {ev.seq}: hash does not match its contents (edited)")
        self.seq, self.head = ev.seq, ev.hash
        self.events += 1

    def checkpoint(self, cp: ChainCheckpoint) -> None:
        where = f"checkpoint at seq {cp.seq}"
        if self.lookup is not None:
            key = self.lookup(cp.signer_key_id, cp.signer_key_version)
            if key is None:
                raise ChainBroken(
                    None, f"{where}: signer {cp.signer_key_id} v{cp.signer_key_version} unknown"
                )
            try:
                if key.algorithm != cp.algorithm:
                    raise InvalidSignature
                message = checkpoint_message(
                    seq=cp.seq,
                    head_hash=cp.head_hash,
                    at=cp.at,
                    algorithm=cp.algorithm,
                    signer_key_id=cp.signer_key_id,
                    signer_key_version=cp.signer_key_version,
                )
                key.verify(cp.signature, message, CHECKPOINT_CONTEXT)
            except (InvalidSignature, InvalidAuditEvent):
                raise ChainBroken(None, f"{where}: signature is not valid") from None
        if cp.seq > self.seq:
            # A signed head beyond the chain's end: the events up to it were deleted.
            raise ChainBroken(self.seq + 1, _missing(self.seq + 1, cp.seq) + f" ({where})")
        if cp.seq < self.seq:
            raise ChainBroken(None, f"{where} is out of order (after event {self.seq})")
        if not hmac.compare_digest(cp.head_hash, self.head):
            first = self.anchored_seq + 1
            raise ChainBroken(
                first,
                f"events {first}..{cp.seq} do not match the signed {where} "
                "(edited and re-hashed, or replaced)",
            )
        self.anchored_seq = cp.seq
        self.last_checkpoint_seq = cp.seq
        if self.lookup is not None:
            self.checkpoints += 1

    def report(self, broken: ChainBroken | None) -> VerificationReport:
        if broken is not None:
            return VerificationReport(
                valid=False,
                events=self.events,
                first_bad_event=broken.first_bad_event,
                reason=broken.reason,
                checkpoints_verified=self.checkpoints,
                last_checkpoint_seq=self.last_checkpoint_seq,
            )
        reason = f"{self.events} events form an intact chain"
        if self.lookup is None:
            reason += "; checkpoint signatures not checked"
        else:
            reason += f"; {self.checkpoints} signed checkpoints verified"
        if self.seq > self.anchored_seq:
            reason += (
                f"; events {self.anchored_seq + 1}..{self.seq} are not yet covered by a "
                "signed checkpoint"
            )
        return VerificationReport(
            valid=True,
            events=self.events,
            first_bad_event=None,
            reason=reason,
            checkpoints_verified=self.checkpoints,
            last_checkpoint_seq=self.last_checkpoint_seq,
        )


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing (deleted)"
    return f"events {first}..{last} are missing (deleted)"


def run_verifier(
    verifier: ChainVerifier, items: Iterable[ChainEvent | ChainCheckpoint]
) -> VerificationReport:
    """Feed ``items`` (in chain order) to ``verifier`` and report where, if anywhere, it broke."""
    try:
        for item in items:
            if isinstance(item, ChainEvent):
                verifier.event(item)
            else:
                verifier.checkpoint(item)
    except ChainBroken as broken:
        return verifier.report(broken)
    return verifier.report(None)


def lookup_from(keys: KeyLookup | None) -> Callable[[str, int], VerifyingKey | None] | None:
    """A :data:`KeyLookup` as a function (``None`` stays ``None``: signatures unchecked)."""
    if keys is None:
        return None
    if isinstance(keys, Mapping):
        mapping = keys

        def from_mapping(key_id: str, version: int) -> VerifyingKey | None:
            return mapping.get((key_id, version))

        return from_mapping
    return keys
