"""Files in the age v1 format (``age-encryption.org/v1``), post-quantum by default.

Streams (constant memory), ASCII armor, and the recipient types of ``c2sp.org/age``:
``mlkem768x25519`` (``age1pq1...``, age 1.3), X25519 (``age1...``) and scrypt
(passphrases), plus the key-service recipient ``qrc-key`` (:mod:`qrc.data.age.keyservice`)
whose private key never leaves the service. ``docs/age.md`` tells how to use them.

    with open("out.age", "wb") as out, encrypt(out, [parse_recipient(r)]) as writer:
        shutil.copyfileobj(src, writer, 1 << 16)
    reader = decrypt(open("out.age", "rb"), parse_identities(text))
"""

from __future__ import annotations

from qrc.data.age.api import (
    AgeReader,
    AgeWriter,
    check_labels,
    decrypt,
    decrypt_bytes,
    encrypt,
    encrypt_bytes,
)
from qrc.data.age.errors import (
    ArmorFailure,
    HeaderFailure,
    MacFailure,
    NoIdentityMatch,
    PayloadFailure,
)
from qrc.data.age.header import Stanza
from qrc.data.age.keys import (
    identity_file,
    parse_identities,
    parse_identity,
    parse_recipient,
    parse_recipients,
)
from qrc.data.age.recipients import (
    HybridIdentity,
    HybridRecipient,
    Identity,
    Recipient,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    X25519Recipient,
)

__all__ = [
    "AgeReader",
    "AgeWriter",
    "ArmorFailure",
    "HeaderFailure",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "MacFailure",
    "NoIdentityMatch",
    "PayloadFailure",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "check_labels",
    "decrypt",
    "decrypt_bytes",
    "encrypt",
    "encrypt_bytes",
    "identity_file",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
    "parse_recipients",
]
