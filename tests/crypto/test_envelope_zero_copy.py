"""Envelopes without full-size copies: the HPKE seal run here, views in, exact bytes out.

* ``hpke_seal`` runs RFC 9180 SealBase itself for the post-quantum KEMs with an HKDF KDF:
  its key schedule gives the hpke-pq vectors' ``key`` and ``base_nonce``, what it writes
  for a vector's encapsulation opens with pyca's HPKE and the vector's private key, and
  every suite the envelope accepts for these KEMs opens with pyca (both sizes of
  ``seal_after``: joined below ``INTO_THRESHOLD``, written in place from it on).
* Every mode round-trips ``bytes``, ``bytearray`` and ``memoryview`` inputs (sliced,
  and of another item format) around the threshold and at 1 MiB, returns exactly
  ``bytes``, leaves the caller's buffer alone and releases it.
* A large envelope tampered anywhere, truncated or extended still raises the one
  ``DecryptionError``.
"""

from __future__ import annotations

import array
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from qrc.crypto import envelope
from qrc.crypto.base import KemPrivateKey
from qrc.crypto.envelope import (
    Mode,
    open_sealed,
    open_symmetric,
    parse_header,
    seal,
    seal_symmetric,
)
from qrc.crypto.errors import DecryptionError, UnsupportedAlgorithm
from qrc.crypto.hpke_suite import (
    AEAD_IDS,
    INTO_THRESHOLD,
    KDF_IDS,
    KEM_IDS,
    Suite,
    hpke_decrypt,
    hpke_seal,
    key_schedule,
    seal_after,
)
from qrc.crypto.hybrid import SCHEMES
from qrc.crypto.schemes import get_kem
from tests.crypto.test_hpke_vectors import AEADS, HKDF_VECTORS, KEMS, PYCA_KDF, _b, _id

CONTEXT = b"tenant=7;row=42"
_KEYS: dict[str, KemPrivateKey] = {}
HKDFS = ("HKDF-SHA256", "HKDF-SHA384", "HKDF-SHA512")
PYCA_HPKE_KEMS = ("ML-KEM-768", "ML-KEM-1024", "X25519MLKEM768", "P384MLKEM1024")
SIZES = (0, 1, INTO_THRESHOLD - 1, INTO_THRESHOLD, INTO_THRESHOLD + 17)
BIG = 1 << 20


def _key(algorithm: str) -> KemPrivateKey:
    if algorithm not in _KEYS:
        _KEYS[algorithm] = get_kem(algorithm).generate()
    return _KEYS[algorithm]


def _pyca_suite(suite: Suite, kem: hpke.KEM) -> hpke.Suite:
    aead = {v: AEADS[v][2] for v in AEADS}[suite.aead_id]
    return hpke.Suite(kem, PYCA_KDF[suite.kdf_id], aead)


# --------------------------------------------------------------------------- HPKE run here
@pytest.mark.parametrize("vector", HKDF_VECTORS, ids=_id)
def test_key_schedule_gives_the_vector_key_and_nonce(vector: dict[str, Any]) -> None:
    suite = Suite(vector["kem_id"], vector["kdf_id"], vector["aead_id"])
    key, nonce = key_schedule(suite, _b(vector, "shared_secret"), _b(vector, "info"))
    assert (key, nonce) == (_b(vector, "key"), _b(vector, "base_nonce"))


class _FixedEncapsulation:
    """A public key whose encapsulation is the vector's (``enc``, ``shared_secret``)."""

    def __init__(self, algorithm: str, enc: bytes, shared_secret: bytes) -> None:
        self.algorithm, self._result = algorithm, (enc, shared_secret)

    def encapsulate(self) -> tuple[bytes, bytes]:
        return self._result


@pytest.mark.parametrize("vector", HKDF_VECTORS, ids=_id)
@pytest.mark.parametrize("size", [5, INTO_THRESHOLD])
def test_hpke_seal_of_a_vector_encapsulation_opens_with_pyca(
    vector: dict[str, Any], size: int
) -> None:
    name, impl, kem = KEMS[vector["kem_id"]]
    algorithm = impl if isinstance(impl, str) else name
    suite = Suite(vector["kem_id"], vector["kdf_id"], vector["aead_id"])
    public = _FixedEncapsulation(algorithm, _b(vector, "enc"), _b(vector, "shared_secret"))
    plaintext, info, prefix = os.urandom(size), _b(vector, "info"), b"prefix"
    sealed = hpke_seal(suite, public, plaintext, info, prefix)
    cipher = AEADS[vector["aead_id"]][0](_b(vector, "key"))
    expected_ct = cipher.encrypt(_b(vector, "base_nonce"), plaintext, None)
    assert sealed == prefix + _b(vector, "enc") + expected_ct
    if isinstance(impl, str):
        private = SCHEMES[impl]().load_private(_b(vector, "skRm")).to_hpke()  # type: ignore[attr-defined]
    else:
        private = impl.from_seed_bytes(_b(vector, "skRm"))
    opened = _pyca_suite(suite, kem).decrypt(sealed[len(prefix) :], private, info=info)
    assert opened == plaintext


@pytest.mark.parametrize("algorithm", PYCA_HPKE_KEMS)
@pytest.mark.parametrize("kdf", HKDFS)
@pytest.mark.parametrize("aead", sorted(AEAD_IDS))
@pytest.mark.parametrize("size", [0, 100, INTO_THRESHOLD + 1])
def test_every_hkdf_suite_sealed_here_opens_with_pyca(
    algorithm: str, kdf: str, aead: str, size: int
) -> None:
    private = _key(algorithm)
    plaintext = os.urandom(size)
    sealed = seal(private.public_key(), plaintext, context=CONTEXT, kdf=kdf, aead=aead)
    header = parse_header(sealed)
    suite = Suite(header.kem_id, KDF_IDS[kdf], AEAD_IDS[aead])
    kem = envelope.HPKE_KEMS[get_kem(algorithm).info.hpke_kem or ""]
    pyca_private = private.to_hpke() if hasattr(private, "to_hpke") else private.to_pyca()  # type: ignore[attr-defined]
    body = sealed[header.size :]
    info = sealed[: header.size] + CONTEXT
    assert _pyca_suite(suite, kem).decrypt(body, pyca_private, info=info) == plaintext
    assert open_sealed(private, sealed, context=CONTEXT) == plaintext


@pytest.mark.parametrize("size", [3, INTO_THRESHOLD + 3])
def test_ml_kem_512_sealed_here_opens_with_pycryptodome(size: int) -> None:
    try:
        private = _key("ML-KEM-512")
    except Exception as error:  # the provider may be missing
        pytest.skip(f"ML-KEM-512 is not available: {error}")
    plaintext = os.urandom(size)
    sealed = seal(private.public_key(), plaintext, context=CONTEXT)
    assert parse_header(sealed).kem_id == KEM_IDS["ML-KEM-512"]
    assert open_sealed(private, sealed, context=CONTEXT) == plaintext
    assert open_sealed(private, bytearray(sealed), context=CONTEXT) == plaintext


def test_key_schedule_refuses_suites_it_does_not_run() -> None:
    for suite in (
        Suite(KEM_IDS["X25519"], KDF_IDS["HKDF-SHA256"], AEAD_IDS["AES-256-GCM"]),
        Suite(KEM_IDS["ML-KEM-768"], KDF_IDS["SHAKE256"], AEAD_IDS["AES-256-GCM"]),
    ):
        with pytest.raises(UnsupportedAlgorithm):
            key_schedule(suite, bytes(32), b"")


@pytest.mark.parametrize(
    ("algorithm", "kdf"), [("X25519", None), ("ML-KEM-768", "SHAKE256"), ("P-384", None)]
)
def test_suites_left_to_pyca_still_round_trip_large(algorithm: str, kdf: str | None) -> None:
    private = _key(algorithm)
    plaintext = os.urandom(INTO_THRESHOLD + 5)
    sealed = seal(private.public_key(), plaintext, context=CONTEXT, kdf=kdf)
    assert open_sealed(private, memoryview(sealed), context=CONTEXT) == plaintext


def test_hpke_decrypt_reads_a_view_and_fails_opaquely() -> None:
    private = _key("X25519MLKEM768")
    sealed = seal(private.public_key(), b"x" * INTO_THRESHOLD)
    header = parse_header(sealed)
    suite = Suite(header.kem_id, header.kdf_id, header.aead_id)
    view = memoryview(sealed)[header.size :]
    assert hpke_decrypt(suite, private, view, sealed[: header.size]) == b"x" * INTO_THRESHOLD
    with pytest.raises(DecryptionError):
        hpke_decrypt(suite, private, view[:-1], sealed[: header.size])


# --------------------------------------------------------------------------- seal_after
@pytest.mark.parametrize("cipher_cls", [AESGCM, ChaCha20Poly1305])
@pytest.mark.parametrize("size", SIZES)
def test_seal_after_is_prefix_and_ciphertext(
    cipher_cls: type[AESGCM] | type[ChaCha20Poly1305], size: int
) -> None:
    cipher, nonce = cipher_cls(os.urandom(32)), os.urandom(12)
    plaintext = os.urandom(size)
    expected = b"head" + cipher.encrypt(nonce, plaintext, b"aad")
    for given in (plaintext, bytearray(plaintext), memoryview(plaintext)):
        sealed = seal_after(b"head", cipher, nonce, given, b"aad")
        assert type(sealed) is bytes
        assert sealed == expected


def test_seal_after_counts_bytes_of_wide_items() -> None:
    cipher, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    words = array.array("I", range(INTO_THRESHOLD // 2))  # 4-byte items
    sealed = seal_after(b"", cipher, nonce, memoryview(words), None)
    assert cipher.decrypt(nonce, sealed, None) == words.tobytes()


# --------------------------------------------------------------------------- every mode
def _modes() -> list[tuple[str, Any, Any]]:
    hpke_key, dem_key, sym_key = _key("X25519MLKEM768"), _key("ML-KEM-768"), os.urandom(32)
    return [
        (
            "hpke",
            lambda p, c: seal(hpke_key.public_key(), p, context=c),
            lambda e, c: open_sealed(hpke_key, e, context=c),
        ),
        (
            "kem-dem",
            lambda p, c: seal(dem_key.public_key(), p, context=c, mode=Mode.KEM_DEM),
            lambda e, c: open_sealed(dem_key, e, context=c),
        ),
        (
            "symmetric",
            lambda p, c: seal_symmetric(sym_key, p, context=c),
            lambda e, c: open_symmetric(sym_key, e, context=c),
        ),
        (
            "chacha",
            lambda p, c: seal_symmetric(sym_key, p, context=c, algorithm="ChaCha20-Poly1305"),
            lambda e, c: open_symmetric(sym_key, e, context=c),
        ),
    ]


MODES = ["hpke", "kem-dem", "symmetric", "chacha"]


def _mode(name: str) -> tuple[Any, Any]:
    for found, sealer, opener in _modes():
        if found == name:
            return sealer, opener
    raise AssertionError(name)


def _shapes(data: bytes) -> list[Any]:
    padded = b"...." + data + b"...."
    return [
        data,
        bytearray(data),
        memoryview(data),
        memoryview(padded)[4:-4],  # a view that does not start at its buffer's start
        memoryview(bytearray(data)),
    ]


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("size", [*SIZES, BIG])
def test_every_input_shape_round_trips(name: str, size: int) -> None:
    sealer, opener = _mode(name)
    plaintext = os.urandom(size)
    for given in _shapes(plaintext):
        sealed = sealer(given, memoryview(CONTEXT))
        assert type(sealed) is bytes
        for shape in _shapes(sealed):
            opened = opener(shape, bytearray(CONTEXT))
            assert type(opened) is bytes
            assert opened == plaintext


@pytest.mark.parametrize("name", MODES)
def test_plaintext_of_wide_items_is_sealed_as_its_bytes(name: str) -> None:
    sealer, opener = _mode(name)
    for count in (3, INTO_THRESHOLD):
        words = array.array("Q", range(count))
        assert opener(sealer(memoryview(words), CONTEXT), CONTEXT) == words.tobytes()
        assert opener(sealer(words, CONTEXT), CONTEXT) == words.tobytes()


@pytest.mark.parametrize("name", MODES)
def test_envelope_of_other_item_formats_is_read_as_its_bytes(name: str) -> None:
    sealer, opener = _mode(name)
    sealed = sealer(b"z" * INTO_THRESHOLD, CONTEXT)
    assert opener(memoryview(array.array("b", sealed)), CONTEXT) == b"z" * INTO_THRESHOLD
    padding = -len(sealed) % 8
    words = memoryview(array.array("Q", sealed + b"\x00" * padding))
    if padding:  # the padding is read as part of the body, which then fails
        with pytest.raises(DecryptionError):
            opener(words, CONTEXT)
    else:
        assert opener(words, CONTEXT) == b"z" * INTO_THRESHOLD


@pytest.mark.parametrize("name", MODES)
def test_callers_buffer_is_untouched_and_released(name: str) -> None:
    sealer, opener = _mode(name)
    plaintext = bytearray(os.urandom(INTO_THRESHOLD * 2))
    before = bytes(plaintext)
    sealed = bytearray(sealer(plaintext, CONTEXT))
    sealed_before = bytes(sealed)
    assert opener(sealed, CONTEXT) == before
    assert plaintext == before and sealed == sealed_before
    plaintext.extend(b"more")  # would raise BufferError while a view were still held
    sealed.extend(b"more")
    with pytest.raises(DecryptionError):
        opener(sealed, CONTEXT)


# --------------------------------------------------------------------------- tampering
@pytest.mark.parametrize("name", MODES)
def test_large_envelope_tampering_is_one_decryption_error(name: str) -> None:
    sealer, opener = _mode(name)
    sealed = sealer(os.urandom(BIG), CONTEXT)
    size = parse_header(sealed).size
    for at in (
        0,
        5,
        size - 1,
        size,
        size + 40,
        len(sealed) // 2,
        len(sealed) - 17,
        len(sealed) - 1,
    ):
        tampered = bytearray(sealed)
        tampered[at] ^= 0x01
        for shape in (bytes(tampered), tampered, memoryview(tampered)):
            with pytest.raises(DecryptionError):
                opener(shape, CONTEXT)
    for broken in (sealed[:-1], sealed + b"\x00", sealed[: size + 10], sealed[:size]):
        with pytest.raises(DecryptionError):
            opener(memoryview(broken), CONTEXT)
    with pytest.raises(DecryptionError):
        opener(sealed, CONTEXT + b"!")
    assert opener(sealed, CONTEXT) is not None
