"""The flat, payload-free error classes of ``qrc.crypto``.

Every way a decryption can fail raises the one :class:`DecryptionError`, and every way a
verification can fail raises the one :class:`InvalidSignature`: callers (and attackers)
never learn which check failed.
"""

from __future__ import annotations

__all__ = [
    "AlgorithmNotAllowed",
    "CryptoError",
    "DecryptionError",
    "InvalidSignature",
    "KeyFormatError",
    "SelfTestFailure",
    "UnsupportedAlgorithm",
]


class CryptoError(Exception):
    """Base class of every error ``qrc.crypto`` raises on purpose."""


class DecryptionError(CryptoError):
    """The ciphertext could not be decrypted (tampered, truncated, wrong key or context)."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class InvalidSignature(CryptoError):
    """The signature does not verify for this key, message and context."""

    def __init__(self) -> None:
        super().__init__("signature verification failed")


class UnsupportedAlgorithm(CryptoError):
    """No registered algorithm has this ID, or it is not of the kind asked for."""


class AlgorithmNotAllowed(CryptoError):
    """The algorithm exists but its status forbids this use (for example ``disallowed``)."""


class KeyFormatError(CryptoError):
    """Key bytes or a key file are malformed, of the wrong algorithm, or wrongly protected."""


class SelfTestFailure(CryptoError):
    """A known-answer or pairwise-consistency self-test failed."""
