"""Agent messages: round trips, identities from the key service and from certificates, and
attacks (replay, tampering, wrong recipient, forged sender, surreptitious forwarding, old or
future timestamps, malformed input), each refused with the same opaque error."""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from qrc.crypto import get_kem, get_signature
from qrc.crypto.hpke_suite import Suite, hpke_decrypt, hpke_seal
from qrc.keys.service import KeyService
from qrc.transit import agents_format as fmt
from qrc.transit.agents import (
    Agent,
    AgentIdentity,
    Directory,
    KeyServiceSigner,
    MessageRejected,
    ReplayCache,
)
from qrc.transit.ca import CertificateAuthority
from qrc.transit.tunnel_certs import issue_peer_certificate
from tests.data.conftest import make_service

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class World:
    directory: Directory
    clock: Clock
    make: Callable[..., Agent]


@pytest.fixture
def world() -> World:
    directory, clock = Directory(), Clock()

    def make(name: str, algorithm: str = "ML-DSA-65", *, listed: bool = True) -> Agent:
        sig = get_signature(algorithm).generate()
        kem = get_kem("X25519MLKEM768").generate()
        if listed:
            directory.add(AgentIdentity(name, sig.public_key(), kem.public_key()))
        return Agent(name, sig, kem, directory, clock=clock)

    return World(directory, clock, make)


@pytest.fixture
def trio(world: World) -> tuple[Agent, Agent, Agent]:
    return world.make("alice"), world.make("bob", "MLDSA65-Ed25519-SHA512"), world.make("carol")


def _rejected(agent: Agent, message: bytes) -> None:
    with pytest.raises(MessageRejected) as info:
        agent.receive(message)
    assert str(info.value) == "message rejected"  # the same words for every cause


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("algorithm", ["ML-DSA-65", "ML-DSA-87", "MLDSA65-Ed25519-SHA512"])
@pytest.mark.parametrize("size", [0, 1, 100_000, fmt.MAX_BODY])
def test_round_trip(world: World, algorithm: str, size: int) -> None:
    alice, bob = world.make("alice", algorithm), world.make("bob")
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    wire = alice.send("bob", body, content_type="application/octet-stream")
    got = bob.receive(wire)
    assert (got.sender, got.recipient, got.body) == ("alice", "bob", body)
    assert got.content_type == "application/octet-stream"
    assert got.timestamp == NOW
    assert len(bytes.fromhex(got.message_id)) == 16
    assert b"alice" not in wire  # the sender's ID travels sealed
    assert fmt.parse_header(wire)[0] == "bob"


def test_two_messages_with_the_same_body_have_different_ids(trio: tuple[Agent, ...]) -> None:
    alice, bob, _ = trio
    first, second = alice.send("bob", b"same"), alice.send("bob", b"same")
    assert first != second
    assert bob.receive(first).message_id != bob.receive(second).message_id


def test_sending_to_an_unknown_agent_fails_loudly(trio: tuple[Agent, ...]) -> None:
    with pytest.raises(LookupError):
        trio[0].send("dave", b"hi")


def test_a_body_over_the_limit_is_refused_at_the_sender(trio: tuple[Agent, ...]) -> None:
    with pytest.raises(ValueError, match="at most"):
        trio[0].send("bob", b"x" * (fmt.MAX_BODY + 1))


# --------------------------------------------------------------------------- attacks
def test_replay_is_refused(trio: tuple[Agent, ...]) -> None:
    alice, bob, _ = trio
    wire = alice.send("bob", b"pay 10")
    bob.receive(wire)
    _rejected(bob, wire)


def test_replay_is_refused_even_after_the_cache_evicted_it(world: World) -> None:
    alice = world.make("alice")
    bob = world.make("bob")
    bob.replays = ReplayCache(max_entries=2)
    first = alice.send("bob", b"1")
    world.clock.t += 1
    later = [alice.send("bob", b"2"), alice.send("bob", b"3")]
    for wire in (first, *later):
        bob.receive(wire)
    _rejected(bob, first)  # evicted, but no newer than the floor


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_timestamp_outside_the_window_is_refused(world: World, skew: float) -> None:
    alice, bob = world.make("alice"), world.make("bob")
    wire = alice.send("bob", b"late")
    world.clock.t += -skew  # the recipient's clock is that far from the sender's
    _rejected(bob, wire)
    world.clock.t = NOW + 299  # within the window: accepted
    assert bob.receive(wire).body == b"late"


@pytest.mark.parametrize("where", ["magic", "recipient", "suite", "enc", "ciphertext", "tag"])
def test_tampered_message_is_refused(trio: tuple[Agent, ...], where: str) -> None:
    alice, bob, _ = trio
    wire = bytearray(alice.send("bob", b"transfer 10 to carol"))
    _, header = fmt.parse_header(bytes(wire))
    at = {
        "magic": 0,
        "recipient": 6,
        "suite": header - 1,
        "enc": header + 500,
        "ciphertext": header + fmt.ENC_SIZE + 30,
        "tag": len(wire) - 1,
    }[where]
    wire[at] ^= 0x01
    _rejected(bob, bytes(wire))


def test_truncated_and_extended_messages_are_refused(trio: tuple[Agent, ...]) -> None:
    alice, bob, _ = trio
    wire = alice.send("bob", b"hello")
    for bad in (b"", wire[:5], wire[:-1], wire + b"\x00", b"QRAM\x01" + b"\xff" * 3000):
        _rejected(bob, bad)
    assert bob.receive(wire).body == b"hello"  # none of that spent the real message


def test_message_for_someone_else_is_refused(trio: tuple[Agent, ...]) -> None:
    alice, _bob, carol = trio
    _rejected(carol, alice.send("bob", b"for bob"))


def test_header_rewritten_to_another_recipient_is_refused(trio: tuple[Agent, ...]) -> None:
    alice, _bob, carol = trio
    wire = alice.send("bob", b"for bob")
    _, size = fmt.parse_header(wire)
    rerouted = fmt.encode_header("cat") + wire[size:]  # same length ID, other name
    carol_like = Agent("cat", carol._signer, carol._kem_key, carol.directory)
    _rejected(carol_like, rerouted)


def test_forged_sender_is_refused(world: World) -> None:
    world.make("alice")
    bob = world.make("bob")
    mallory_key = get_signature("ML-DSA-65").generate()
    kem = get_kem("X25519MLKEM768").generate()
    mallory_as_alice = Agent("alice", mallory_key, kem, world.directory, clock=world.clock)
    _rejected(bob, mallory_as_alice.send("bob", b"I am alice"))


def test_unknown_sender_is_refused(world: World) -> None:
    bob = world.make("bob")
    stranger = world.make("stranger", listed=False)
    _rejected(bob, stranger.send("bob", b"hello"))


def test_signature_algorithm_must_be_the_senders(world: World) -> None:
    alice, bob = world.make("alice"), world.make("bob")
    wire = alice.send("bob", b"x")
    # Re-seal alice's inner form with the algorithm field changed (bob's own key opens it).
    _, size = fmt.parse_header(wire)
    suite, info = Suite(*fmt.SUITE), fmt.INFO_LABEL + wire[:size]
    inner = hpke_decrypt(suite, bob._kem_key, wire[size:], info)
    changed = inner.replace(b"\x09ML-DSA-65", b"\x09ML-DSA-44", 1)
    assert changed != inner
    kem = bob.directory.get("bob")
    assert kem is not None
    _rejected(bob, hpke_seal(suite, kem.kem_key, changed, info, prefix=wire[:size]))


def test_surreptitious_forwarding_is_refused(trio: tuple[Agent, ...]) -> None:
    """Bob opens alice's message and re-seals her signed inner form to carol, recipient
    fields rewritten: the signature covered bob's header and bob's KEM key."""
    alice, bob, carol = trio
    wire = alice.send("bob", b"you may read my files")
    _, size = fmt.parse_header(wire)
    suite = Suite(*fmt.SUITE)
    inner = hpke_decrypt(suite, bob._kem_key, wire[size:], fmt.INFO_LABEL + wire[:size])
    parsed = fmt.parse_inner(inner)
    unsigned = fmt.encode_inner_unsigned(
        parsed.sender, "carol", parsed.message_id, parsed.timestamp_ms,
        parsed.signature_algorithm, parsed.content_type, parsed.body,
    )  # fmt: skip
    forwarded_inner = unsigned + struct.pack(">H", len(parsed.signature)) + parsed.signature
    header = fmt.encode_header("carol")
    identity = carol.directory.get("carol")
    assert identity is not None
    forwarded = hpke_seal(
        suite, identity.kem_key, forwarded_inner, fmt.INFO_LABEL + header, prefix=header
    )
    _rejected(carol, forwarded)


def test_every_refusal_is_the_same_error(trio: tuple[Agent, ...]) -> None:
    alice, bob, _carol = trio
    wire = alice.send("bob", b"x")
    bob.receive(wire)
    causes = [wire, b"junk", alice.send("carol", b"x"), wire[:-2]]
    errors = []
    for message in causes:
        try:
            bob.receive(message)
        except MessageRejected as exc:
            errors.append((type(exc), exc.args))
    assert len(errors) == len(causes)
    assert len(set(errors)) == 1


# --------------------------------------------------------------------------- identities
@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    svc = make_service(tmp_path / "svc")
    yield svc
    svc.close()


def test_identities_and_signing_from_the_key_service(service: KeyService) -> None:
    sig = service.keys.create_key(
        name="agent-a-sig", purpose="signing", algorithm="ML-DSA-65", actor="test"
    )
    kem_a = service.keys.create_key(
        name="agent-a-kem", purpose="encryption", algorithm="X25519MLKEM768", actor="test"
    )
    directory = Directory()
    a_identity = directory.add_from_key_service(service, signing_key=sig.id, kem_key=kem_a.id)
    assert a_identity.agent_id == sig.id
    bob_sig, bob_kem = get_signature("ML-DSA-65").generate(), get_kem("X25519MLKEM768").generate()
    directory.add(AgentIdentity("bob", bob_sig.public_key(), bob_kem.public_key()))
    signer = KeyServiceSigner(service, sig.id, actor="agent-a")
    agent_a = Agent(sig.id, signer, get_kem("X25519MLKEM768").generate(), directory)
    bob = Agent("bob", bob_sig, bob_kem, directory)
    got = bob.receive(agent_a.send("bob", b"signed in the key service"))
    assert got.sender == sig.id
    events, _ = service.audit.query(event_type="key.sign")
    assert [e.actor for e in events] == ["agent-a"]


def test_identity_from_a_certificate_of_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    other = CertificateAuthority.create(tmp_path / "other")
    issued = issue_peer_certificate(tmp_path / "ca", "agent-billing")
    key = get_signature("ML-DSA-65").load_private(_seed(issued.private_key_pem))
    kem = get_kem("X25519MLKEM768").generate()
    directory = Directory()
    identity = directory.add_from_certificate(issued.certificate, ca.certificate, kem.public_key())
    assert identity.agent_id == "agent-billing"
    billing = Agent("agent-billing", key, kem, directory)
    bob_sig, bob_kem = get_signature("ML-DSA-65").generate(), get_kem("X25519MLKEM768").generate()
    directory.add(AgentIdentity("bob", bob_sig.public_key(), bob_kem.public_key()))
    assert Agent("bob", bob_sig, bob_kem, directory).receive(billing.send("bob", b"hi")).body
    with pytest.raises(ValueError, match="not issued"):
        Directory().add_from_certificate(issued.certificate, other.certificate, kem.public_key())
    expired = issue_peer_certificate(
        tmp_path / "ca", "old", validity=datetime.timedelta(days=1),
        not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=5),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not valid now"):
        Directory().add_from_certificate(expired.certificate, ca.certificate, kem.public_key())
    assert isinstance(issued.certificate, x509.Certificate)


def _seed(pem: bytes) -> bytes:
    from qrc.crypto.keyfile import load_private_pem

    return load_private_pem(pem).private_bytes()


@pytest.mark.parametrize("algorithm", ["ML-DSA-65", "MLDSA65-Ed25519-SHA512"])
def test_mutated_inner_forms_only_ever_raise_message_rejected(world: World, algorithm: str) -> None:
    """Whatever a sender who can seal to bob puts inside (cut fields, huge lengths, bad
    UTF-8, short signatures), receiving raises MessageRejected and nothing else."""
    import random

    alice, bob = world.make("alice", algorithm), world.make("bob")
    wire = alice.send("bob", b"body", content_type="text/plain")
    _, size = fmt.parse_header(wire)
    suite, info = Suite(*fmt.SUITE), fmt.INFO_LABEL + wire[:size]
    inner = hpke_decrypt(suite, bob._kem_key, wire[size:], info)
    bob_kem = bob.directory.get("bob")
    assert bob_kem is not None
    rng = random.Random(1234)
    for _ in range(150):
        mutated = bytearray(inner)
        kind = rng.randrange(3)
        if kind == 0:
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif kind == 1:
            del mutated[rng.randrange(len(mutated)) :]
        else:
            at = rng.randrange(len(mutated))
            mutated[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        sealed = hpke_seal(suite, bob_kem.kem_key, bytes(mutated), info, prefix=wire[:size])
        if bytes(mutated) == inner:
            continue
        with pytest.raises(MessageRejected):
            bob.receive(sealed)
    assert bob.receive(wire).body == b"body"  # the real one still passes afterwards
