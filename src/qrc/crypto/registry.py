"""The algorithm registry: one stable ID per algorithm, with what is known about it.

The registry is metadata only (no implementation imports), so that the inventory, the
API's algorithm status and policy checks can read it cheaply. Implementations are reached
through :mod:`qrc.crypto.schemes`, keyed by the same IDs.

Sizes are in bytes. ``private_key_size`` is the size of the standard *raw* private key
encoding that :meth:`private_bytes` returns: the FIPS 203 64-byte seed for ML-KEM, the
FIPS 204 32-byte seed for ML-DSA, the 32-byte seed for X-Wing, the FIPS 205 key for
SLH-DSA, the reference implementation's secret key for HQC (which begins with the public
key), and the reference secret key followed by the public key for Classic McEliece (whose
reference secret key does not contain it).
Signature sizes of ECDSA (DER) and composites that contain ECDSA are maxima.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from qrc.crypto.errors import UnsupportedAlgorithm

__all__ = [
    "BUILT_IN_STATUS",
    "REGISTRY",
    "AlgorithmInfo",
    "Family",
    "Kind",
    "Status",
    "all_algorithms",
    "get_info",
    "set_status",
]


class Kind(enum.StrEnum):
    """What an algorithm does."""

    KEM = "kem"
    SIGNATURE = "signature"
    AEAD = "aead"


class Family(enum.StrEnum):
    """The hard problem (or construction) an algorithm's security rests on."""

    LATTICE = "lattice"
    CODE = "code"
    HASH = "hash"
    CLASSICAL = "classical"
    HYBRID = "hybrid"
    SYMMETRIC = "symmetric"


class Status(enum.StrEnum):
    """Whether an algorithm may be used for new keys and operations.

    ``active``: recommended. ``experimental``: usable, not yet a final standard.
    ``deprecated``: existing data may be processed, new keys are refused by policy.
    ``disallowed``: no operation at all.
    """

    ACTIVE = "active"
    EXPERIMENTAL = "experimental"
    DEPRECATED = "deprecated"
    DISALLOWED = "disallowed"


@dataclass(frozen=True, slots=True)
class AlgorithmInfo:
    """What the registry knows about one algorithm."""

    id: str
    kind: Kind
    family: Family
    nist_level: int | None
    standard: str
    status: Status
    provider: str
    public_key_size: int = 0
    private_key_size: int = 0
    ciphertext_size: int = 0
    shared_secret_size: int = 0
    signature_size: int = 0
    oid: str | None = None
    hpke_kem: str | None = None
    quantum_safe: bool = True
    description: str = ""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (used by ``qrc algorithms --json`` and the API)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "family": self.family.value,
            "nist_level": self.nist_level,
            "standard": self.standard,
            "status": self.status.value,
            "provider": self.provider,
            "quantum_safe": self.quantum_safe,
            "public_key_size": self.public_key_size,
            "private_key_size": self.private_key_size,
            "ciphertext_size": self.ciphertext_size,
            "shared_secret_size": self.shared_secret_size,
            "signature_size": self.signature_size,
            "oid": self.oid,
            "hpke_kem": self.hpke_kem,
            "description": self.description,
        }


_NIST_KEM = "2.16.840.1.101.3.4.4."
_NIST_SIG = "2.16.840.1.101.3.4.3."
_COMPOSITE = "1.3.6.1.5.5.7.6."


def _kem(
    id: str,
    family: Family,
    level: int | None,
    standard: str,
    status: Status,
    provider: str,
    sizes: tuple[int, int, int, int],
    **extra: object,
) -> AlgorithmInfo:
    pk, sk, ct, ss = sizes
    return AlgorithmInfo(
        id,
        Kind.KEM,
        family,
        level,
        standard,
        status,
        provider,
        public_key_size=pk,
        private_key_size=sk,
        ciphertext_size=ct,
        shared_secret_size=ss,
        **extra,  # type: ignore[arg-type]
    )


def _sig(
    id: str,
    family: Family,
    level: int | None,
    standard: str,
    status: Status,
    provider: str,
    sizes: tuple[int, int, int],
    **extra: object,
) -> AlgorithmInfo:
    pk, sk, sig = sizes
    return AlgorithmInfo(
        id,
        Kind.SIGNATURE,
        family,
        level,
        standard,
        status,
        provider,
        public_key_size=pk,
        private_key_size=sk,
        signature_size=sig,
        **extra,  # type: ignore[arg-type]
    )


A, E, D = Status.ACTIVE, Status.EXPERIMENTAL, Status.DEPRECATED
_MCELIECE = {
    # id suffix: (public key, secret key, ciphertext, NIST category)
    "348864": (261120, 6492, 96, 1),
    "460896": (524160, 13608, 156, 3),
    "6688128": (1044992, 13932, 208, 5),
    "6960119": (1047319, 13948, 194, 5),
    "8192128": (1357824, 14120, 208, 5),
}
_SLH = {
    # parameter: (public key, secret key, signature, NIST category)
    "128s": (32, 64, 7856, 1),
    "128f": (32, 64, 17088, 1),
    "192s": (48, 96, 16224, 3),
    "192f": (48, 96, 35664, 3),
    "256s": (64, 128, 29792, 5),
    "256f": (64, 128, 49856, 5),
}
_SLH_OID = {
    "SHA2-128s": 20, "SHA2-128f": 21, "SHA2-192s": 22, "SHA2-192f": 23,
    "SHA2-256s": 24, "SHA2-256f": 25, "SHAKE-128s": 26, "SHAKE-128f": 27,
    "SHAKE-192s": 28, "SHAKE-192f": 29, "SHAKE-256s": 30, "SHAKE-256f": 31,
}  # fmt: skip


def _build() -> dict[str, AlgorithmInfo]:
    lat, code, hsh = Family.LATTICE, Family.CODE, Family.HASH
    cls, hyb = Family.CLASSICAL, Family.HYBRID
    items: list[AlgorithmInfo] = [
        # --- KEMs: lattice (FIPS 203) ---
        _kem(
            "ML-KEM-512",
            lat,
            1,
            "FIPS 203",
            A,
            "pycryptodome",
            (800, 64, 768, 32),
            oid=_NIST_KEM + "1",
            hpke_kem="ML-KEM-512",
        ),
        _kem(
            "ML-KEM-768",
            lat,
            3,
            "FIPS 203",
            A,
            "pyca",
            (1184, 64, 1088, 32),
            oid=_NIST_KEM + "2",
            hpke_kem="ML-KEM-768",
        ),
        _kem(
            "ML-KEM-1024",
            lat,
            5,
            "FIPS 203",
            A,
            "pyca",
            (1568, 64, 1568, 32),
            oid=_NIST_KEM + "3",
            hpke_kem="ML-KEM-1024",
        ),
        # --- KEMs: hybrid ---
        _kem(
            "X25519MLKEM768",
            hyb,
            3,
            "draft-connolly-cfrg-xwing-kem (X-Wing); draft-ietf-hpke-pq MLKEM768-X25519",
            A,
            "qrc",
            (1216, 32, 1120, 32),
            oid="1.3.6.1.4.1.62253.25722",
            hpke_kem="MLKEM768-X25519",
            description="X-Wing: X25519 + ML-KEM-768, the default for encryption",
        ),
        _kem(
            "P384MLKEM1024",
            hyb,
            5,
            "draft-ietf-hpke-pq MLKEM1024-P384",
            A,
            "qrc",
            (1665, 32, 1665, 32),
            hpke_kem="MLKEM1024-P384",
            description="P-384 + ML-KEM-1024 (CNSA 2.0 style pairing)",
        ),
        # --- KEMs: code-based ---
        _kem(
            "HQC-128",
            code,
            1,
            "HQC (NIST selection, March 2025; FIPS draft pending)",
            E,
            "pqcrypto",
            (2241, 2321, 4433, 32),
        ),
        _kem(
            "HQC-192",
            code,
            3,
            "HQC (NIST selection, March 2025; FIPS draft pending)",
            E,
            "pqcrypto",
            (4514, 4602, 8978, 32),
        ),
        _kem(
            "HQC-256",
            code,
            5,
            "HQC (NIST selection, March 2025; FIPS draft pending)",
            E,
            "pqcrypto",
            (7237, 7333, 14421, 32),
        ),
    ]
    for name, (pk, sk, ct, level) in _MCELIECE.items():
        for suffix in ("", "f"):
            items.append(
                _kem(
                    f"Classic-McEliece-{name}{suffix}",
                    code,
                    level,
                    "Classic McEliece (NIST round 4; ISO/IEC 18033-2 amendment)",
                    E,
                    "pqcrypto",
                    (pk, sk + pk, ct, 32),
                )
            )
    items += [
        # --- KEMs: classical, for hybrids and inventory (DHKEM, RFC 9180) ---
        _kem(
            "X25519",
            cls,
            None,
            "RFC 7748; DHKEM RFC 9180",
            D,
            "pyca",
            (32, 32, 32, 32),
            oid="1.3.101.110",
            quantum_safe=False,
            hpke_kem="DHKEM(X25519, HKDF-SHA256)",
        ),
        _kem(
            "P-256",
            cls,
            None,
            "FIPS 186-5; DHKEM RFC 9180",
            D,
            "pyca",
            (65, 32, 65, 32),
            oid="1.2.840.10045.3.1.7",
            quantum_safe=False,
            hpke_kem="DHKEM(P-256, HKDF-SHA256)",
        ),
        _kem(
            "P-384",
            cls,
            None,
            "FIPS 186-5; DHKEM RFC 9180",
            D,
            "pyca",
            (97, 48, 97, 48),
            oid="1.3.132.0.34",
            quantum_safe=False,
            hpke_kem="DHKEM(P-384, HKDF-SHA384)",
        ),
        # --- Signatures: lattice (FIPS 204) ---
        _sig("ML-DSA-44", lat, 2, "FIPS 204", A, "pyca", (1312, 32, 2420), oid=_NIST_SIG + "17"),
        _sig("ML-DSA-65", lat, 3, "FIPS 204", A, "pyca", (1952, 32, 3309), oid=_NIST_SIG + "18"),
        _sig("ML-DSA-87", lat, 5, "FIPS 204", A, "pyca", (2592, 32, 4627), oid=_NIST_SIG + "19"),
    ]
    for hash_name in ("SHA2", "SHAKE"):
        for param, (pk, sk, sig, level) in _SLH.items():
            alg = f"{hash_name}-{param}"
            items.append(
                _sig(
                    f"SLH-DSA-{alg}",
                    hsh,
                    level,
                    "FIPS 205",
                    A,
                    "pqcrypto",
                    (pk, sk, sig),
                    oid=_NIST_SIG + str(_SLH_OID[alg]),
                )
            )
    items += [
        # --- Signatures: composite ML-DSA (draft-ietf-lamps-pq-composite-sigs) ---
        _sig("MLDSA44-Ed25519-SHA512", hyb, 2, "draft-ietf-lamps-pq-composite-sigs", A, "qrc",
             (1312 + 32, 32 + 32, 2420 + 64), oid=_COMPOSITE + "39"),
        _sig("MLDSA65-Ed25519-SHA512", hyb, 3, "draft-ietf-lamps-pq-composite-sigs", A, "qrc",
             (1952 + 32, 32 + 32, 3309 + 64), oid=_COMPOSITE + "48",
             description="ML-DSA-65 + Ed25519, the default for signing"),
        _sig("MLDSA65-ECDSA-P256-SHA512", hyb, 3, "draft-ietf-lamps-pq-composite-sigs", A,
             "qrc", (1952 + 65, 32 + 51, 3309 + 72), oid=_COMPOSITE + "45"),
        _sig("MLDSA87-ECDSA-P384-SHA512", hyb, 5, "draft-ietf-lamps-pq-composite-sigs", A,
             "qrc", (2592 + 97, 32 + 64, 4627 + 104), oid=_COMPOSITE + "49"),
        # --- Signatures: classical, for hybrids and inventory ---
        _sig("Ed25519", cls, None, "RFC 8032; FIPS 186-5", D, "pyca", (32, 32, 64),
             oid="1.3.101.112", quantum_safe=False),
        _sig("ECDSA-P256", cls, None, "FIPS 186-5 (SHA-256)", D, "pyca", (65, 32, 72),
             oid="1.2.840.10045.4.3.2", quantum_safe=False),
        _sig("ECDSA-P384", cls, None, "FIPS 186-5 (SHA-384)", D, "pyca", (97, 48, 104),
             oid="1.2.840.10045.4.3.3", quantum_safe=False),
        # --- AEADs (256-bit keys: 128-bit security against Grover) ---
        AlgorithmInfo("AES-256-GCM", Kind.AEAD, Family.SYMMETRIC, 5, "FIPS 197; SP 800-38D",
                      A, "pyca", private_key_size=32),
        AlgorithmInfo("ChaCha20-Poly1305", Kind.AEAD, Family.SYMMETRIC, 5, "RFC 8439", A,
                      "pyca", private_key_size=32),
    ]  # fmt: skip
    return {info.id: info for info in items}


REGISTRY: dict[str, AlgorithmInfo] = _build()
# The statuses the registry ships with, before any policy: what a policy falls back to.
BUILT_IN_STATUS: Mapping[str, Status] = MappingProxyType(
    {info.id: info.status for info in REGISTRY.values()}
)
_BY_FOLDED_ID = {key.casefold(): key for key in REGISTRY}


def get_info(algorithm: str, kind: Kind | None = None) -> AlgorithmInfo:
    """Return the registry entry for ``algorithm`` (IDs match case-insensitively).

    Raises:
        UnsupportedAlgorithm: no such ID, or it is not of ``kind``.
    """
    key = _BY_FOLDED_ID.get(algorithm.casefold())
    if key is None:
        raise UnsupportedAlgorithm(f"unknown algorithm {algorithm!r}; see `qrc algorithms`")
    info = REGISTRY[key]
    if kind is not None and info.kind is not kind:
        raise UnsupportedAlgorithm(f"{info.id} is a {info.kind.value}, not a {kind.value}")
    return info


def all_algorithms(kind: Kind | None = None) -> list[AlgorithmInfo]:
    """Every registered algorithm (optionally of one kind), in registry order."""
    return [info for info in REGISTRY.values() if kind is None or info.kind is kind]


def set_status(algorithm: str, status: Status) -> AlgorithmInfo:
    """Change an algorithm's status, returning the new entry.

    In the key service only :class:`qrc.keys.policy.AlgorithmPolicy` calls this, so that
    one owner decides (a self-test failure, for one, must not be undone by a policy update).
    """
    info = get_info(algorithm)
    REGISTRY[info.id] = new = replace(info, status=status)
    return new
