"""Envelope v2: the HPKE suite in the header, draft-ietf-hpke-pq pairings, v1 still read.

* New envelopes record ``(kem_id, kdf_id, aead_id)``; ML-KEM-1024 and MLKEM1024-P384 use
  HKDF-SHA384 as draft-ietf-hpke-pq pairs them, and ML-KEM-512 has its HPKE KEM (0x0040).
* An independent HPKE implementation opens what ``seal`` writes and writes what
  ``open_sealed`` opens: pycryptodome's HPKE (which fixes the draft's KDF per KEM), and
  the RFC 9180 key schedule written out in ``test_hpke_vectors`` driven by the
  ``hpke-pq`` vectors' ``enc`` and ``shared_secret`` for every suite they cover that the
  envelope accepts.
* Envelope v1 bytes made by the previous code (``data/envelope_v1.json``) still open.
* Parsing is strict: a suite that the algorithm and mode do not accept is refused, and a
  ciphertext moved to another suite does not open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from Crypto.Protocol import HPKE as PycryptodomeHPKE
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from qrc.crypto import envelope, envelope_header
from qrc.crypto.base import KemPrivateKey
from qrc.crypto.envelope import Mode, open_sealed, parse_header, seal
from qrc.crypto.errors import DecryptionError, UnsupportedAlgorithm
from qrc.crypto.hpke_suite import AEAD_IDS, KDF_IDS, KEM_IDS, Suite, default_suite
from qrc.crypto.schemes import get_kem
from tests.crypto.test_hpke_vectors import HKDF_HASH, PYCA_KDF, _Rfc9180Schedule
from tests.vectors import load_json

CONTEXT = b"tenant=7;table=notes;row=42"
PLAINTEXT = b"Beauty is truth, truth beauty"
_KEYS: dict[str, KemPrivateKey] = {}


def _key(algorithm: str) -> KemPrivateKey:
    if algorithm not in _KEYS:
        _KEYS[algorithm] = get_kem(algorithm).generate()
    return _KEYS[algorithm]


def _suite(env: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(env[i : i + 2], "big") for i in (6, 8, 10))  # type: ignore[return-value]


def _v2_header(suite: tuple[int, int, int], algorithm: str, key_id: str, version: int) -> bytes:
    """An Envelope v2 HPKE header built from docs/formats.md, not from the code."""
    alg, kid = algorithm.encode(), key_id.encode()
    ids = b"".join(i.to_bytes(2, "big") for i in suite)
    return (
        b"QRCE\x02\x01" + ids + bytes([len(alg)]) + alg + bytes([len(kid)]) + kid
        + version.to_bytes(4, "big")
    )  # fmt: skip


# --------------------------------------------------------------------------- suites
@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("ML-KEM-512", (0x0040, 0x0001, 0x0002)),
        ("ML-KEM-768", (0x0041, 0x0001, 0x0002)),
        ("ML-KEM-1024", (0x0042, 0x0002, 0x0002)),
        ("X25519MLKEM768", (0x647A, 0x0001, 0x0002)),
        ("P384MLKEM1024", (0x0051, 0x0002, 0x0002)),
        ("X25519", (0x0020, 0x0001, 0x0002)),
        ("P-384", (0x0011, 0x0002, 0x0002)),
    ],
)
def test_new_envelopes_record_the_draft_suite(
    algorithm: str, expected: tuple[int, int, int]
) -> None:
    private = _key(algorithm)
    env = seal(private.public_key(), PLAINTEXT, context=CONTEXT)
    assert env[4] == 2 and env[5] == Mode.HPKE
    assert _suite(env) == expected == tuple(default_suite(algorithm))
    header = parse_header(env)
    assert (header.version, header.kem_id, header.kdf_id, header.aead_id) == (2, *expected)
    assert open_sealed(private, env, context=CONTEXT) == PLAINTEXT


@pytest.mark.parametrize("algorithm", ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"])
def test_pycryptodome_hpke_opens_and_writes_our_envelopes(algorithm: str) -> None:
    """pycryptodome's HPKE pairs each ML-KEM with the draft's KDF: no option to choose."""
    from Crypto.PublicKey import MLKEM

    private = _key(algorithm)
    param_set = {"ML-KEM-512": MLKEM.ML_KEM_512, "ML-KEM-768": MLKEM.ML_KEM_768}.get(
        algorithm, MLKEM.ML_KEM_1024
    )
    theirs = MLKEM.construct(param_set=param_set, seed=private.private_bytes())
    # ours -> theirs
    env = seal(private.public_key(), PLAINTEXT, context=CONTEXT, key_id="k")
    size = parse_header(env).size
    header, body = env[:size], env[size:]
    enc_size = get_kem(algorithm).info.ciphertext_size
    receiver = PycryptodomeHPKE.new(
        receiver_key=theirs,
        aead_id=PycryptodomeHPKE.AEAD.AES256_GCM,
        enc=body[:enc_size],
        info=header + CONTEXT,
    )
    assert receiver.unseal(body[enc_size:]) == PLAINTEXT
    # theirs -> ours
    sender = PycryptodomeHPKE.new(
        receiver_key=theirs.public_key(),
        aead_id=PycryptodomeHPKE.AEAD.AES256_GCM,
        info=header + CONTEXT,
    )
    forged = header + sender.enc + sender.seal(PLAINTEXT)
    assert open_sealed(private, forged, context=CONTEXT) == PLAINTEXT


@pytest.mark.parametrize("algorithm", ["ML-KEM-768", "X25519MLKEM768", "P-256"])
@pytest.mark.parametrize("kdf", sorted(KDF_IDS))
@pytest.mark.parametrize("aead", sorted(AEAD_IDS))
def test_every_accepted_suite_round_trips(algorithm: str, kdf: str, aead: str) -> None:
    private = _key(algorithm)
    env = seal(private.public_key(), PLAINTEXT, context=CONTEXT, kdf=kdf, aead=aead)
    assert _suite(env) == (KEM_IDS[algorithm], KDF_IDS[kdf], AEAD_IDS[aead])
    assert open_sealed(private, env, context=CONTEXT) == PLAINTEXT


@pytest.mark.parametrize("algorithm", ["ML-KEM-768", "ML-KEM-1024"])
def test_providers_open_each_others_envelopes(algorithm: str) -> None:
    seed = bytes(range(64))
    pyca = get_kem(algorithm, provider="pyca").load_private(seed)
    other = get_kem(algorithm, provider="pycryptodome").load_private(seed)
    for sender, receiver in ((pyca, other), (other, pyca)):
        env = seal(sender.public_key(), PLAINTEXT, context=CONTEXT)
        assert open_sealed(receiver, env, context=CONTEXT) == PLAINTEXT


def test_unaccepted_suites_are_refused_when_sealing() -> None:
    with pytest.raises(UnsupportedAlgorithm):  # pycryptodome fixes ML-KEM-512 to HKDF-SHA256
        seal(_key("ML-KEM-512").public_key(), b"", kdf="SHAKE256")
    with pytest.raises(UnsupportedAlgorithm):  # KEM-DEM: HKDF-SHA256/384 and AES-256-GCM
        seal(_key("ML-KEM-768").public_key(), b"", mode=Mode.KEM_DEM, aead="ChaCha20-Poly1305")
    with pytest.raises(UnsupportedAlgorithm):
        seal(_key("ML-KEM-768").public_key(), b"", mode=Mode.KEM_DEM, kdf="SHAKE128")
    with pytest.raises(UnsupportedAlgorithm):
        seal(_key("ML-KEM-768").public_key(), b"", kdf="HKDF-SHA1")


# --------------------------------------------------------------------------- strict parsing
def _rewrite(env: bytes, offset: int, value: int, size: int = 2) -> bytes:
    return env[:offset] + value.to_bytes(size, "big") + env[offset + size :]


@pytest.mark.parametrize(
    ("offset", "value", "size"),
    [
        (6, 0x0041, 2),  # kem_id of another KEM
        (6, 0x0000, 2),  # no KEM in HPKE mode
        (8, 0x0004, 2),  # unknown KDF
        (8, 0x0012, 2),  # TurboSHAKE128: not accepted
        (10, 0x0004, 2),  # unknown AEAD
        (10, 0xFFFF, 2),  # export-only
        (5, 0x03, 1),  # SYMMETRIC is not a v2 mode
        (4, 0x03, 1),  # unknown version
    ],
)
def test_headers_with_a_bad_suite_do_not_parse(offset: int, value: int, size: int) -> None:
    private = _key("ML-KEM-1024")
    env = seal(private.public_key(), PLAINTEXT, context=CONTEXT)
    forged = _rewrite(env, offset, value, size)
    with pytest.raises(DecryptionError):
        parse_header(forged)
    with pytest.raises(DecryptionError):
        open_sealed(private, forged, context=CONTEXT)


def test_ml_kem_512_with_another_kdf_does_not_parse() -> None:
    env = seal(_key("ML-KEM-512").public_key(), PLAINTEXT)
    with pytest.raises(DecryptionError):
        parse_header(_rewrite(env, 8, KDF_IDS["HKDF-SHA384"]))


@pytest.mark.parametrize("algorithm", ["ML-KEM-1024", "X25519MLKEM768", "HQC-256"])
def test_a_ciphertext_moved_to_another_suite_does_not_open(algorithm: str) -> None:
    """The suite is bound like the rest of the header: another accepted suite fails."""
    private = _key(algorithm)
    env = seal(private.public_key(), PLAINTEXT, context=CONTEXT)
    header = parse_header(env)
    others = (
        [(KDF_IDS["HKDF-SHA256"], header.aead_id), (header.kdf_id, AEAD_IDS["AES-128-GCM"])]
        if header.mode is Mode.HPKE
        else [(KDF_IDS["HKDF-SHA256"], header.aead_id)]
    )
    for kdf_id, aead_id in others:
        if (kdf_id, aead_id) == (header.kdf_id, header.aead_id):
            continue
        moved = _rewrite(_rewrite(env, 8, kdf_id), 10, aead_id)
        assert parse_header(moved).kdf_id == kdf_id  # well-formed, only the suite differs
        with pytest.raises(DecryptionError):
            open_sealed(private, moved, context=CONTEXT)


def test_kem_dem_v2_with_an_hpke_kem_records_its_kem_id() -> None:
    private = _key("ML-KEM-768")
    env = seal(private.public_key(), PLAINTEXT, mode=Mode.KEM_DEM)
    assert _suite(env) == (0x0041, 0x0001, 0x0002)
    with pytest.raises(DecryptionError):  # kem_id 0 is for KEMs without an HPKE KEM
        parse_header(_rewrite(env, 6, 0))
    assert Suite(*_suite(env)) == envelope_header._suite_for_seal(
        "ML-KEM-768", Mode.KEM_DEM, None, None
    )


# --------------------------------------------------------------------------- v1 still opens
def _v1_fixtures() -> list[dict[str, Any]]:
    path = Path(__file__).parent / "data" / "envelope_v1.json"
    return list(json.loads(path.read_text("utf-8"))["envelopes"])


@pytest.mark.parametrize(
    "fixture", _v1_fixtures(), ids=lambda f: f"{f['algorithm']}-mode{f['mode']}"
)
def test_v1_envelopes_of_the_previous_code_still_open(fixture: dict[str, Any]) -> None:
    env = bytes.fromhex(fixture["envelope"])
    key = bytes.fromhex(fixture["private_key"])
    context = bytes.fromhex(fixture["context"])
    header = parse_header(env)
    assert (header.version, header.mode, header.algorithm) == (
        1,
        fixture["mode"],
        fixture["algorithm"],
    )
    assert (header.key_id, header.key_version) == (fixture["key_id"], fixture["key_version"])
    if header.mode is Mode.SYMMETRIC:
        assert header.aead_id == AEAD_IDS[fixture["algorithm"]]
        opened = envelope.open_symmetric(key, env, context=context)
        with pytest.raises(DecryptionError):
            envelope.open_symmetric(key, env, context=context + b"!")
    else:
        assert (header.kdf_id, header.aead_id) == (0x0001, 0x0002)  # v1: HKDF-SHA256 always
        private = get_kem(fixture["algorithm"]).load_private(key)
        opened = open_sealed(private, env, context=context, key_id="fixture-key", key_version=3)
        for kwargs in ({"context": context + b"!"}, {"context": context, "key_version": 4}):
            with pytest.raises(DecryptionError):
                open_sealed(private, env, **kwargs)  # type: ignore[arg-type]
    assert opened == bytes.fromhex(fixture["plaintext"])


def test_v1_fixtures_cover_the_old_suites() -> None:
    kinds = {(f["algorithm"], f["mode"]) for f in _v1_fixtures()}
    assert {("ML-KEM-1024", 1), ("X25519MLKEM768", 1), ("ML-KEM-512", 2)} <= kinds


# --------------------------------------------------------------------------- hpke-pq vectors
VECTORS: list[dict[str, Any]] = load_json("hpke-pq/test-vectors.json")
ALGORITHM_OF = {kem_id: algorithm for algorithm, kem_id in KEM_IDS.items()}
AEAD_CLASSES: dict[int, tuple[Any, hpke.AEAD]] = {
    0x0001: (AESGCM, hpke.AEAD.AES_128_GCM),
    0x0002: (AESGCM, hpke.AEAD.AES_256_GCM),
    0x0003: (ChaCha20Poly1305, hpke.AEAD.CHACHA20_POLY1305),
}
_NAMES = {v: k for k, v in KDF_IDS.items()}, {v: k for k, v in AEAD_IDS.items()}


def _accepted(vector: dict[str, Any]) -> bool:
    algorithm = ALGORITHM_OF.get(vector["kem_id"])
    if algorithm is None:
        return False
    suite = Suite(vector["kem_id"], vector["kdf_id"], vector["aead_id"])
    return envelope_header._suite_accepted(algorithm, Mode.HPKE, suite)


COVERED = [v for v in VECTORS if _accepted(v)]


def _vid(vector: dict[str, Any]) -> str:
    return f"kem{vector['kem_id']:#06x}-kdf{vector['kdf_id']:#06x}-aead{vector['aead_id']:#06x}"


def test_vectors_cover_the_envelope_suites() -> None:
    suites = {(v["kem_id"], v["kdf_id"], v["aead_id"]) for v in COVERED}
    assert {
        (0x0040, 0x0001, 0x0001),  # ML-KEM-512
        (0x0041, 0x0001, 0x0001),  # ML-KEM-768
        (0x0042, 0x0002, 0x0002),  # ML-KEM-1024, HKDF-SHA384
        (0x647A, 0x0001, 0x0003),  # MLKEM768-X25519
        (0x0051, 0x0002, 0x0002),  # MLKEM1024-P384, HKDF-SHA384
        (0x647A, 0x0011, 0x0003),  # MLKEM768-X25519, SHAKE256
        (0x0010, 0x0010, 0x0001),  # DHKEM(P-256), SHAKE128
        (0x0011, 0x0011, 0x0002),  # DHKEM(P-384), SHAKE256
    } <= suites
    # What the envelope does not take: KEMs outside the registry (MLKEM768-P256, X448) and
    # the TurboSHAKE KDFs, which neither pyca nor pycryptodome implements.
    for vector in VECTORS:
        if vector not in COVERED:
            assert vector["kem_id"] in (0x0050, 0x0021) or vector["kdf_id"] in (0x0012, 0x0013)


def _vector_key(vector: dict[str, Any]) -> KemPrivateKey:
    algorithm = ALGORITHM_OF[vector["kem_id"]]
    private = get_kem(algorithm).load_private(bytes.fromhex(vector["skRm"]))
    assert private.public_key().public_bytes() == bytes.fromhex(vector["pkRm"])
    return private


def _independent_open(vector: dict[str, Any], private: KemPrivateKey, env: bytes) -> bytes:
    """Open ``env`` without the envelope code: the spec's layout, then RFC 9180 OpenBase."""
    size = parse_header(env).size  # the header's end follows from two length bytes
    header, body = env[:size], env[size:]
    enc_size = len(bytes.fromhex(vector["enc"]))
    info = header + CONTEXT
    if vector["kdf_id"] in HKDF_HASH:
        suite_id = bytes.fromhex(vector["suite_id"])  # "HPKE" || kem_id || kdf_id || aead_id
        cls = AEAD_CLASSES[vector["aead_id"]][0]
        nk = 16 if vector["aead_id"] == 0x0001 else 32
        shared = private.decapsulate(body[:enc_size])
        key, nonce, _ = _Rfc9180Schedule(suite_id, HKDF_HASH[vector["kdf_id"]]).run(
            shared, info, nk
        )
        return bytes(cls(key).decrypt(nonce, body[enc_size:], b""))
    # Single-stage SHAKE KDFs: pyca's HPKE, which test_hpke_vectors checks on these vectors.
    pyca_suite = hpke.Suite(
        _pyca_kem(vector["kem_id"]), PYCA_KDF[vector["kdf_id"]], AEAD_CLASSES[vector["aead_id"]][1]
    )
    convert = getattr(private, "to_hpke", None) or private.to_pyca  # type: ignore[attr-defined]
    return bytes(pyca_suite.decrypt(body, convert(), info=info))


def _pyca_kem(kem_id: int) -> hpke.KEM:
    return {
        0x0041: hpke.KEM.MLKEM768,
        0x0042: hpke.KEM.MLKEM1024,
        0x647A: hpke.KEM.MLKEM768_X25519,
        0x0051: hpke.KEM.MLKEM1024_P384,
        0x0010: hpke.KEM.P256,
        0x0011: hpke.KEM.P384,
        0x0020: hpke.KEM.X25519,
    }[kem_id]


@pytest.mark.vectors
@pytest.mark.parametrize("vector", COVERED, ids=_vid)
def test_open_sealed_opens_what_an_independent_sender_writes(vector: dict[str, Any]) -> None:
    """The vector's enc and shared secret, our header as info: RFC 9180 SealBase by hand."""
    private = _vector_key(vector)
    algorithm = ALGORITHM_OF[vector["kem_id"]]
    suite = (vector["kem_id"], vector["kdf_id"], vector["aead_id"])
    header = _v2_header(suite, algorithm, "vector-key", 9)
    enc, shared = bytes.fromhex(vector["enc"]), bytes.fromhex(vector["shared_secret"])
    assert private.decapsulate(enc) == shared
    if vector["kdf_id"] not in HKDF_HASH:
        # SHAKE KDFs: the sender is pyca's HPKE (its enc is fresh, not the vector's).
        pyca_suite = hpke.Suite(
            _pyca_kem(vector["kem_id"]), PYCA_KDF[vector["kdf_id"]], AEAD_CLASSES[suite[2]][1]
        )
        convert = getattr(private.public_key(), "to_hpke", None) or private.public_key().to_pyca  # type: ignore[attr-defined]
        env = header + pyca_suite.encrypt(PLAINTEXT, convert(), info=header + CONTEXT)
    else:
        cls, _ = AEAD_CLASSES[vector["aead_id"]]
        nk = 16 if vector["aead_id"] == 0x0001 else 32
        suite_id = bytes.fromhex(vector["suite_id"])
        schedule = _Rfc9180Schedule(suite_id, HKDF_HASH[vector["kdf_id"]])
        key, nonce, _ = schedule.run(shared, header + CONTEXT, nk)
        env = header + enc + cls(key).encrypt(nonce, PLAINTEXT, b"")
    assert open_sealed(private, env, context=CONTEXT, key_id="vector-key", key_version=9) == (
        PLAINTEXT
    )
    for kwargs in ({"context": b""}, {"context": CONTEXT, "key_version": 8}):
        with pytest.raises(DecryptionError):
            open_sealed(private, env, **kwargs)  # type: ignore[arg-type]


@pytest.mark.vectors
@pytest.mark.parametrize("vector", COVERED, ids=_vid)
def test_seal_writes_what_an_independent_receiver_opens(vector: dict[str, Any]) -> None:
    private = _vector_key(vector)
    kdf, aead = _NAMES[0][vector["kdf_id"]], _NAMES[1][vector["aead_id"]]
    public = get_kem(ALGORITHM_OF[vector["kem_id"]]).load_public(bytes.fromhex(vector["pkRm"]))
    env = seal(public, PLAINTEXT, context=CONTEXT, kdf=kdf, aead=aead)
    assert _suite(env) == (vector["kem_id"], vector["kdf_id"], vector["aead_id"])
    assert _independent_open(vector, private, env) == PLAINTEXT
    assert open_sealed(private, env, context=CONTEXT) == PLAINTEXT
