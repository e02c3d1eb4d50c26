"""Group commit of key uses: crypto work outside the write transaction, audit events together.

Attacks and races: a key revoked while an encryption is in flight must refuse it (the
ciphertext never answered, no success in the audit chain); many concurrent operations must
each get their own event, in one unbroken chain, on SQLite and PostgreSQL; a database that
refuses the batch fails every operation in it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.keys.audit.log import AuditWriteError
from qrc.keys.errors import OperationNotPermitted
from qrc.keys.service import KeyService
from tests.keys.conftest import refuse_audit_writes

THREADS = 16


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def _run(target: Callable[[], Any], results: list[Any]) -> threading.Thread:
    def call() -> None:
        try:
            results.append(target())
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def _events(service: KeyService, event_type: str) -> list[Any]:
    events, _cursor = service.audit.query(event_type=event_type, limit=1000)
    return events


def test_concurrent_uses_each_get_one_event_in_an_unbroken_chain(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    service.keys.create_key(name="s", purpose="signing", actor="t")
    results: list[Any] = []
    threads = []
    for i in range(THREADS):
        if i % 2:
            threads.append(
                _run(partial(service.crypto.encrypt, "k", b"%d" % i, actor="a"), results)
            )
        else:
            threads.append(_run(partial(service.crypto.sign, "s", b"%d" % i, actor="a"), results))
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, Exception)]
    assert len(_events(service, "key.encrypt")) == THREADS // 2
    assert len(_events(service, "key.sign")) == THREADS // 2
    assert service.usage.events == THREADS
    assert service.audit.verify().valid


def test_waiting_uses_commit_in_one_transaction(tmp_service: KeyService) -> None:
    service = tmp_service
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    results: list[Any] = []
    with service.db._writer:  # the store's write turn: every batch waits for it
        threads = [
            _run(lambda: service.crypto.encrypt("k", b"x", actor="a"), results)
            for _ in range(THREADS)
        ]
        # The first leader took its batch and waits for the store; the others wait for it.
        _until(lambda: service.usage.batches == 1)
        _until(lambda: service.usage.events + service.usage.waiting == THREADS)
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, Exception)]
    assert service.usage.batches == 2  # the leader's own, then all the others at once
    assert len(_events(service, "key.encrypt")) == THREADS
    assert service.audit.verify().valid


def test_key_revoked_while_encrypting_refuses_the_encryption(tmp_service: KeyService) -> None:
    service = tmp_service
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    results: list[Any] = []
    with service.db._writer:
        thread = _run(lambda: service.crypto.encrypt("k", b"secret", actor="app"), results)
        _until(lambda: service.usage.batches == 1)  # sealed; waits to record its use
        service.keys.revoke("k", "superseded", actor="admin")  # our turn is re-entrant
    thread.join()
    assert isinstance(results[0], OperationNotPermitted)
    encrypts = _events(service, "key.encrypt")
    assert [event.result for event in encrypts] == ["denied"]


def test_version_retired_while_decrypting_refuses(tmp_service: KeyService) -> None:
    service = tmp_service
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    old = service.crypto.encrypt("k", b"secret", actor="app")
    service.keys.rotate("k", actor="admin")
    results: list[Any] = []
    with service.db._writer:
        thread = _run(lambda: service.crypto.decrypt("k", old.ciphertext, actor="app"), results)
        _until(lambda: service.usage.batches == 2)
        service.keys.set_min_decryption_version("k", 2, actor="admin")
    thread.join()
    assert isinstance(results[0], OperationNotPermitted)
    assert not isinstance(results[0], DecryptionError)


def test_a_refused_batch_fails_every_operation_in_it(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    refuse_audit_writes(service.db)
    results: list[Any] = []
    threads = [
        _run(lambda: service.crypto.encrypt("k", b"x", actor="a"), results) for _ in range(8)
    ]
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(isinstance(r, AuditWriteError) for r in results), results


@pytest.fixture
def tmp_service(tmp_path: Any) -> KeyService:
    """A SQLite service: the tests that hold the store's write turn need its writer queue."""
    from tests.api.conftest import build_service

    return build_service(tmp_path / "svc")


def test_a_stale_snapshot_never_lets_a_revoked_key_be_used(service: KeyService) -> None:
    """Another node revokes the key (here: the row changed behind this process's back, as
    another process would): the snapshot this process holds still says active, but the
    commit-time check reads the key as committed and refuses."""
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    service.crypto.encrypt("k", b"warm", actor="app")  # the snapshot is now cached
    with service.db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE qrc_keys SET status = 'deactivated' WHERE name = 'k'")
    with pytest.raises(OperationNotPermitted):
        service.crypto.encrypt("k", b"secret", actor="app")
    assert [e.result for e in _events(service, "key.encrypt")] == ["success", "denied"]


def test_a_change_in_this_process_is_seen_by_the_next_use(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="t")
    assert service.crypto.encrypt("k", b"x", actor="app").key_version == 1
    service.keys.rotate("k", actor="admin")
    assert service.crypto.encrypt("k", b"x", actor="app").key_version == 2
