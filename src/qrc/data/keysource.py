"""Where data keys come from: the key service in this process, or one reached over PQ TLS.

:class:`KeySource` is the one narrow interface the SDK uses; :class:`LocalKeySource` calls a
:class:`qrc.keys.service.KeyService` directly (library mode, the embedded default) and
:class:`RemoteKeySource` calls the HTTP API through :class:`qrc.transit.client.PQClient`.

For a KEM key (``X25519MLKEM768``...) a writer needs only the public key: the DEK is made
here and sealed to the key's primary version locally (no call, nothing audited: nothing left
the service). For a symmetric key the service makes the DEK (``generate_data_key``), an
audited hand-out. Unwrapping always goes to the service, audited.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from qrc.crypto.base import KemPublicKey
from qrc.crypto.envelope import seal
from qrc.crypto.errors import DecryptionError
from qrc.crypto.keyfile import load_public_pem
from qrc.crypto.registry import Kind, get_info
from qrc.data.format import DEK_SIZE, WRAP_CONTEXT
from qrc.keys.errors import KeyNotFound, KeyServiceError, OperationNotPermitted

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.client import PQClient, Response

__all__ = [
    "DEFAULT_ACTOR",
    "KeyServiceUnavailable",
    "KeySource",
    "KeyStatus",
    "LocalKeySource",
    "NewDataKey",
    "RemoteKeySource",
]

DEFAULT_ACTOR = "qrc.data"
_API = "/api/v1/security/qrc"
_ENCRYPTING = frozenset({"active"})
_DECRYPTING = frozenset({"active", "deactivated"})
_T = TypeVar("_T")


class KeyServiceUnavailable(KeyServiceError):
    """The key service could not be reached (after retries); nothing was encrypted or
    written. The message names the service and the operation that failed."""


@dataclass(frozen=True)
class NewDataKey:
    """A fresh DEK in the clear and wrapped under (key ID, version)."""

    plaintext: bytes
    wrapped: bytes
    key_id: str
    key_version: int

    def __repr__(self) -> str:  # never the DEK
        return f"NewDataKey(key_id={self.key_id!r}, key_version={self.key_version})"


@dataclass(frozen=True)
class KeyStatus:
    """What the cache needs to know about a key: may it still encrypt, decrypt, and which
    versions."""

    key_id: str
    algorithm: str
    status: str
    primary_version: int
    min_decryption_version: int

    @property
    def encrypts(self) -> bool:
        return self.status in _ENCRYPTING

    @property
    def decrypts(self) -> bool:
        return self.status in _DECRYPTING


class KeySource(Protocol):
    """The key service as the SDK sees it."""

    description: str

    def data_key(self, ref: str) -> NewDataKey:
        """A fresh DEK wrapped under the key's primary version."""

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The DEK of ``wrapped``; ``DecryptionError`` for every failure of the wrapping."""

    def rewrap(self, ref: str, wrapped: bytes) -> tuple[bytes, str, int]:
        """``wrapped`` under ``ref``'s primary version: (wrapped, key ID, version)."""

    def status(self, ref: str) -> KeyStatus:
        """The key's state and versions."""

    def close(self) -> None:
        """Let go of connections."""


class _PublicKeys:
    """Primary public keys of KEM keys, so writers wrap locally (bounded, thread-safe)."""

    def __init__(self, max_keys: int = 256) -> None:
        self._keys: dict[tuple[str, int], KemPublicKey] = {}
        self._max = max_keys
        self._lock = threading.Lock()

    def get(self, key_id: str, version: int, pem: Callable[[], str]) -> KemPublicKey:
        with self._lock:
            found = self._keys.get((key_id, version))
        if found is not None:
            return found
        public = load_public_pem(pem().encode("ascii"))
        if not isinstance(public, KemPublicKey):
            raise OperationNotPermitted(f"key {key_id} is not an encryption key")
        with self._lock:
            if len(self._keys) >= self._max:
                self._keys.clear()
            self._keys[(key_id, version)] = public
        return public


def _seal_locally(public: KemPublicKey, key_id: str, version: int) -> NewDataKey:
    dek = secrets.token_bytes(DEK_SIZE)
    wrapped = seal(public, dek, context=WRAP_CONTEXT, key_id=key_id, key_version=version)
    return NewDataKey(dek, wrapped, key_id, version)


# --------------------------------------------------------------------------- library mode
class LocalKeySource:
    """The key service in this process (``qrc.keys.factory.open_service``)."""

    def __init__(self, service: KeyService, *, actor: str = DEFAULT_ACTOR) -> None:
        self.service = service
        self.actor = actor
        self.description = "the embedded key service"
        self._public = _PublicKeys()

    def status(self, ref: str) -> KeyStatus:
        info = self.service.keys.get_key(ref)
        return KeyStatus(
            info.id, info.algorithm, info.status, info.version, info.min_decryption_version
        )

    def data_key(self, ref: str) -> NewDataKey:
        info = self.service.keys.get_key(ref)
        if get_info(info.algorithm).kind is Kind.KEM and info.status in _ENCRYPTING:
            public = self._public.get(
                info.id, info.version, lambda: self.service.crypto.public_key_pem(info.id)
            )
            return _seal_locally(public, info.id, info.version)
        made = self.service.crypto.generate_data_key(ref, actor=self.actor, context=WRAP_CONTEXT)
        if made.plaintext_key is None:  # asked for; its absence is a bug
            raise RuntimeError("the key service returned no data key")
        return NewDataKey(made.plaintext_key, made.wrapped_key, made.key_id, made.key_version)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        dek = self.service.crypto.decrypt(key_id, wrapped, actor=self.actor, context=WRAP_CONTEXT)
        if len(dek) != DEK_SIZE:
            raise DecryptionError
        return dek

    def rewrap(self, ref: str, wrapped: bytes) -> tuple[bytes, str, int]:
        sealed = self.service.crypto.rewrap(ref, wrapped, actor=self.actor, context=WRAP_CONTEXT)
        return sealed.ciphertext, sealed.key_id, sealed.key_version

    def close(self) -> None:
        """The service belongs to the caller: nothing to close here."""


# --------------------------------------------------------------------------- remote mode
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class RemoteKeySource:
    """The key service's HTTP API over PQ TLS (or plain HTTP behind a TLS terminator).

    Transport failures and 502/503/504 answers are retried ``retries`` times with
    exponential backoff (every call here is safe to repeat: a repeated data-key request
    only costs one more audited hand-out); then :class:`KeyServiceUnavailable` names the
    URL and the operation.
    """

    def __init__(
        self,
        client: PQClient,
        *,
        retries: int = 3,
        backoff: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.description = f"the key service at {client.base_url}"
        self._public = _PublicKeys()
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls, url: str, *, token: str, ca_file: str | None = None, timeout: float = 10.0
    ) -> RemoteKeySource:
        """A source over a new :class:`PQClient` to ``url``."""
        from qrc.transit.client import PQClient  # noqa: PLC0415  (TLS loads only when used)

        return cls(PQClient(url, ca_file=ca_file, token=token, timeout=timeout))

    def call(self, operation: str, method: str, path: str, body: Any = None) -> Any:
        from qrc.transit.client import TransportError  # noqa: PLC0415

        delay = self.backoff
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(delay)
                delay *= 2
            try:
                with self._lock:  # one connection: calls from threads take turns
                    response = self.client.request(method, _API + path, body)
            except TransportError as exc:
                failure = str(exc) or type(exc).__name__
                continue
            if response.status in (502, 503, 504):
                failure = f"HTTP {response.status}"
                continue
            return _answer(response)
        raise KeyServiceUnavailable(
            f"{operation}: {self.description} is unreachable after "
            f"{self.retries + 1} attempts ({failure}); nothing was written"
        )

    def status(self, ref: str) -> KeyStatus:
        info = self.call("key status", "GET", f"/keys/{ref}")
        return KeyStatus(
            info["id"],
            info["algorithm"],
            info["status"],
            info["version"],
            info["min_decryption_version"],
        )

    def data_key(self, ref: str) -> NewDataKey:
        info = self.call("data key", "GET", f"/keys/{ref}")
        if get_info(info["algorithm"]).kind is Kind.KEM and info["status"] in _ENCRYPTING:
            version = int(info["version"])
            public = self._public.get(info["id"], version, lambda: str(info["public_key"]))
            return _seal_locally(public, info["id"], version)
        answer = self.call(
            "data key",
            "POST",
            "/datakey",
            {"key": ref, "context": WRAP_CONTEXT.decode("ascii")},
        )
        return NewDataKey(
            base64.b64decode(answer["plaintext_key"]),
            base64.b64decode(answer["wrapped_key"]),
            answer["key_id"],
            int(answer["key_version"]),
        )

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        body = {"key": key_id, "ciphertext": _b64(wrapped), "context": WRAP_CONTEXT.decode()}
        dek = base64.b64decode(self.call("unwrap data key", "POST", "/decrypt", body)["plaintext"])
        if len(dek) != DEK_SIZE:
            raise DecryptionError
        return dek

    def rewrap(self, ref: str, wrapped: bytes) -> tuple[bytes, str, int]:
        body = {"key": ref, "ciphertext": _b64(wrapped), "context": WRAP_CONTEXT.decode()}
        answer = self.call("rewrap data key", "POST", "/rewrap", body)
        return base64.b64decode(answer["ciphertext"]), answer["key_id"], int(answer["key_version"])

    def close(self) -> None:
        self.client.close()


def _answer(response: Response) -> Any:
    """The JSON of a 2xx answer; the service's problem as the matching error otherwise."""
    if response.status < 400:
        return response.json()
    slug, title = "", f"HTTP {response.status}"
    try:
        problem = response.json()
        slug = str(problem.get("type", "")).rsplit(":", 1)[-1]
        title = str(problem.get("detail") or problem.get("title") or title)
    except (ValueError, AttributeError):
        pass
    if slug == "decryption-failed":
        raise DecryptionError
    if slug == "key-not-found" or response.status == 404:
        raise KeyNotFound(title)
    if response.status in (401, 403):
        raise OperationNotPermitted(f"the key service refused the token: {title}")
    raise OperationNotPermitted(title)
