"""The age format written from the spec: round trips, keys, headers, tampering, limits."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrc.crypto.errors import DecryptionError, KeyFormatError
from qrc.data.age import (
    ArmorFailure,
    HeaderFailure,
    HybridIdentity,
    MacFailure,
    NoIdentityMatch,
    PayloadFailure,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    decrypt,
    decrypt_bytes,
    encrypt,
    encrypt_bytes,
    parse_identities,
    parse_recipient,
)
from qrc.data.age.header import encode_header, read_header
from qrc.data.age.stream import CHUNK_SIZE
from tests.data.age.cctv import TESTDATA, load, names

SPEC = Path(__file__).resolve().parents[4] / "shared" / "specs" / "c2sp-age.md"
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5]
X25519 = X25519Identity.generate()
HYBRID = HybridIdentity.generate()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("armor", [False, True])
@pytest.mark.parametrize("identity", [X25519, HYBRID], ids=["x25519", "mlkem768x25519"])
def test_round_trip(size: int, armor: bool, identity: X25519Identity | HybridIdentity) -> None:
    data = os.urandom(size)
    sealed = encrypt_bytes(data, [identity.recipient()], armor=armor)
    assert decrypt_bytes(sealed, [identity]) == data
    # Overhead: a header, a 16-byte nonce and one 16-byte tag per chunk (one at least).
    chunks = max(1, -(-size // CHUNK_SIZE))
    if not armor:
        header = read_header(io.BufferedReader(io.BytesIO(sealed)))
        assert len(sealed) == len(header.covered) + 45 + 16 + size + 16 * chunks


def test_scrypt_round_trip_and_wrong_passphrase() -> None:
    sealed = encrypt_bytes(b"secret", [ScryptRecipient(b"correct horse", work_factor=10)])
    assert decrypt_bytes(sealed, [ScryptIdentity(b"correct horse")]) == b"secret"
    with pytest.raises(NoIdentityMatch):
        decrypt_bytes(sealed, [ScryptIdentity(b"wrong")])
    with pytest.raises(HeaderFailure):  # above the caller's work-factor ceiling
        decrypt_bytes(sealed, [ScryptIdentity(b"correct horse", max_work_factor=9)])


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=3 * CHUNK_SIZE + 100),
    pieces=st.lists(st.integers(1, 2 * CHUNK_SIZE), max_size=8),
    armor=st.booleans(),
)
def test_any_write_pattern_gives_the_same_plaintext(
    data: bytes, pieces: list[int], armor: bool
) -> None:
    out = io.BytesIO()
    with encrypt(out, [X25519.recipient()], armor=armor) as writer:
        at = 0
        for piece in pieces:
            writer.write(data[at : at + piece])
            at += piece
        writer.write(data[at:])
    reader = decrypt(io.BytesIO(out.getvalue()), [X25519])
    got = bytearray()
    while block := reader.read(7777):
        got += block
    assert got == data


def test_spec_keys() -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is absent")
    text = SPEC.read_text()
    identity = HybridIdentity.parse(
        "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR"
    )
    match = re.search(r"age1pq1[0-9a-z]+", text)
    assert match is not None
    assert str(identity.recipient()) == match.group(0)
    x = X25519Identity.parse(
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    )
    assert str(x.recipient()) == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert str(parse_recipient(match.group(0))) == match.group(0)


def test_key_strings_round_trip_and_reject_garbage() -> None:
    for identity in (X25519, HYBRID):
        text = str(identity)
        assert text.isupper() and str(type(identity).parse(text)) == text
        assert str(parse_recipient(str(identity.recipient()))) == str(identity.recipient())
    assert "AGE-SECRET" not in repr(X25519) and "AGE-SECRET" not in repr(HYBRID)
    good = str(X25519.recipient())
    for bad in (good[:-1] + ("q" if good[-1] != "q" else "p"), good[:6].upper() + good[6:], "age1"):
        with pytest.raises(KeyFormatError):
            parse_recipient(bad)
    with pytest.raises(KeyFormatError):
        parse_recipient("ssh-ed25519 AAAA")
    text = f"# created: now\n\n{X25519}\n  {HYBRID}  \n"
    assert len(parse_identities(text)) == 2
    with pytest.raises(KeyFormatError, match="line 2"):
        parse_identities(f"{X25519}\nnot a key\n")


def test_mixing_rules() -> None:
    with pytest.raises(ValueError, match="quantum"):
        encrypt_bytes(b"x", [HYBRID.recipient(), X25519.recipient()])
    with pytest.raises(ValueError, match="only recipient"):
        encrypt_bytes(b"x", [ScryptRecipient(b"pw", 10), X25519.recipient()])
    with pytest.raises(ValueError, match="only recipient"):
        encrypt_bytes(b"x", [ScryptRecipient(b"pw", 10), ScryptRecipient(b"pw", 10)])
    with pytest.raises(ValueError):
        encrypt_bytes(b"x", [])
    two = X25519Identity.generate()
    sealed = encrypt_bytes(b"both", [X25519.recipient(), two.recipient()])
    assert decrypt_bytes(sealed, [two]) == b"both"


def _chunks_of(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """Split a binary age file into (header + nonce, sealed chunks)."""
    src = io.BufferedReader(io.BytesIO(sealed))
    header = read_header(src)
    start = len(header.covered) + 45 + 16
    body = sealed[start:]
    step = CHUNK_SIZE + 16
    return sealed[:start], [body[i : i + step] for i in range(0, len(body), step)]


def test_tampering_fails_opaquely() -> None:
    data = os.urandom(3 * CHUNK_SIZE + 100)
    sealed = encrypt_bytes(data, [HYBRID.recipient()])
    head, chunks = _chunks_of(sealed)
    cases: dict[str, tuple[bytes, type[DecryptionError]]] = {
        "truncated at a chunk boundary": (head + b"".join(chunks[:2]), PayloadFailure),
        "truncated mid-chunk": (sealed[:-50], PayloadFailure),
        "chunks reordered": (
            head + chunks[1] + chunks[0] + b"".join(chunks[2:]),
            PayloadFailure,
        ),
        "last chunk dropped": (head + b"".join(chunks[:-1]), PayloadFailure),
        "trailing data": (sealed + b"\x00", PayloadFailure),
        "payload byte flipped": (
            sealed[:-5] + bytes([sealed[-5] ^ 1]) + sealed[-4:],
            PayloadFailure,
        ),
        "nonce missing": (head[:-16], HeaderFailure),
    }
    # A changed header: another recipient stanza added (the MAC no longer matches).
    other = X25519Identity.generate().recipient()
    stanzas = list(read_header(io.BufferedReader(io.BytesIO(sealed))).stanzas)
    forged_head = encode_header([*stanzas, *other.wrap(os.urandom(16))], os.urandom(16))
    nonce_and_body = sealed[len(head) - 16 :]
    cases["header changed"] = (forged_head + nonce_and_body, MacFailure)
    # Swapped MAC: the MAC line of another file.
    another = encrypt_bytes(data, [HYBRID.recipient()])
    mac_at = sealed.index(b"\n--- ") + 5
    cases["MAC swapped"] = (
        sealed[:mac_at] + another[another.index(b"\n--- ") + 5 :][:43] + sealed[mac_at + 43 :],
        MacFailure,
    )
    for name, (forged, expected) in cases.items():
        with pytest.raises(DecryptionError) as info:
            decrypt_bytes(forged, [HYBRID])
        assert type(info.value) is expected, name
        assert str(info.value) == "decryption failed"


def test_armor_is_strict() -> None:
    armored = encrypt_bytes(b"hello", [X25519.recipient()], armor=True)
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert (
        decrypt_bytes(b"\n \t\n" + armored.replace(b"\n", b"\r\n") + b"\n\n", [X25519]) == b"hello"
    )
    for forged in (armored + b"x", armored.replace(b"-----\n", b"----- \n", 1), b"garbage"):
        with pytest.raises(ArmorFailure):
            decrypt_bytes(forged, [X25519])


def test_header_round_trips_on_the_kit() -> None:
    """Every vector whose header parses re-encodes to the same bytes (README of the kit)."""
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} is absent")
    checked = 0
    for name in names():
        vector = load(TESTDATA / name)
        if vector.armored or vector.expect == "header failure":
            continue
        header = read_header(io.BufferedReader(io.BytesIO(vector.data)))
        assert vector.data.startswith(header.covered), name
        checked += 1
    assert checked >= 50


def test_limits_are_enforced() -> None:
    huge = b"age-encryption.org/v1\n-> " + b"a" * (20 << 10) + b"\n\n--- " + b"A" * 43 + b"\n"
    with pytest.raises(HeaderFailure):
        decrypt_bytes(huge, [X25519])
    stanza = b"-> " + b"x" * 4000 + b"\n\n"
    many = b"age-encryption.org/v1\n" + stanza * 300 + b"--- " + b"A" * 43 + b"\n"
    with pytest.raises(HeaderFailure):
        decrypt_bytes(many, [X25519])


def test_reader_releases_only_authenticated_chunks() -> None:
    data = os.urandom(2 * CHUNK_SIZE + 1)
    sealed = encrypt_bytes(data, [X25519.recipient()])
    head, chunks = _chunks_of(sealed)
    forged = head + chunks[0] + chunks[1][:-1] + bytes([chunks[1][-1] ^ 1]) + chunks[2]
    released = hashlib.sha256()
    with pytest.raises(PayloadFailure):
        for chunk in decrypt(io.BytesIO(forged), [X25519]).chunks():
            released.update(chunk)
    assert released.digest() == hashlib.sha256(data[:CHUNK_SIZE]).digest()


def test_an_exception_inside_the_writer_leaves_an_incomplete_file() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), encrypt(out, [X25519.recipient()]) as writer:
        writer.write(os.urandom(3 * CHUNK_SIZE + 5))
        raise RuntimeError("the source failed half-way")
    with pytest.raises(PayloadFailure):
        decrypt_bytes(out.getvalue(), [X25519])
