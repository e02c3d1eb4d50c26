"""Cryptographic use of managed keys: encrypt, decrypt, sign, verify, rewrap, data keys.

Every use is checked against the key's state, purpose, versions and the algorithm policy,
then audited in the same transaction (fail closed). Decryption failures are opaque (one
``DecryptionError``) and are audited as failures in a transaction of their own; the
failure-burst detector (:mod:`qrc.keys.audit.detectors`, an observer) watches for bursts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.envelope import open_sealed, open_symmetric, parse_header, seal, seal_symmetric
from qrc.crypto.errors import DecryptionError, InvalidSignature
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.registry import Kind, get_info
from qrc.keys.audit.events import EventType, Severity
from qrc.keys.context import (
    RESERVED_CONTEXT_PREFIX,
    ServiceContext,
    expect,
    guarded,
    refuse_reserved,
)
from qrc.keys.custody.base import UnwrapError
from qrc.keys.errors import InvalidRequest, KeyNotFound, OperationNotPermitted
from qrc.keys.states import KeyState, Operation, Purpose, permits
from qrc.keys.store.models import Key
from qrc.keys.usage import KeyUseEvent, UsageRecorder

__all__ = ["MAX_VERSIONS_TRIED", "DataKey", "KeyOperations", "Sealed", "Signed"]

# Versions a verification without a named version tries (newest first).
MAX_VERSIONS_TRIED = 8


@dataclass(frozen=True)
class Sealed:
    """A ciphertext (Envelope v1) and the key version that made it."""

    ciphertext: bytes
    key_id: str
    key_version: int


@dataclass(frozen=True)
class Signed:
    """A signature (the algorithm's standard bytes) and the key version that made it."""

    signature: bytes
    key_id: str
    key_version: int


@dataclass(frozen=True)
class DataKey:
    """A fresh data key, in the clear (optional) and wrapped under a managed key."""

    plaintext_key: bytes | None
    wrapped_key: bytes
    key_id: str
    key_version: int


class KeyOperations:
    """Cryptographic use of managed keys (``service.crypto``)."""

    def __init__(self, ctx: ServiceContext, usage: UsageRecorder | None = None) -> None:
        self.ctx = ctx
        self.usage = usage or UsageRecorder(ctx)

    # ------------------------------------------------------------------ checks
    def _usable(self, key: Key, operation: Operation, *, recovery: bool = False) -> None:
        refuse_reserved(key)
        self.ctx.policy.check_allowed(key.algorithm)
        wants_signing = operation in (Operation.SIGN, Operation.VERIFY)
        if wants_signing != (key.purpose == Purpose.SIGNING):
            raise OperationNotPermitted(
                f"key {key.name!r} is for {key.purpose}, not for {operation.value}"
            )
        if key.destruction_due_at is not None:
            raise OperationNotPermitted(f"key {key.name!r} is pending destruction")
        if not permits(KeyState(key.status), operation, recovery=recovery):
            hint = ""
            if key.status == KeyState.COMPROMISED and operation is Operation.DECRYPT:
                hint = " (a compromised key decrypts only with the explicit recovery flag)"
            raise OperationNotPermitted(
                f"key {key.name!r} is {key.status}: {operation.value} not allowed{hint}"
            )

    def _readable_version(self, key: Key, version: int) -> None:
        # Called only after the envelope opened: the version in its header is authentic, so
        # saying it is retired tells a tamperer nothing. Before that, an edited version
        # field must fail like any other tampering (one opaque DecryptionError).
        if not key.min_decryption_version <= version <= key.primary_version:
            raise OperationNotPermitted(
                f"version {version} of key {key.name!r} is retired "
                f"(min_decryption_version is {key.min_decryption_version})"
            )

    def _try_open(
        self,
        session: Session,
        key: Key,
        version: int,
        algorithm: str,
        ciphertext: bytes,
        context: bytes,
    ) -> bytes | None:
        """The plaintext, or ``None`` for every way opening can fail (versions that do not
        exist, destroyed material, tampering)."""
        if not 1 <= version <= key.primary_version:
            return None
        try:
            # Each version keeps its own algorithm (a key may have moved to another): the
            # header must name the one stored for that version, or opening fails opaquely.
            if self.ctx.material.version_row(session, key, version).algorithm != algorithm:
                return None
            self.ctx.policy.check_allowed(algorithm)  # an old version's may be disallowed now
            return self._open(session, key, version, algorithm, ciphertext, context)
        except (DecryptionError, UnwrapError, KeyNotFound):
            return None

    # ------------------------------------------------------------------ encryption
    @guarded("key.encrypt")
    def encrypt(self, ref: str, plaintext: bytes, *, actor: str, context: bytes = b"") -> Sealed:
        """Encrypt under the key's primary version (Envelope v1).

        The key is read and the envelope sealed outside any write transaction; the audit
        event then commits (with those of concurrent operations) after checking that the
        key still allows encryption. Only then is the ciphertext returned.
        """
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref)
            self._usable(key, Operation.ENCRYPT)
            sealed = self._seal(session, key, plaintext, context)
        self._record_use(
            key, "key.encrypt", actor, sealed.key_version, {"bytes": len(plaintext)},
            Operation.ENCRYPT,
        )  # fmt: skip
        return sealed

    def _record_use(
        self,
        key: Key,
        event_type: str,
        actor: str,
        version: int | None,
        details: dict[str, object] | None,
        *operations: Operation,
        result: str = "success",
        recovery: bool = False,
        readable: int | None = None,
    ) -> None:
        """Commit the use's audit event once the key, as committed, still allows it."""

        def check(current: Key) -> None:
            for operation in operations:
                self._usable(current, operation, recovery=recovery)
            if readable is not None:
                self._readable_version(current, readable)

        self.usage.record(
            KeyUseEvent(key.id, event_type, actor, version, details, result=result, check=check)
        )

    def _seal(self, session: Session, key: Key, plaintext: bytes, context: bytes) -> Sealed:
        version = key.primary_version
        algorithm = self.ctx.material.version_row(session, key, version).algorithm
        if get_info(algorithm).kind is Kind.AEAD:
            material = expect(self.ctx.material.private(session, key, version), bytes)
            data = seal_symmetric(
                material,
                plaintext,
                algorithm=algorithm,
                context=context,
                key_id=key.id,
                key_version=version,
            )
        else:
            public = expect(self.ctx.material.public_key(session, key, version), KemPublicKey)
            data = seal(public, plaintext, context=context, key_id=key.id, key_version=version)
        return Sealed(data, key.id, version)

    @guarded("key.decrypt")
    def decrypt(
        self,
        ref: str | None,
        ciphertext: bytes,
        *,
        actor: str,
        context: bytes = b"",
        recovery: bool = False,
    ) -> bytes:
        """Decrypt an envelope made by :meth:`encrypt` (``ref=None``: the key it names).

        Raises:
            DecryptionError: for every cryptographic failure (opaque; audited).
            OperationNotPermitted: the key's state or version forbids decryption.
        """
        try:
            header = parse_header(ciphertext)
        except DecryptionError:
            self._record_decryption_failure(ref, actor)
            raise
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref or header.key_id)
            self._usable(key, Operation.DECRYPT, recovery=recovery)
            plaintext = None
            if header.key_id == key.id:
                plaintext = self._try_open(
                    session, key, header.key_version, header.algorithm, ciphertext, context
                )
        if plaintext is None:
            self._record_decryption_failure(key.id, actor)
            raise DecryptionError
        self._readable_version(key, header.key_version)
        details: dict[str, object] = {"bytes": len(plaintext)}
        if recovery and key.status == KeyState.COMPROMISED:
            self._record_recovery_use(key.id, actor, header.key_version, details)
        else:
            self._record_use(
                key, "key.decrypt", actor, header.key_version, details, Operation.DECRYPT,
                recovery=recovery, readable=header.key_version,
            )  # fmt: skip
        return plaintext

    def _record_recovery_use(
        self, key_id: str, actor: str, version: int, details: dict[str, object]
    ) -> None:
        """A compromised key's recovery decryption: a security event with its audit event."""
        with self.ctx.db.session() as session:
            key = self.ctx.find(session, key_id)
            self._usable(key, Operation.DECRYPT, recovery=True)
            self._readable_version(key, version)
            self.ctx.security_event(
                session, EventType.COMPROMISED_KEY_RECOVERY_USE, Severity.HIGH, actor, key=key
            )
            self.ctx.record(
                session,
                "key.decrypt",
                actor,
                key=key,
                key_version=version,
                details={**details, "recovery": True},
            )

    def _open(
        self, session: Session, key: Key, version: int, algorithm: str, data: bytes, context: bytes
    ) -> bytes:
        material = self.ctx.material.private(session, key, version)
        if isinstance(material, bytes):
            return open_symmetric(
                material,
                data,
                context=context,
                algorithm=algorithm,
                key_id=key.id,
                key_version=version,
            )
        return open_sealed(
            expect(material, KemPrivateKey),
            data,
            context=context,
            key_id=key.id,
            key_version=version,
        )

    def _record_decryption_failure(self, ref: str | None, actor: str) -> None:
        """Audit a failed decryption, committed on its own (the observers see bursts)."""
        with self.ctx.db.session() as session:
            key = None
            if ref is not None:
                try:
                    key = self.ctx.find(session, ref)
                except KeyNotFound:
                    key = None
            self.ctx.record(session, "key.decrypt", actor, result="failure", key=key)

    @guarded("key.rewrap")
    def rewrap(self, ref: str, ciphertext: bytes, *, actor: str, context: bytes = b"") -> Sealed:
        """Decrypt and re-encrypt under the primary version; the plaintext never leaves."""
        try:
            header = parse_header(ciphertext)
        except DecryptionError:
            self._record_decryption_failure(ref, actor)
            raise
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref)
            self._usable(key, Operation.DECRYPT)
            self._usable(key, Operation.ENCRYPT)
            plaintext = None
            if header.key_id == key.id:
                plaintext = self._try_open(
                    session, key, header.key_version, header.algorithm, ciphertext, context
                )
            if plaintext is not None:
                self._readable_version(key, header.key_version)
                sealed = self._seal(session, key, plaintext, context)
        if plaintext is None:
            self._record_decryption_failure(key.id, actor)
            raise DecryptionError
        self._record_use(
            key, "key.rewrap", actor, sealed.key_version, {"from_version": header.key_version},
            Operation.DECRYPT, Operation.ENCRYPT, readable=header.key_version,
        )  # fmt: skip
        return sealed

    @guarded("key.datakey")
    def generate_data_key(
        self, ref: str, *, actor: str, context: bytes = b"", include_plaintext: bool = True
    ) -> DataKey:
        """A fresh 256-bit data key, wrapped under the managed key (envelope encryption)."""
        data_key = secrets.token_bytes(32)
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref)
            self._usable(key, Operation.ENCRYPT)
            sealed = self._seal(session, key, data_key, context)
        self._record_use(
            key, "key.datakey", actor, sealed.key_version,
            {"clear_copy_returned": include_plaintext}, Operation.ENCRYPT,
        )  # fmt: skip
        return DataKey(
            data_key if include_plaintext else None,
            sealed.ciphertext,
            sealed.key_id,
            sealed.key_version,
        )

    # ------------------------------------------------------------------ signatures
    @guarded("key.sign")
    def sign(self, ref: str, message: bytes, *, actor: str, context: bytes = b"") -> Signed:
        """Sign with the primary version; the signature is the algorithm's standard bytes.

        Contexts starting with ``qrc-`` are the service's own signing domains (audit
        checkpoints): no caller may sign under them, with any key.
        """
        if context.startswith(RESERVED_CONTEXT_PREFIX):
            raise InvalidRequest(
                f"signature contexts starting with {RESERVED_CONTEXT_PREFIX!r} are reserved"
            )
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref)
            self._usable(key, Operation.SIGN)
            version = key.primary_version
            material = expect(self.ctx.material.private(session, key, version), SigningKey)
        try:
            signature = material.sign(message, context)
        except ValueError as exc:  # e.g. a context over the scheme's limit: bad input
            raise InvalidRequest(str(exc)) from None
        self._record_use(key, "key.sign", actor, version, {"bytes": len(message)}, Operation.SIGN)
        return Signed(signature, key.id, version)

    @guarded("key.verify")
    def verify(
        self,
        ref: str,
        message: bytes,
        signature: bytes,
        *,
        actor: str,
        context: bytes = b"",
        recovery: bool = False,
        key_version: int | None = None,
    ) -> int | None:
        """The version whose public key verifies the signature, or ``None`` if none does.

        ``key_version`` (as :meth:`sign` answered it) checks that version alone. Without it,
        the :data:`MAX_VERSIONS_TRIED` newest versions still allowed to verify are tried, so
        that a bad signature costs a bounded amount of work however often the key rotated.
        """
        with self.ctx.db.read_session() as session:
            key = self.ctx.find_for_use(session, ref)
            self._usable(key, Operation.VERIFY, recovery=recovery)
            lowest = key.min_decryption_version
            if key_version is not None:
                readable = lowest <= key_version <= key.primary_version
                candidates = [key_version] if readable else []
            else:
                oldest = max(lowest, key.primary_version - MAX_VERSIONS_TRIED + 1)
                candidates = list(range(key.primary_version, oldest - 1, -1))
            publics = [
                (version, expect(self.ctx.material.public_key(session, key, version), VerifyingKey))
                for version in candidates
            ]
        matched = None
        for version, public in publics:
            try:
                public.verify(signature, message, context)
            except InvalidSignature:
                continue
            matched = version
            break
        self._record_use(
            key, "key.verify", actor, matched, None, Operation.VERIFY,
            result="success" if matched else "invalid", recovery=recovery,
        )  # fmt: skip
        return matched

    # ------------------------------------------------------------------ public keys
    def public_key_pem(self, ref: str, version: int | None = None) -> str:
        """A version's public key as SPKI PEM (default: the primary version)."""
        with self.ctx.db.read_session() as session:
            key = self.ctx.find(session, ref)
            public = self.ctx.material.public_key(session, key, version or key.primary_version)
            return public_key_to_pem(public).decode("ascii")
