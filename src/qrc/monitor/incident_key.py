"""The key-compromise playbook (``qrc incident key-compromise KEY``).

Steps, in order (each skips what is already done, so a second run finishes the first):

1. ``contain`` — revoke the key as compromised (it no longer encrypts, signs, decrypts or
   verifies, except audited recovery decryptions), or only suspend it (``suspend=True``)
   while the compromise is unconfirmed. Revoking records the ``key_compromise`` security
   event, which the sinks send.
2. ``replace`` — a new key for the same purpose, labelled ``incident.replaces=<old key ID>``,
   with the policy's default algorithm for the purpose or the one asked for.
3. ``move-data`` — every indexed object under the old key whose location a target reaches
   (``sql:``, ``redis:``): its DEK is unwrapped by the compromised key (an audited recovery
   use) and wrapped under the replacement; the value is written back only if unchanged, and
   the index entry moves to the new key. The DEK itself stays: whoever held the compromised
   key could unwrap the DEKs of ciphertexts they copied, so the data must also be
   re-encrypted by its application where that matters (the report says so).
4. ``users`` — the API tokens scoped to the old key (the new key must be granted by hand).
5. ``certificates`` — certificates signed by the key: only the CA's keys sign certificates,
   and they are reserved (a CA compromise is its own procedure, ``docs/incident-response.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from qrc.crypto.errors import DecryptionError
from qrc.data.format import WRAP_CONTEXT, parse, replace_wrapped
from qrc.data.rewrap import RewrapTarget
from qrc.data.sdk import integrity_hash
from qrc.keys.audit.events import EventType
from qrc.keys.context import KeyInfo
from qrc.keys.data_index import IndexEntry, IndexRecord
from qrc.keys.faults import fault_point
from qrc.keys.states import KeyState
from qrc.monitor.incident import IncidentReport, Notifier, PlaybookRun, Progress

if TYPE_CHECKING:
    from qrc.keys.service import KeyService

__all__ = ["REPLACES_LABEL", "key_compromise"]

REPLACES_LABEL = "incident.replaces"
_PAGE = 200


class _KeyCompromise(PlaybookRun):
    playbook = "key_compromise"

    def __init__(
        self,
        service: KeyService,
        key: KeyInfo,
        *,
        suspend: bool,
        algorithm: str | None,
        targets: Mapping[str, RewrapTarget],
        actor: str,
        execute: bool,
        notifier: Notifier | None,
        progress: Progress | None,
    ) -> None:
        super().__init__(
            service, key.name, actor=actor, execute=execute, notifier=notifier, progress=progress
        )
        self.key = key
        self.suspend = suspend
        self.algorithm = algorithm
        self.targets = targets
        self.replacement: KeyInfo | None = self._find_replacement()

    # ------------------------------------------------------------------ lookups
    def _find_replacement(self) -> KeyInfo | None:
        after = None
        while True:
            page, after = self.service.keys.list_keys(
                name_prefix=self.key.name, limit=1000, after=after
            )
            for info in page:
                if info.labels.get(REPLACES_LABEL) == self.key.id and info.status in (
                    KeyState.ACTIVE,
                    KeyState.PRE_ACTIVE,
                ):
                    return info
            if after is None:
                return None

    def _objects(self) -> Iterator[IndexRecord]:
        """The objects indexed under the old key, a page at a time (moving one takes it out
        of the old key's list, not out of the pages still to come)."""
        after = 0
        while page := self.service.data.under(self.key.id, after=after, limit=_PAGE):
            yield from page
            after = page[-1].seq

    # ------------------------------------------------------------------ plan
    def plan(self) -> None:
        state = self.key.status
        if self.suspend:
            self.add("contain", "suspend the key: no operation until resumed or revoked")
        else:
            self.add("contain", "revoke the key as compromised (key_compromise security event)")
        if self.replacement is not None:
            action = f"use the replacement made before: {self.replacement.name}"
        else:
            defaults = self.service.current_policy()["default_algorithms"]
            target = self.algorithm or defaults.get(self.key.purpose, "the policy's default")
            action = f"create {self._replacement_name()} ({target}) for {self.key.purpose}"
        self.add("replace", action)
        objects = reachable = 0
        unreachable: dict[str, int] = {}
        for record in self._objects():
            objects += 1
            scheme = self._scheme(record)
            if scheme in self.targets:
                reachable += 1
            else:
                unreachable[scheme] = unreachable.get(scheme, 0) + 1
        move = self.add(
            "move-data",
            f"move the DEKs of {reachable} of {objects} indexed objects to the "
            "replacement (recovery unwraps, audited)",
        )
        move.detail["objects"] = objects
        if unreachable:
            move.detail["no_target"] = unreachable
        if self.suspend and objects:
            move.action = "none while suspended: a suspended key cannot unwrap (revoke to move)"
        self.add("users", "list the API tokens scoped to the key (grant them the replacement)")
        self.add("certificates", "none to reissue: only the CA's (reserved) keys sign certificates")
        self.report.step("contain").detail["state"] = state

    def _replacement_name(self) -> str:
        return f"{self.key.name}-replacement"

    @staticmethod
    def _scheme(record: IndexRecord) -> str:
        return (record.location or "").partition(":")[0] or "none"

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self._contain()
        self._replace()
        self._move_data()
        self._users()
        self._certificates()

    def _contain(self) -> None:
        step = self.report.step("contain")
        current = self.service.keys.get_key(self.key.id)
        if current.status == KeyState.COMPROMISED:
            self.finish_step(step, "already done", state=current.status)
            return
        if self.suspend:
            if current.status == KeyState.SUSPENDED:
                self.finish_step(step, "already done", state=current.status)
                return
            self.key = self.service.keys.suspend(self.key.id, actor=self.actor)
            self.security_event(
                EventType.KEY_COMPROMISE,
                key_id=self.key.id,
                description="A key is suspected compromised",
                action_taken="key suspended pending confirmation (qrc incident --suspend)",
            )
        else:
            self.key = self.service.keys.revoke(self.key.id, "key_compromise", actor=self.actor)
        self.finish_step(step, "done", state=self.key.status)

    def _replace(self) -> None:
        step = self.report.step("replace")
        if self.replacement is not None:
            self.finish_step(step, "already done", key=self.replacement.name)
            return
        name = self._replacement_name()
        self.replacement = self.service.keys.create_key(
            name=name,
            purpose=self.key.purpose,
            algorithm=self.algorithm,
            labels={**self.key.labels, REPLACES_LABEL: self.key.id},
            actor=self.actor,
        )
        self.finish_step(
            step, "done", key=self.replacement.name, algorithm=self.replacement.algorithm
        )

    def _move_data(self) -> None:
        step = self.report.step("move-data")
        if self.replacement is None:
            raise RuntimeError("the replacement key is made before data moves")
        if self.suspend:
            remaining = sum(1 for _ in self._objects())
            self.finish_step(step, "skipped" if not remaining else "failed", remaining=remaining)
            return
        new = self.replacement
        memo: dict[bytes, bytes] = {}
        moved = missing = changed = 0
        left: dict[str, int] = {}
        for record in self._objects():
            scheme = self._scheme(record)
            target = self.targets.get(scheme)
            location = record.location or ""
            if target is None:
                left[scheme] = left.get(scheme, 0) + 1
                continue
            try:
                old = target.read(location)
                header = parse(old) if old is not None else None
            except DecryptionError:  # not a data envelope any more
                old, header = b"", None
            if old is None:
                missing += 1
                continue
            if header is not None and header.key_id == new.id:
                # Written by a run that stopped before the index heard of it.
                self._reindex(record, new, header.key_version, old)
                moved += 1
                continue
            if header is None or header.key_id != self.key.id:
                changed += 1  # rewritten by its application since it was indexed
                continue
            digest = hashlib.sha256(header.wrapped_key).digest()
            wrapped = memo.get(digest)
            if wrapped is None:
                dek = self.service.crypto.decrypt(
                    self.key.id,
                    header.wrapped_key,
                    actor=self.actor,
                    context=WRAP_CONTEXT,
                    recovery=True,
                )
                sealed = self.service.crypto.encrypt(
                    new.id, dek, actor=self.actor, context=WRAP_CONTEXT
                )
                wrapped = memo[digest] = sealed.ciphertext
            fresh = replace_wrapped(old, new.id, new.version, wrapped)
            if not target.write_if_unchanged(location, old, fresh):
                changed += 1
                continue
            fault_point("incident-after-write")  # crash tests: written, not yet re-indexed
            self._reindex(record, new, new.version, fresh)
            moved += 1
            if moved % 100 == 0:
                self.say(f"move-data: {moved} objects moved")
        remaining = bool(left) or changed > 0 or missing > 0
        self.finish_step(
            step,
            "failed" if remaining else "done",
            moved=moved,
            deks=len(memo),
            missing=missing,
            changed_meanwhile=changed,
            no_target=left,
        )

    def _reindex(self, record: IndexRecord, new: KeyInfo, version: int, data: bytes) -> None:
        entry = IndexEntry(
            identifier=record.identifier,
            key=new.id,
            key_version=version,
            data_type=record.data_type or "unknown",
            location=record.location,
            integrity_hash=integrity_hash(data),
            data_class=record.data_class,
        )
        self.service.data.register([entry], actor=self.actor)

    def _users(self) -> None:
        step = self.report.step("users")
        scoped = [
            {"id": client.id, "name": client.name}
            for client, _ in self.service.tokens.list()
            if client.allowed_keys is not None and self.key.id in client.allowed_keys
        ]
        if scoped:
            if self.replacement is None:
                raise RuntimeError("the replacement key is made before tokens are listed")
            self.report.human_actions.insert(
                0,
                f"{len(scoped)} API token(s) are scoped to the compromised key: issue each a "
                f"token scoped to {self.replacement.name} (qrc token create NAME --role "
                f"crypto_user --key {self.replacement.id}) and revoke the old one "
                "(qrc token revoke ID).",
            )
        self.finish_step(step, "done", tokens=scoped)

    def _certificates(self) -> None:
        # Only the CA's reserved keys sign certificates, and the generic revoke refuses them:
        # reaching this step means the key signed none.
        self.finish_step(self.report.step("certificates"), "skipped", signed=0)


def key_compromise(
    service: KeyService,
    key: str,
    *,
    actor: str,
    execute: bool = False,
    suspend: bool = False,
    algorithm: str | None = None,
    targets: Mapping[str, RewrapTarget] | None = None,
    notifier: Notifier | None = None,
    progress: Progress | None = None,
) -> IncidentReport:
    """Plan (``execute=False``) or run the key-compromise playbook for ``key``.

    Raises:
        KeyNotFound: no such key (reserved keys are refused by the first step, with
            ``OperationNotPermitted``).
    """
    info = service.keys.get_key(key)
    run = _KeyCompromise(
        service,
        info,
        suspend=suspend,
        algorithm=algorithm,
        targets=targets or {},
        actor=actor,
        execute=execute,
        notifier=notifier,
        progress=progress,
    )
    run.plan()
    if run.report.step("move-data").detail["objects"]:
        run.report.human_actions.insert(
            0,
            "Have the applications that own the moved data re-encrypt it (decrypt, encrypt "
            "under the replacement): its DEKs were reachable with the compromised key.",
        )
    if not execute:
        return run.end()
    run.begin()
    try:
        run.run()
    finally:
        run.end()
    return run.report
