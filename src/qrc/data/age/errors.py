"""The failures of age decryption: one opaque class, told apart only by type.

Each is a :class:`~qrc.crypto.errors.DecryptionError` with the same message, so callers
that catch the one opaque error (the command line, the services) learn nothing more. The
subclasses follow the failure classes of the CCTV age test kit, which tests need to tell
a parse error from a wrong key (a header that fails to parse must not surface as a MAC
failure, for example).
"""

from __future__ import annotations

from qrc.crypto.errors import DecryptionError

__all__ = [
    "ArmorFailure",
    "HeaderFailure",
    "MacFailure",
    "NoIdentityMatch",
    "PayloadFailure",
]


class HeaderFailure(DecryptionError):
    """The header does not parse, or a stanza addressed to an identity is malformed."""


class NoIdentityMatch(DecryptionError):
    """The header parses but no identity unwraps any of its stanzas."""


class MacFailure(DecryptionError):
    """A file key was unwrapped but the header MAC does not match."""


class PayloadFailure(DecryptionError):
    """The STREAM payload is truncated, reordered, altered or has trailing data."""


class ArmorFailure(DecryptionError):
    """The ASCII armor is not the strict PEM encoding age writes."""
