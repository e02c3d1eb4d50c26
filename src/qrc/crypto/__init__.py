"""``qrc.crypto``: post-quantum algorithms, hybrids, envelopes and self-tests. Pure: no I/O.

The safe, high-level layer is what this package exports:

* :func:`get_kem`, :func:`get_signature`, :func:`get_aead` — an algorithm by registry ID;
* :func:`generate_private_key` — a key pair, checked pairwise before it is returned;
* :func:`seal` / :func:`open_sealed` (and the symmetric pair) — the encryption envelope;
* :func:`sign_bundle` / :func:`verify_bundle` — self-describing signatures;
* the key file functions of :mod:`qrc.crypto.keyfile` (PKCS#8 / SPKI PEM);
* :func:`run_selftests` — the power-on known-answer tests.

Everything below (``backends``, ``der``, ``gf256``) is the hazardous layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load on first use (PEP 562): `import qrc.crypto` is cheap
    from qrc.crypto.base import (
        AEAD,
        KEM,
        KemPrivateKey,
        KemPublicKey,
        SignatureScheme,
        SigningKey,
        VerifyingKey,
    )
    from qrc.crypto.bundle import sign_bundle, verify_bundle
    from qrc.crypto.envelope import (
        EnvelopeHeader,
        open_sealed,
        open_symmetric,
        parse_header,
        seal,
        seal_symmetric,
    )
    from qrc.crypto.errors import (
        AlgorithmNotAllowed,
        CryptoError,
        DecryptionError,
        InvalidSignature,
        KeyFormatError,
        SelfTestFailure,
        UnsupportedAlgorithm,
    )
    from qrc.crypto.keyfile import (
        load_private_pem,
        load_public_pem,
        private_key_to_pem,
        public_key_to_pem,
    )
    from qrc.crypto.registry import AlgorithmInfo, Family, Kind, Status, all_algorithms, get_info
    from qrc.crypto.schemes import get_aead, get_kem, get_signature
    from qrc.crypto.selftest import generate_private_key, run_selftests

__all__ = [
    "AEAD",
    "KEM",
    "AlgorithmInfo",
    "AlgorithmNotAllowed",
    "CryptoError",
    "DecryptionError",
    "EnvelopeHeader",
    "Family",
    "InvalidSignature",
    "KemPrivateKey",
    "KemPublicKey",
    "KeyFormatError",
    "Kind",
    "SelfTestFailure",
    "SignatureScheme",
    "SigningKey",
    "Status",
    "UnsupportedAlgorithm",
    "VerifyingKey",
    "all_algorithms",
    "generate_private_key",
    "get_aead",
    "get_info",
    "get_kem",
    "get_signature",
    "load_private_pem",
    "load_public_pem",
    "open_sealed",
    "open_symmetric",
    "parse_header",
    "private_key_to_pem",
    "public_key_to_pem",
    "run_selftests",
    "seal",
    "seal_symmetric",
    "sign_bundle",
    "verify_bundle",
]

# Where each exported name lives: a command that only encrypts does not load the self-tests,
# signature bundles or every scheme because it imported one name from this package.
_MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "qrc.crypto.base",
        (
            "AEAD",
            "KEM",
            "KemPrivateKey",
            "KemPublicKey",
            "SignatureScheme",
            "SigningKey",
            "VerifyingKey",
        ),
    ),
    ("qrc.crypto.bundle", ("sign_bundle", "verify_bundle")),
    (
        "qrc.crypto.envelope",
        (
            "EnvelopeHeader",
            "open_sealed",
            "open_symmetric",
            "parse_header",
            "seal",
            "seal_symmetric",
        ),
    ),
    (
        "qrc.crypto.errors",
        (
            "AlgorithmNotAllowed",
            "CryptoError",
            "DecryptionError",
            "InvalidSignature",
            "KeyFormatError",
            "SelfTestFailure",
            "UnsupportedAlgorithm",
        ),
    ),
    (
        "qrc.crypto.keyfile",
        ("load_private_pem", "load_public_pem", "private_key_to_pem", "public_key_to_pem"),
    ),
    (
        "qrc.crypto.registry",
        ("AlgorithmInfo", "Family", "Kind", "Status", "all_algorithms", "get_info"),
    ),
    ("qrc.crypto.schemes", ("get_aead", "get_kem", "get_signature")),
    ("qrc.crypto.selftest", ("generate_private_key", "run_selftests")),
)
_SOURCES: dict[str, str] = {name: module for module, names in _MODULES for name in names}


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first use (PEP 562)."""
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
