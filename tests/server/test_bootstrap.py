"""The bootstrap admin token: written once, audited, and fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrc.keys.access.tokens import Role
from qrc.keys.audit.log import AuditWriteError
from qrc.keys.service import KeyService
from qrc.server.bootstrap import ADMIN_TOKEN_FILE, BOOTSTRAP_ACTOR, bootstrap_admin_token
from tests.keys.conftest import refuse_audit_writes


def test_bootstrap_token_is_written_once_and_audited(service: KeyService, tmp_path: Path) -> None:
    path = bootstrap_admin_token(service, tmp_path)
    assert path == tmp_path / ADMIN_TOKEN_FILE and path.stat().st_mode & 0o777 == 0o600
    client = service.tokens.authenticate(path.read_text().strip())
    assert client is not None and client.role is Role.ADMIN
    events, _ = service.audit.query(event_type="token.create")
    assert [(e.actor, e.details["client_id"]) for e in events] == [(BOOTSTRAP_ACTOR, client.id)]
    first = path.read_text()
    bootstrap_admin_token(service, tmp_path)  # a restart: nothing new
    assert path.read_text() == first and len(service.tokens.list()) == 1


def test_no_bootstrap_token_when_an_admin_exists(service: KeyService, tmp_path: Path) -> None:
    service.tokens.create(name="ops", role="admin", actor="admin:alice")
    bootstrap_admin_token(service, tmp_path)
    assert not (tmp_path / ADMIN_TOKEN_FILE).exists()


def test_bootstrap_is_fail_closed(service: KeyService, tmp_path: Path) -> None:
    """No audit event, no token, and no token file left behind."""
    refuse_audit_writes(service.db)
    with pytest.raises(AuditWriteError):
        bootstrap_admin_token(service, tmp_path)
    assert service.tokens.list() == []
    assert not (tmp_path / ADMIN_TOKEN_FILE).exists()
