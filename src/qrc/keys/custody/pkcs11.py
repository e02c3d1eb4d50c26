"""``pkcs11`` custody: the root KEK is a non-extractable AES-256 key in a PKCS#11 token.

Wrapping runs ``CKM_AES_GCM`` inside the token (python-pkcs11), producing the same Wrapped
key v1 blobs as local custody: the nonce comes from ``os.urandom`` and is passed as the
mechanism parameter, the AAD is ``header || aad``, the tag is 128 bits.

Robustness: every operation runs under one lock per PKCS#11 library
(:mod:`qrc.keys.custody.pkcs11_library`; the library is initialised without OS locking, so
calls must not overlap). When a call fails for a reason other than bad input, the library
is finalised and re-initialised (SoftHSM2 only notices token changes then), the session
re-opened, the key found again and the call retried once; if that fails too the caller
gets :class:`CustodyUnavailable` and nothing has changed. The next call tries again, so
operations work again when the token returns, with no restart.
A rejected PIN is never retried automatically: a token locks its PIN after a few failures.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, TypeVar, cast

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from qrc.keys.custody.base import (
    Custody,
    CustodyError,
    CustodyHealth,
    CustodyUnavailable,
    HealthState,
    UnwrapError,
)

if TYPE_CHECKING:
    pass

from qrc.keys.custody.pkcs11_library import (
    DEFAULT_MODULE,
    library,
    reinitialize_library,
)
from qrc.keys.custody.wrapped import (
    MAX_PLAINTEXT_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    build_blob,
    encode_header,
    gcm_aad,
    parse_blob,
)

__all__ = [
    "DEFAULT_KEY_LABEL",
    "DEFAULT_MODULE",
    "KEY_LABEL_ENV",
    "MODULE_ENV",
    "PIN_ENV",
    "TOKEN_ENV",
    "KekExists",
    "KekNotFound",
    "Pkcs11Config",
    "Pkcs11ConfigError",
    "Pkcs11Custody",
    "reinitialize_library",
]

logger = logging.getLogger(__name__)

MODULE_ENV = "QRC_PKCS11_MODULE"
TOKEN_ENV = "QRC_PKCS11_TOKEN"  # noqa: S105  # nosec B105
PIN_ENV = "QRC_PKCS11_PIN"
KEY_LABEL_ENV = "QRC_PKCS11_KEY_LABEL"
DEFAULT_KEY_LABEL = "qrc-root-kek"
_KEY_LABEL = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PIN_ERRORS = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinLocked,
               p11e.PinExpired, p11e.UserPinNotInitialized)  # fmt: skip
_T = TypeVar("_T")


class _AesKey(Protocol):
    """What this module uses of a python-pkcs11 AES key object (its stubs lack the mixins)."""

    def encrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def decrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def __getitem__(self, item: Attribute) -> Any: ...


class Pkcs11ConfigError(CustodyError):
    """The PKCS#11 configuration is incomplete or ambiguous (names the variable to fix)."""


class KekNotFound(Pkcs11ConfigError):
    """The token has no AES key with the configured label."""


class KekExists(Pkcs11ConfigError):
    """``create_key`` found a key with that label already (it never replaces one)."""


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the KEK is: library, token label, user PIN, key label."""

    token_label: str
    pin: str = field(repr=False)
    module: str = DEFAULT_MODULE
    key_label: str = DEFAULT_KEY_LABEL
    slow_seconds: float = 1.0  # a health round trip slower than this reports ``degraded``

    def __post_init__(self) -> None:
        if not self.token_label:
            raise Pkcs11ConfigError(f"the token label is empty: set {TOKEN_ENV}")
        if not self.pin:
            raise Pkcs11ConfigError(f"the user PIN is empty: set {PIN_ENV}")
        if not _KEY_LABEL.fullmatch(self.key_label):
            raise Pkcs11ConfigError(
                f"{KEY_LABEL_ENV} must be 1..64 characters of A-Z a-z 0-9 . _ -"
            )


def _printable(raw: bytes) -> str:
    text = raw.decode("ascii", errors="replace").strip(" \x00")
    if text and all(0x21 <= ord(char) <= 0x7E for char in text):
        return text
    return raw.hex()


class _Rejected(Exception):
    """The token works but refused this ciphertext: becomes :class:`UnwrapError`."""


class Pkcs11Custody(Custody):
    """A root KEK held in a PKCS#11 token; every GCM operation runs in the token."""

    kind: ClassVar[str] = "pkcs11"

    def __init__(self, config: Pkcs11Config) -> None:
        """Use :meth:`open` or :meth:`create_key` instead."""
        self._config = config
        self._library = library(config.module)
        self._kek_id: str | None = None
        self._key: _AesKey | None = None
        self._key_session: pkcs11.Session | None = None
        self._key_generation = -1
        self._pin_problem: str | None = None
        self._troubles = 0
        self._failing = False
        self._last_problem = ""
        self._closed = False
        self._acquired = False

    # -- construction -----------------------------------------------------------------

    @classmethod
    def open(cls, config: Pkcs11Config) -> Pkcs11Custody:
        """Connect to the token and find the KEK.

        Raises:
            KekNotFound: the token has no key with ``config.key_label``.
            CustodyUnavailable: the library, token or PIN does not work now.
        """
        custody = cls(config)
        try:
            custody._run(lambda key: b"", initial=True)
        except BaseException:
            custody.close()
            raise
        return custody

    @classmethod
    def create_key(cls, config: Pkcs11Config) -> Pkcs11Custody:
        """Generate the KEK in the token (non-extractable, sensitive) and open it.

        Raises:
            KekExists: a key with that label exists already.
            CustodyUnavailable: the token cannot be reached now.
        """
        custody = cls(config)

        def generate() -> None:
            library = custody._library
            session = library.session(config.token_label, config.pin)
            if list(session.get_objects({Attribute.LABEL: config.key_label})):
                raise KekExists(
                    f"token {config.token_label!r} already holds an object labelled "
                    f"{config.key_label!r}; refusing to create another"
                )
            rw = library.rw_session(config.token_label)
            try:
                rw.generate_key(
                    KeyType.AES,
                    256,
                    label=config.key_label,
                    id=os.urandom(8),
                    store=True,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.MODIFIABLE: False,
                        Attribute.ENCRYPT: True,
                        Attribute.DECRYPT: True,
                        Attribute.WRAP: False,
                        Attribute.UNWRAP: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                        Attribute.DERIVE: False,
                    },
                )
            finally:
                rw.close()

        try:
            custody._call(generate)
            custody._run(lambda key: b"", initial=True)
        except BaseException:
            custody.close()
            raise
        logger.info("created root KEK %s in token %r", custody.kek_id, config.token_label)
        return custody

    @classmethod
    def ensure_key(cls, config: Pkcs11Config) -> Pkcs11Custody:
        """Open the KEK, creating it first if the token has none with that label."""
        try:
            return cls.open(config)
        except KekNotFound:
            return cls.create_key(config)

    # -- plumbing ---------------------------------------------------------------------

    def _acquire(self) -> None:
        if not self._acquired:
            self._library.acquire(self._config.token_label)
            self._acquired = True

    def _pin_message(self, exc: Exception) -> str:
        return (
            f"token {self._config.token_label!r} rejected the user PIN ({type(exc).__name__}); "
            f"fix {PIN_ENV} and reopen the custody (not retried: tokens lock the PIN after "
            "repeated failures)"
        )

    def _unreachable(self, exc: BaseException) -> str:
        text = str(exc).strip()
        reason = type(exc).__name__ + (f": {text}" if text else "")
        return (
            f"PKCS#11 token {self._config.token_label!r} (module {self._config.module}) is "
            f"unreachable ({reason}); nothing was changed, retry when it is back"
        )

    def _find_key(self) -> _AesKey:
        """The key handle for the current library generation, found again if needed."""
        library = self._library
        session = library.session(self._config.token_label, self._config.pin)
        if (
            self._key is not None
            and self._key_generation == library.generation
            and self._key_session is session
        ):
            return self._key
        keys = list(
            session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: self._config.key_label,
                }
            )
        )
        if not keys:
            raise p11e.NoSuchKey(self._config.key_label)
        if len(keys) > 1:
            raise Pkcs11ConfigError(
                f"token {self._config.token_label!r} holds {len(keys)} AES keys labelled "
                f"{self._config.key_label!r}; set {KEY_LABEL_ENV} to a unique label"
            )
        key = cast(_AesKey, keys[0])
        kek_id = self._derive_kek_id(session, key)
        if self._kek_id is not None and kek_id != self._kek_id:
            # Another token or key under the same names: never use it silently.
            raise Pkcs11ConfigError(
                f"token {self._config.token_label!r} now holds a different key ({kek_id}) "
                f"than the KEK this custody opened ({self._kek_id})"
            )
        self._kek_id = kek_id
        self._key, self._key_session = key, session
        self._key_generation = library.generation
        return key

    def _derive_kek_id(self, session: pkcs11.Session, key: _AesKey) -> str:
        serial = _printable(bytes(session.token.serial))
        try:
            key_id = bytes(key[Attribute.ID])
        except p11e.PKCS11Error:
            key_id = b""
        if len(key_id) > 32:
            key_id = hashlib.sha256(key_id).digest()[:16]
        suffix = f":{key_id.hex()}" if key_id else ""
        return f"pkcs11:{serial}:{self._config.key_label}{suffix}"

    def _run(self, operation: Callable[[_AesKey], _T], *, initial: bool = False) -> _T:
        """Run ``operation(key)`` under the library lock, reconnecting once on failure."""
        return self._call(lambda: operation(self._find_key()), initial=initial)

    def _call(self, operation: Callable[[], _T], *, initial: bool = False) -> _T:
        """Run ``operation()`` under the library lock, reconnecting once on failure."""
        library = self._library
        with library.lock:
            if self._closed:
                raise CustodyError("this custody is closed")
            if self._pin_problem is not None:
                raise CustodyUnavailable(self._pin_problem)
            self._acquire()
            was_failing = self._failing
            problem: BaseException | None = None
            for attempt in range(2):
                generation = library.generation
                try:
                    result = operation()
                except _Rejected:
                    raise UnwrapError from None
                except _PIN_ERRORS as exc:
                    self._pin_problem = self._pin_message(exc)
                    raise CustodyUnavailable(self._pin_problem) from None
                except p11e.NoSuchKey as exc:
                    if initial:
                        raise KekNotFound(
                            f"token {self._config.token_label!r} has no AES key labelled "
                            f"{self._config.key_label!r}; create it with "
                            "Pkcs11Custody.create_key (or set "
                            f"{KEY_LABEL_ENV})"
                        ) from None
                    problem = exc
                except p11e.MultipleTokensReturned:
                    raise Pkcs11ConfigError(
                        f"several tokens are labelled {self._config.token_label!r}; "
                        f"give each a unique label ({TOKEN_ENV})"
                    ) from None
                except p11e.PKCS11Error as exc:
                    problem = exc
                else:
                    if self._failing:
                        self._failing = False
                        logger.warning(
                            "PKCS#11 token %r is reachable again", self._config.token_label
                        )
                    return result
                # Counted for health(): a problem since the last check makes it "degraded".
                self._troubles += 1
                self._failing = True
                self._last_problem = self._unreachable(problem)
                if attempt == 0:
                    library.reset(generation)
            # Logged once per outage, not once per request while it lasts.
            logger.log(logging.DEBUG if was_failing else logging.ERROR, "%s", self._last_problem)
            raise CustodyUnavailable(self._last_problem) from None

    # -- public data objects (the audit anchor) -----------------------------------------

    def read_data(self, label: str) -> list[bytes]:
        """The values of the token's data objects labelled ``label`` (public, read only)."""

        def operation() -> list[bytes]:
            session = self._library.session(self._config.token_label, self._config.pin)
            found = session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})
            return [bytes(item[Attribute.VALUE]) for item in found]

        return self._call(operation)

    def add_data(self, label: str, value: bytes) -> None:
        """Store ``value`` as a new, unmodifiable token data object labelled ``label``."""

        def operation() -> None:
            self._library.session(self._config.token_label, self._config.pin)  # logged in
            rw = self._library.rw_session(self._config.token_label)
            try:
                rw.create_object(
                    {
                        Attribute.CLASS: ObjectClass.DATA,
                        Attribute.LABEL: label,
                        Attribute.APPLICATION: "qrc",
                        Attribute.VALUE: bytes(value),
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: False,
                        Attribute.MODIFIABLE: False,
                    }
                )
            finally:
                rw.close()

        self._call(operation)

    @staticmethod
    def _gcm(nonce: bytes, header: bytes, aad: bytes) -> GCMParams:
        return GCMParams(nonce, gcm_aad(header, aad), TAG_SIZE * 8)

    # -- Custody ----------------------------------------------------------------------

    @property
    def kek_id(self) -> str:
        if self._kek_id is None:
            raise CustodyError("this custody was never connected")
        return self._kek_id

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        if not isinstance(plaintext, bytes | bytearray) or not isinstance(aad, bytes | bytearray):
            raise TypeError("plaintext and aad must be bytes")
        data, context = bytes(plaintext), bytes(aad)
        if len(data) > MAX_PLAINTEXT_SIZE:
            raise ValueError("plaintext larger than the 1 MiB a wrapped key may hold")
        header = encode_header(self.kek_id)
        nonce = os.urandom(NONCE_SIZE)

        def operation(key: _AesKey) -> bytes:
            out = key.encrypt(
                data, mechanism=Mechanism.AES_GCM, mechanism_param=self._gcm(nonce, header, context)
            )
            if len(out) != len(data) + TAG_SIZE:
                raise p11e.DeviceError("unexpected AES-GCM output length")
            return bytes(out)

        return build_blob(header, nonce, self._run(operation))

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        parsed = parse_blob(blob)
        if not isinstance(aad, bytes | bytearray):
            raise TypeError("aad must be bytes")
        context = bytes(aad)
        if parsed.kek_id != self.kek_id:
            raise UnwrapError

        def operation(key: _AesKey) -> bytes:
            try:
                return bytes(
                    key.decrypt(
                        parsed.ciphertext,
                        mechanism=Mechanism.AES_GCM,
                        mechanism_param=self._gcm(parsed.nonce, parsed.header, context),
                    )
                )
            except p11e.PKCS11Error:
                # Tokens report a failed tag check variously (SoftHSM2: CKR_GENERAL_ERROR),
                # the same codes a failing device gives. A probe in the same session tells
                # them apart: if the key still works, the ciphertext was wrong.
                self._probe(key)
                raise _Rejected from None

        return self._run(operation)

    def _probe(self, key: _AesKey) -> None:
        nonce = os.urandom(NONCE_SIZE)
        params = self._gcm(nonce, b"qrc probe", b"")
        out = key.encrypt(b"", mechanism=Mechanism.AES_GCM, mechanism_param=params)
        key.decrypt(bytes(out), mechanism=Mechanism.AES_GCM, mechanism_param=params)

    def health(self) -> CustodyHealth:
        kek_id = self._kek_id
        start = time.monotonic()
        try:
            probe = os.urandom(32)
            ok = self.unwrap(self.wrap(probe, b"qrc health"), b"qrc health") == probe
        except CustodyError as exc:
            return CustodyHealth(HealthState.OFFLINE, self.kind, kek_id, str(exc))
        elapsed = time.monotonic() - start
        if not ok:
            return CustodyHealth(HealthState.OFFLINE, self.kind, kek_id, "round trip failed")
        with self._library.lock:
            troubles, self._troubles = self._troubles, 0
        if troubles:
            return CustodyHealth(
                HealthState.DEGRADED,
                self.kind,
                self._kek_id,
                f"working again, but {troubles} attempt(s) failed and the token was "
                f"reconnected since the last check; last problem: {self._last_problem}",
            )
        if elapsed > self._config.slow_seconds:
            return CustodyHealth(
                HealthState.DEGRADED,
                self.kind,
                self._kek_id,
                f"working but slow: round trip took {elapsed * 1000:.0f} ms",
            )
        return CustodyHealth(
            HealthState.ONLINE, self.kind, self._kek_id, f"round trip in {elapsed * 1000:.1f} ms"
        )

    def close(self) -> None:
        with self._library.lock:
            self._closed = True
            self._key = self._key_session = None
            if self._acquired:
                self._acquired = False
                self._library.release(self._config.token_label)

    def __repr__(self) -> str:
        return f"<Pkcs11Custody kek_id={self._kek_id} token={self._config.token_label!r}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a custody holding a token session cannot be pickled")
