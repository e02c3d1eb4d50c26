"""End-to-end signed and sealed messages between agents (``docs/formats.md``, "Agent
message v1").

The sender signs with its ML-DSA (or composite) key and seals to the recipient's
``X25519MLKEM768`` key with HPKE; sender, recipient, the recipient's KEM key, a timestamp
and a random message ID are bound. The recipient verifies, refuses replays (message ID seen,
timestamp outside the window) and messages meant for someone else. Anything in between (a
relay, a queue, a log) sees only the recipient's ID and the size.

A few lines each way::

    alice = Agent("alice", alice_signing_key, alice_kem_key, directory)
    wire = alice.send("bob", b'{"task": 7}', content_type="application/json")
    ...
    msg = bob.receive(wire)            # MessageRejected if anything is wrong
    msg.sender, msg.body

The directory maps agent IDs to public keys: from key files, from the key service
(:meth:`Directory.add_from_key_service`: key IDs and their public keys) or from
certificates of the private CA (:meth:`Directory.add_from_certificate`). Every refusal
raises the same :class:`MessageRejected`, whose message says nothing about the cause (the
cause is logged): an attacker probing a recipient learns nothing from the answer.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from qrc.crypto.base import KemPrivateKey, KemPublicKey, VerifyingKey
from qrc.crypto.errors import CryptoError, InvalidSignature
from qrc.crypto.hpke_suite import Suite, hpke_decrypt, hpke_seal
from qrc.crypto.keyfile import load_public_der, load_public_pem
from qrc.transit import agents_format as fmt

if TYPE_CHECKING:
    from cryptography import x509

    from qrc.keys.service import KeyService

__all__ = [
    "DEFAULT_WINDOW",
    "Agent",
    "AgentIdentity",
    "Directory",
    "MessageRejected",
    "ReceivedMessage",
    "ReplayCache",
    "Signer",
]

DEFAULT_WINDOW: Final = 300.0
_SUITE: Final = Suite(*fmt.SUITE)
_KEM: Final = "X25519MLKEM768"
_SIGNATURE_ALGORITHMS: Final = frozenset(
    {
        "ML-DSA-44",
        "ML-DSA-65",
        "ML-DSA-87",
        "MLDSA44-Ed25519-SHA512",
        "MLDSA65-Ed25519-SHA512",
        "MLDSA65-ECDSA-P256-SHA512",
        "MLDSA87-ECDSA-P384-SHA512",
    }
)
_log = logging.getLogger(__name__)


class MessageRejected(Exception):
    """The message was refused. Deliberately without a reason (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("message rejected")


class Signer(Protocol):
    """What signs for a sender: a local :class:`~qrc.crypto.base.SigningKey`, or a key in
    the key service (:class:`KeyServiceSigner`)."""

    @property
    def algorithm(self) -> str: ...

    def sign(self, message: bytes, context: bytes = b"") -> bytes: ...


@dataclass(frozen=True)
class AgentIdentity:
    """An agent's public side: its ID, signature key and KEM key."""

    agent_id: str
    signing_key: VerifyingKey
    kem_key: KemPublicKey

    def __post_init__(self) -> None:
        fmt.check_agent_id(self.agent_id)
        if self.signing_key.algorithm not in _SIGNATURE_ALGORITHMS:
            raise ValueError(f"{self.signing_key.algorithm} is not a post-quantum signature")
        if self.kem_key.algorithm != _KEM:
            raise ValueError(f"agent messages are sealed to {_KEM} keys")

    @property
    def kem_digest(self) -> bytes:
        return hashlib.sha256(self.kem_key.public_bytes()).digest()


class Directory:
    """Agent IDs to public keys. Thread-safe; a later :meth:`add` of an ID replaces it."""

    def __init__(self, identities: Iterable[AgentIdentity] = ()) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, AgentIdentity] = {}
        for identity in identities:
            self.add(identity)

    def add(self, identity: AgentIdentity) -> AgentIdentity:
        with self._lock:
            self._by_id[identity.agent_id] = identity
        return identity

    def get(self, agent_id: str) -> AgentIdentity | None:
        with self._lock:
            return self._by_id.get(agent_id)

    def add_from_key_service(
        self, service: KeyService, *, signing_key: str, kem_key: str, agent_id: str | None = None
    ) -> AgentIdentity:
        """The agent whose keys the key service holds (IDs or names); its ID defaults to the
        signing key's ID. Only public keys are read."""
        info = service.keys.get_key(signing_key)
        sig = load_public_pem(service.crypto.public_key_pem(info.id))
        kem = load_public_pem(service.crypto.public_key_pem(kem_key))
        if not isinstance(sig, VerifyingKey) or not isinstance(kem, KemPublicKey):
            raise ValueError("expected a signature key and a KEM key")
        return self.add(AgentIdentity(agent_id or info.id, sig, kem))

    def add_from_certificate(
        self,
        certificate: x509.Certificate,
        ca_certificate: x509.Certificate,
        kem_key: KemPublicKey,
        *,
        now: float | None = None,
    ) -> AgentIdentity:
        """The agent named by a certificate of our CA (common name = agent ID; its ML-DSA
        key signs). The certificate must be directly issued by ``ca_certificate`` and valid
        now. The KEM key comes separately (an X.509 certificate for ML-KEM keys is not
        something TLS stacks read yet)."""
        import datetime  # noqa: PLC0415

        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415

        try:
            certificate.verify_directly_issued_by(ca_certificate)
        except Exception as exc:
            raise ValueError(f"certificate not issued by this CA: {exc!r}") from None
        moment = datetime.datetime.fromtimestamp(now or time.time(), datetime.UTC)
        if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
            raise ValueError("certificate is not valid now")
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            raise ValueError("certificate needs exactly one common name")
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sig = load_public_der(spki)
        if not isinstance(sig, VerifyingKey):
            raise ValueError("certificate key is not a signature key")
        return self.add(AgentIdentity(str(names[0].value), sig, kem_key))


class ReplayCache:
    """Accepted ``(sender, message ID)`` pairs within the time window.

    Bounded: when ``max_entries`` are held, the oldest is evicted and the cache then refuses
    every message not newer than it (``floor``), so an eviction never re-opens a replay.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, max_entries: int = 1_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: collections.OrderedDict[tuple[str, bytes], int] = collections.OrderedDict()
        self._floor_ms = 0
        self._lock = threading.Lock()

    def check_and_add(self, sender: str, message_id: bytes, timestamp_ms: int, now: float) -> bool:
        """False if the pair was seen or the time is outside the window; else remember it."""
        now_ms = int(now * 1000)
        window_ms = int(self.window * 1000)
        if abs(now_ms - timestamp_ms) > window_ms:
            return False
        key = (sender, message_id)
        with self._lock:
            # Entries older than the window cannot be replayed: the window check refuses them.
            while self._seen:
                oldest = next(iter(self._seen.items()))
                if oldest[1] >= now_ms - window_ms:
                    break
                self._seen.popitem(last=False)
            if timestamp_ms <= self._floor_ms or key in self._seen:
                return False
            self._seen[key] = timestamp_ms
            if len(self._seen) > self.max_entries:
                _, evicted = self._seen.popitem(last=False)
                self._floor_ms = max(self._floor_ms, evicted)
            return True

    def snapshot(self) -> tuple[int, list[tuple[str, bytes, int]]]:
        """The floor and the remembered ``(sender, message ID, timestamp ms)``, oldest first
        (to keep the cache between runs: :mod:`qrc.transit.agents_home`)."""
        with self._lock:
            return self._floor_ms, [(s, m, t) for (s, m), t in self._seen.items()]

    def restore(self, floor_ms: int, seen: Iterable[tuple[str, bytes, int]]) -> None:
        """Take back what :meth:`snapshot` gave (entries in any order)."""
        with self._lock:
            self._floor_ms = max(self._floor_ms, floor_ms)
            for sender, message_id, timestamp_ms in sorted(seen, key=lambda entry: entry[2]):
                self._seen[(sender, message_id)] = timestamp_ms
            while len(self._seen) > self.max_entries:
                _, evicted = self._seen.popitem(last=False)
                self._floor_ms = max(self._floor_ms, evicted)


@dataclass(frozen=True)
class ReceivedMessage:
    """A message that passed every check."""

    sender: str
    recipient: str
    message_id: str  # hex
    timestamp: float  # seconds since the epoch
    content_type: str
    body: bytes


class KeyServiceSigner:
    """Sign with a key the key service holds (the private key never leaves it; each
    signature is audited as ``key.sign``)."""

    def __init__(self, service: KeyService, key: str, *, actor: str) -> None:
        self._service, self._key, self._actor = service, key, actor
        self._algorithm = service.keys.get_key(key).algorithm

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        signed = self._service.crypto.sign(self._key, message, actor=self._actor, context=context)
        return signed.signature


class Agent:
    """One agent: sends as ``agent_id`` and receives what is sealed to it."""

    def __init__(
        self,
        agent_id: str,
        signer: Signer,
        kem_key: KemPrivateKey,
        directory: Directory,
        *,
        window: float = DEFAULT_WINDOW,
        replay_cache: ReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        fmt.check_agent_id(agent_id)
        if kem_key.algorithm != _KEM:
            raise ValueError(f"an agent receives with an {_KEM} key")
        if signer.algorithm not in _SIGNATURE_ALGORITHMS:
            raise ValueError(f"{signer.algorithm} is not a post-quantum signature")
        self.agent_id = agent_id
        self._signer = signer
        self._kem_key = kem_key
        self._own_digest = hashlib.sha256(kem_key.public_key().public_bytes()).digest()
        self.directory = directory
        self.replays = replay_cache or ReplayCache(window)
        self._clock = clock

    def __repr__(self) -> str:
        return f"Agent({self.agent_id!r})"

    def send(self, recipient: str, body: bytes, *, content_type: str = "") -> bytes:
        """The wire form of a message to ``recipient`` (looked up in the directory)."""
        identity = self.directory.get(recipient)
        if identity is None:
            raise LookupError(f"no agent {recipient!r} in the directory")
        header = fmt.encode_header(recipient)
        unsigned = fmt.encode_inner_unsigned(
            self.agent_id,
            recipient,
            os.urandom(fmt.MESSAGE_ID_SIZE),
            int(self._clock() * 1000),
            self._signer.algorithm,
            content_type,
            body,
        )
        signature = self._signer.sign(
            fmt.signed_data(header, identity.kem_digest, unsigned), fmt.SIGNATURE_CONTEXT
        )
        inner = b"".join((unsigned, len(signature).to_bytes(2, "big"), signature))
        return hpke_seal(_SUITE, identity.kem_key, inner, fmt.INFO_LABEL + header, prefix=header)

    def receive(self, message: bytes) -> ReceivedMessage:
        """Open, verify and check a message; :class:`MessageRejected` on any failure."""
        try:
            return self._receive(message)
        except MessageRejected:
            raise
        except (fmt.MalformedMessage, CryptoError, InvalidSignature, ValueError) as exc:
            _log.warning("agent %s rejected a message: %r", self.agent_id, exc)
            raise MessageRejected from None

    def _receive(self, message: bytes) -> ReceivedMessage:
        recipient, size = fmt.parse_header(message)
        if recipient != self.agent_id:
            raise ValueError("message for another agent")
        header = bytes(message[:size])
        plain = hpke_decrypt(
            _SUITE, self._kem_key, memoryview(message)[size:], fmt.INFO_LABEL + header
        )
        inner = fmt.parse_inner(plain)
        if inner.recipient != recipient:
            raise ValueError("inner recipient differs from the header")
        sender = self.directory.get(inner.sender)
        if sender is None:
            raise ValueError(f"unknown sender {inner.sender!r}")
        if inner.signature_algorithm != sender.signing_key.algorithm:
            raise ValueError("signature algorithm is not the sender's")
        sender.signing_key.verify(
            inner.signature,
            fmt.signed_data(header, self._own_digest, inner.signed),
            fmt.SIGNATURE_CONTEXT,
        )
        # Only authenticated messages reach the replay cache.
        if not self.replays.check_and_add(
            inner.sender, inner.message_id, inner.timestamp_ms, self._clock()
        ):
            raise ValueError("replayed, or timestamp outside the window")
        return ReceivedMessage(
            inner.sender,
            recipient,
            inner.message_id.hex(),
            inner.timestamp_ms / 1000,
            inner.content_type,
            inner.body,
        )
