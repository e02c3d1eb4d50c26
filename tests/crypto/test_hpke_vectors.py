"""draft-ietf-hpke-pq vectors: our hybrid KEMs, pyca's ML-KEM and HPKE, RFC 9180 schedule.

For each vector whose KEM pyca or :mod:`qrc.crypto.hybrid` implements: ``skRm`` derives
from ``ikmR``; the key loaded from ``skRm`` has public key ``pkRm``; decapsulating ``enc``
gives ``shared_secret``, and so does encapsulating to ``pkRm`` with randomness ``ikmE``.
For the HKDF suites the RFC 9180 key schedule (written out below from the RFC) turns that
secret into the vector's ``key``, ``base_nonce`` and ``exporter_secret`` and the exports;
every ``encryptions`` entry then opens with ``key`` and the sequence's nonce. pyca's HPKE,
which only runs sequence number 0, must open the first encryption with our key's
``to_hpke()`` (this covers the SHAKE suites, whose single-stage schedule is not
reimplemented here).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from qrc.crypto.hybrid import SCHEMES, HybridPrivateKey, _derandomized_encapsulate_for_tests
from tests.crypto.mlkem_kat import encaps_internal
from tests.vectors import load_json

VECTORS: list[dict[str, Any]] = load_json("hpke-pq/test-vectors.json")

# kem_id -> (name, hybrid algorithm ID or pyca ML-KEM class, pyca hpke.KEM)
KEMS: dict[int, tuple[str, Any, hpke.KEM]] = {
    0x0041: ("ML-KEM-768", mlkem.MLKEM768PrivateKey, hpke.KEM.MLKEM768),
    0x0042: ("ML-KEM-1024", mlkem.MLKEM1024PrivateKey, hpke.KEM.MLKEM1024),
    0x647A: ("MLKEM768-X25519", "X25519MLKEM768", hpke.KEM.MLKEM768_X25519),
    0x0051: ("MLKEM1024-P384", "P384MLKEM1024", hpke.KEM.MLKEM1024_P384),
}
# RFC 9180 / draft-ietf-hpke-pq KDF ids: HKDF hash name, or None for the SHAKE KDFs
HKDF_HASH = {0x0001: "sha256", 0x0002: "sha384", 0x0003: "sha512"}
PYCA_KDF = {
    0x0001: hpke.KDF.HKDF_SHA256,
    0x0002: hpke.KDF.HKDF_SHA384,
    0x0003: hpke.KDF.HKDF_SHA512,
    0x0010: hpke.KDF.SHAKE128,
    0x0011: hpke.KDF.SHAKE256,
}
# aead_id -> (pyca class, Nk, pyca hpke.AEAD)
AEADS: dict[int, tuple[Any, int, hpke.AEAD]] = {
    0x0001: (AESGCM, 16, hpke.AEAD.AES_128_GCM),
    0x0002: (AESGCM, 32, hpke.AEAD.AES_256_GCM),
    0x0003: (ChaCha20Poly1305, 32, hpke.AEAD.CHACHA20_POLY1305),
}
NONCE_SIZE = 12

SUPPORTED = [v for v in VECTORS if v["kem_id"] in KEMS and v["kdf_id"] in PYCA_KDF]


def _id(vector: dict[str, Any]) -> str:
    return f"{KEMS[vector['kem_id']][0]}-kdf{vector['kdf_id']:#06x}-aead{vector['aead_id']}"


def _b(vector: dict[str, Any], field: str) -> bytes:
    return bytes.fromhex(vector[field])


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def _shake256_labeled_derive(kem_id: int, ikm: bytes, label: bytes, length: int) -> bytes:
    """SHAKE256.LabeledDerive of draft-ietf-hpke-pq, with the KEM suite ID and no context."""
    suite_id = b"KEM" + _i2osp(kem_id, 2)
    labeled = ikm + b"HPKE-v1" + suite_id + _i2osp(len(label), 2) + label + _i2osp(length, 2)
    return hashlib.shake_256(labeled).digest(length)


class _Rfc9180Schedule:
    """KeySchedule of RFC 9180 §5.1 in base mode (empty PSK), with an HKDF."""

    def __init__(self, suite_id: bytes, hash_name: str) -> None:
        self.suite_id, self.hash_name = suite_id, hash_name
        self.nh = hashlib.new(hash_name).digest_size

    def labeled_extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        message = b"HPKE-v1" + self.suite_id + label + ikm
        return hmac.new(salt or bytes(self.nh), message, self.hash_name).digest()

    def labeled_expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        labeled_info = _i2osp(length, 2) + b"HPKE-v1" + self.suite_id + label + info
        out, block, counter = b"", b"", 1
        while len(out) < length:  # HKDF-Expand, RFC 5869 §2.3
            block = hmac.new(prk, block + labeled_info + bytes([counter]), self.hash_name).digest()
            out += block
            counter += 1
        return out[:length]

    def run(self, shared_secret: bytes, info: bytes, nk: int) -> tuple[bytes, bytes, bytes]:
        """Return ``(key, base_nonce, exporter_secret)``."""
        psk_id_hash = self.labeled_extract(b"", b"psk_id_hash", b"")
        info_hash = self.labeled_extract(b"", b"info_hash", info)
        context = b"\x00" + psk_id_hash + info_hash  # mode_base = 0
        secret = self.labeled_extract(shared_secret, b"secret", b"")
        return (
            self.labeled_expand(secret, b"key", context, nk),
            self.labeled_expand(secret, b"base_nonce", context, NONCE_SIZE),
            self.labeled_expand(secret, b"exp", context, self.nh),
        )


def _load_private(vector: dict[str, Any]) -> tuple[Any, bytes]:
    """The pyca HPKE private key for ``skRm`` and the public key bytes it implies."""
    _, impl, _ = KEMS[vector["kem_id"]]
    if isinstance(impl, str):
        private = SCHEMES[impl]().load_private(_b(vector, "skRm"))
        assert isinstance(private, HybridPrivateKey)
        return private.to_hpke(), private.public_key().public_bytes()
    key = impl.from_seed_bytes(_b(vector, "skRm"))
    return key, bytes(key.public_key().public_bytes_raw())


def _decapsulate(vector: dict[str, Any]) -> bytes:
    _, impl, _ = KEMS[vector["kem_id"]]
    if isinstance(impl, str):
        return SCHEMES[impl]().load_private(_b(vector, "skRm")).decapsulate(_b(vector, "enc"))
    return bytes(impl.from_seed_bytes(_b(vector, "skRm")).decapsulate(_b(vector, "enc")))


def test_vector_file_covers_the_hybrids() -> None:
    kems = {v["kem_id"] for v in SUPPORTED}
    assert {0x647A, 0x0051, 0x0041, 0x0042} <= kems


@pytest.mark.parametrize("vector", SUPPORTED, ids=_id)
def test_derive_key_pair_and_public_key(vector: dict[str, Any]) -> None:
    sk = _b(vector, "skRm")
    derived = _shake256_labeled_derive(
        vector["kem_id"], _b(vector, "ikmR"), b"DeriveKeyPair", len(sk)
    )
    assert derived == sk
    _, public = _load_private(vector)
    assert public == _b(vector, "pkRm")


@pytest.mark.parametrize("vector", SUPPORTED, ids=_id)
def test_decapsulation_gives_the_shared_secret(vector: dict[str, Any]) -> None:
    assert _decapsulate(vector) == _b(vector, "shared_secret")


@pytest.mark.parametrize("vector", SUPPORTED, ids=_id)
def test_every_encryption_opens_with_the_vector_key_and_nonces(vector: dict[str, Any]) -> None:
    cls, nk, _ = AEADS[vector["aead_id"]]
    key, base_nonce = _b(vector, "key"), _b(vector, "base_nonce")
    assert len(key) == nk
    aead = cls(key)
    for seq, entry in enumerate(vector["encryptions"]):
        # RFC 9180 §5.2: nonce = base_nonce XOR I2OSP(seq, Nn)
        nonce = bytes(a ^ b for a, b in zip(base_nonce, _i2osp(seq, NONCE_SIZE), strict=True))
        assert nonce == bytes.fromhex(entry["nonce"])
        plain = aead.decrypt(nonce, bytes.fromhex(entry["ct"]), bytes.fromhex(entry["aad"]))
        assert plain == bytes.fromhex(entry["pt"])


HKDF_VECTORS = [v for v in SUPPORTED if v["kdf_id"] in HKDF_HASH]


@pytest.mark.parametrize("vector", HKDF_VECTORS, ids=_id)
def test_rfc9180_key_schedule_from_the_shared_secret(vector: dict[str, Any]) -> None:
    suite_id = b"HPKE" + b"".join(_i2osp(vector[k], 2) for k in ("kem_id", "kdf_id", "aead_id"))
    assert suite_id == _b(vector, "suite_id")
    schedule = _Rfc9180Schedule(suite_id, HKDF_HASH[vector["kdf_id"]])
    nk = AEADS[vector["aead_id"]][1]
    key, base_nonce, exporter = schedule.run(_decapsulate(vector), _b(vector, "info"), nk)
    assert (key, base_nonce, exporter) == (
        _b(vector, "key"),
        _b(vector, "base_nonce"),
        _b(vector, "exporter_secret"),
    )
    for export in vector["exports"]:  # RFC 9180 §5.3: LabeledExpand(exp, "sec", ctx, L)
        context = bytes.fromhex(export["exporter_context"])
        value = schedule.labeled_expand(exporter, b"sec", context, export["L"])
        assert value == bytes.fromhex(export["exported_value"])


@pytest.mark.parametrize("vector", SUPPORTED, ids=_id)
def test_pyca_hpke_opens_the_first_encryption_with_our_key(vector: dict[str, Any]) -> None:
    # pyca's public API has no AAD argument and always uses sequence number 0; its
    # internal ``_decrypt_with_aad`` does take the AAD the vectors use.
    decrypt_with_aad = getattr(hpke.rust_openssl.hpke, "_decrypt_with_aad", None)
    if decrypt_with_aad is None:
        pytest.skip("this pyca has no _decrypt_with_aad")
    _, _, kem = KEMS[vector["kem_id"]]
    suite = hpke.Suite(kem, PYCA_KDF[vector["kdf_id"]], AEADS[vector["aead_id"]][2])
    private, _ = _load_private(vector)
    first = vector["encryptions"][0]
    sealed = _b(vector, "enc") + bytes.fromhex(first["ct"])
    aad = bytes.fromhex(first["aad"])
    opened = decrypt_with_aad(suite, sealed, private, info=_b(vector, "info"), aad=aad)
    assert opened == bytes.fromhex(first["pt"])


@pytest.mark.parametrize("vector", SUPPORTED, ids=_id)
def test_derandomized_encapsulation_with_ikm_e(vector: dict[str, Any]) -> None:
    # ikmE is the encapsulation randomness itself (Nrandom bytes: 32 for ML-KEM, 64 for
    # MLKEM768-X25519, 80 for MLKEM1024-P384).
    _, impl, _ = KEMS[vector["kem_id"]]
    expected = (_b(vector, "enc"), _b(vector, "shared_secret"))
    if isinstance(impl, str):
        public = SCHEMES[impl]().load_public(_b(vector, "pkRm"))
        got = _derandomized_encapsulate_for_tests(public, _b(vector, "ikmE"), encaps_internal)
    else:
        got = encaps_internal(_b(vector, "pkRm"), _b(vector, "ikmE"))
    assert got == expected
