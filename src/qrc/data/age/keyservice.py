"""The ``qrc-key`` stanza: a file key sealed to a managed key, opened by the key service.

Specified in ``docs/formats.md`` ("age stanza qrc-key")::

    -> qrc-key KEY_ID KEY_VERSION
    base64(Envelope v2 of the 16-byte file key)

The body is a qrc Envelope (:func:`qrc.crypto.envelope.seal`) to the public key of that
key version, whose header names the key ID and version (authenticated: they are part of
the HPKE ``info``), with the context ``age-encryption.org/v1/qrc-key:`` followed by the
caller's context. Writers need only the public key. Readers hand the body to the key
service (``service.crypto.decrypt``), so the private key never leaves it; each opening is
audited, and refused once the key is revoked or destroyed. An offline key pair of
``qrc keygen`` (no key ID: ``-`` in the stanza) opens the same stanza locally.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qrc.crypto.base import KemPrivateKey, KemPublicKey
from qrc.crypto.envelope import open_sealed, parse_header, seal
from qrc.crypto.errors import CryptoError, DecryptionError
from qrc.crypto.registry import Family, get_info
from qrc.data.age.errors import HeaderFailure
from qrc.data.age.header import Stanza
from qrc.data.age.recipients import FILE_KEY_SIZE, POSTQUANTUM

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.client import PQClient

__all__ = [
    "CONTEXT_PREFIX",
    "STANZA_TYPE",
    "KeyRecipient",
    "PrivateKeyIdentity",
    "ServiceIdentity",
    "ServiceRefused",
    "addressed",
    "bound_context",
    "library_opener",
    "recipient_from_client",
    "recipient_from_service",
    "remote_opener",
]

STANZA_TYPE = "qrc-key"
CONTEXT_PREFIX = "age-encryption.org/v1/qrc-key:"
_NO_KEY_ID = "-"
_VERSION = re.compile(r"[1-9][0-9]{0,9}|0")
_API = "/api/v1/security/qrc"
_ATTEMPTS, _BACKOFF = 3, 0.25  # seconds, doubling

# (key ID, envelope, bound context) -> the file key; DecryptionError when it does not open.
Opener = Callable[[str, bytes, str], bytes]


class ServiceRefused(CryptoError):
    """The key service refused to open a stanza (revoked key, no access, unreachable)."""


def bound_context(context: str) -> str:
    """The envelope context of a ``qrc-key`` stanza for the caller's ``context``."""
    return CONTEXT_PREFIX + context


def _postquantum(algorithm: str) -> bool:
    return get_info(algorithm).family is not Family.CLASSICAL


class KeyRecipient:
    """Seals file keys to one version of a key (managed or offline) under a context."""

    def __init__(
        self, public: KemPublicKey, *, key_id: str = "", version: int = 0, context: str = ""
    ) -> None:
        if key_id == _NO_KEY_ID or not re.fullmatch(r"[\x21-\x7e]*", key_id):
            raise ValueError(f"key ID {key_id!r} cannot be a stanza argument")
        self.public, self.key_id, self.version, self.context = public, key_id, version, context
        self.labels = frozenset({POSTQUANTUM}) if _postquantum(public.algorithm) else frozenset()

    def wrap(self, file_key: bytes) -> list[Stanza]:
        envelope = seal(
            self.public,
            file_key,
            context=bound_context(self.context).encode(),
            key_id=self.key_id,
            key_version=self.version,
        )
        return [Stanza(STANZA_TYPE, (self.key_id or _NO_KEY_ID, str(self.version)), envelope)]


def addressed(stanza: Stanza) -> tuple[str, int]:
    """The key ID and version of a well-formed ``qrc-key`` stanza, checked against its body.

    Raises:
        HeaderFailure: wrong arguments, or a body that is not an envelope naming them.
    """
    if len(stanza.args) != 2 or _VERSION.fullmatch(stanza.args[1]) is None:
        raise HeaderFailure
    key_id = "" if stanza.args[0] == _NO_KEY_ID else stanza.args[0]
    version = int(stanza.args[1])
    try:
        header = parse_header(stanza.body)
    except DecryptionError:
        raise HeaderFailure from None
    if header.key_id != key_id or header.key_version != version:
        raise HeaderFailure
    return key_id, version


def _checked_file_key(file_key: bytes) -> bytes:
    if len(file_key) != FILE_KEY_SIZE:
        raise HeaderFailure
    return file_key


class PrivateKeyIdentity:
    """Opens ``qrc-key`` stanzas with a local private key (an offline ``qrc keygen`` key)."""

    def __init__(self, private: KemPrivateKey, *, context: str = "") -> None:
        self._private, self._context = private, context

    def __repr__(self) -> str:
        return f"PrivateKeyIdentity({self._private.algorithm})"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            addressed(stanza)
            try:
                file_key = open_sealed(
                    self._private, stanza.body, context=bound_context(self._context).encode()
                )
            except DecryptionError:
                continue
            return _checked_file_key(file_key)
        return None


class ServiceIdentity:
    """Opens ``qrc-key`` stanzas by asking the key service; the private key stays there.

    A stanza the service cannot open (another key, another context, tampering) is not a
    match; a refusal (revoked or destroyed key, no access, service down) is an error.
    """

    def __init__(self, opener: Opener, *, context: str = "") -> None:
        self._opener, self._context = opener, context

    def __repr__(self) -> str:
        return "ServiceIdentity()"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        ours = [(s, addressed(s)) for s in stanzas if s.type == STANZA_TYPE]
        for stanza, (key_id, _version) in ours:
            if not key_id:
                continue  # an offline key's stanza: the service holds no such key
            try:
                file_key = self._opener(key_id, stanza.body, bound_context(self._context))
            except DecryptionError:
                continue
            return _checked_file_key(file_key)
        return None


# --------------------------------------------------------------------------- the service
def library_opener(service: KeyService, actor: str) -> Opener:
    """Open stanzas with an in-process key service (library mode), as ``actor``."""
    from qrc.keys.errors import KeyServiceError  # noqa: PLC0415

    def opener(key_id: str, envelope: bytes, context: str) -> bytes:
        try:
            return service.crypto.decrypt(key_id, envelope, actor=actor, context=context.encode())
        except DecryptionError:
            raise
        except KeyServiceError as exc:
            raise ServiceRefused(str(exc)) from None

    return opener


def _problem(response: Any) -> str:
    try:
        problem = response.json()
        message = str(problem.get("title", "error"))
        if problem.get("detail"):
            message += f": {problem['detail']}"
    except (ValueError, AttributeError):
        message = f"HTTP {response.status}"
    return message


def _problem_type(response: Any) -> str:
    try:
        return str(response.json().get("type", ""))
    except (ValueError, AttributeError):
        return ""


def _post_with_retries(client: PQClient, path: str, body: dict[str, str]) -> Any:
    """POST, retrying a failed connection with backoff (opening is safe to repeat: it
    changes no state but the audit trail); then say which service could not be reached."""
    from qrc.transit.client import TransportError  # noqa: PLC0415

    for attempt in range(_ATTEMPTS - 1):
        try:
            return client.post(path, body)
        except TransportError:
            time.sleep(_BACKOFF * 2**attempt)
    try:
        return client.post(path, body)
    except TransportError as exc:
        raise ServiceRefused(f"cannot reach the key service at {client.base_url}: {exc}") from None


def remote_opener(client: PQClient) -> Opener:
    """Open stanzas through the service's HTTPS API (``POST /decrypt``) over PQ TLS."""

    def opener(key_id: str, envelope: bytes, context: str) -> bytes:
        body = {
            "key": key_id,
            "ciphertext": base64.b64encode(envelope).decode(),
            "context": context,
        }
        response = _post_with_retries(client, f"{_API}/decrypt", body)
        if response.status == 200:
            return base64.b64decode(response.json()["plaintext"])
        if response.status == 400 and _problem_type(response).endswith("decryption-failed"):
            raise DecryptionError
        raise ServiceRefused(f"the key service refused: {_problem(response)}")

    return opener


def _encryptable(ref: str, status: str) -> None:
    # The recipient string works offline for as long as it is kept: refuse to make one for
    # a key that would refuse to encrypt, rather than produce files it will not open.
    if status != "active":
        raise ValueError(f"key {ref!r} is {status}: only an active key can be a recipient")


def recipient_from_service(service: KeyService, ref: str, context: str = "") -> KeyRecipient:
    """A recipient for the primary version of a managed key (library mode)."""
    from qrc.crypto.keyfile import load_public_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415

    info = service.keys.get_key(ref)
    _encryptable(ref, info.status)
    public = load_public_pem(service.crypto.public_key_pem(info.id).encode(), kind=Kind.KEM)
    if not isinstance(public, KemPublicKey):
        raise ValueError(f"key {ref!r} is not a KEM key")
    return KeyRecipient(public, key_id=info.id, version=info.version, context=context)


def recipient_from_client(client: PQClient, ref: str, context: str = "") -> KeyRecipient:
    """A recipient for the primary version of a managed key, fetched over the API."""
    from qrc.crypto.keyfile import load_public_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.transit.client import TransportError  # noqa: PLC0415

    try:
        response = client.get(f"{_API}/keys/{ref}")
    except TransportError as exc:
        raise ServiceRefused(f"cannot reach the key service at {client.base_url}: {exc}") from None
    if response.status != 200:
        raise ServiceRefused(f"the key service refused: {_problem(response)}")
    info = response.json()
    _encryptable(ref, str(info.get("status")))
    pem = info.get("public_key")
    if not pem:
        raise ValueError(f"key {ref!r} has no public key (a symmetric key cannot be a recipient)")
    public = load_public_pem(pem.encode(), kind=Kind.KEM)
    if not isinstance(public, KemPublicKey):
        raise ValueError(f"key {ref!r} is not a KEM key")
    return KeyRecipient(public, key_id=info["id"], version=int(info["version"]), context=context)
