"""Open the key service of a data directory from plain configuration values.

:class:`qrc.server.config.Settings` reads the environment and builds a
:class:`ServiceConfig`; nothing in :mod:`qrc.keys` reads ``QRC_*`` variables itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from qrc.keys.audit.anchor import (
    ANCHOR_FILE,
    MAC_KEY_FILE,
    AuditAnchor,
    DataObjects,
    FileAnchor,
    MacKeyFile,
    TokenAnchor,
)
from qrc.keys.audit.log import AuditLog
from qrc.keys.audit.witness import WITNESS_FILE, FileWitness
from qrc.keys.custody.factory import CustodyConfig, kek_loader, open_custody
from qrc.keys.custody.keyring import Keyring
from qrc.keys.faults import arm
from qrc.keys.lifecycle.keys import DEFAULT_DESTRUCTION_DELAY, MIN_DESTRUCTION_DELAY
from qrc.keys.observers import Observer
from qrc.keys.policy import AlgorithmPolicy
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

__all__ = ["DEFAULT_DATA_DIR", "ServiceConfig", "open_service"]

DEFAULT_DATA_DIR = Path(".qrc")


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the key service needs to open: store, custody, waiting periods."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    custody: CustodyConfig = field(default_factory=CustodyConfig)
    destruction_delay: timedelta = DEFAULT_DESTRUCTION_DELAY
    min_destruction_delay: timedelta = MIN_DESTRUCTION_DELAY
    sqlite_synchronous: str = "NORMAL"
    test_fault: str | None = None
    audit_anchor: Path | None = None  # default DATA_DIR/audit-keys.jsonl
    audit_witness: Path | None = None  # default DATA_DIR/audit-witness.note

    @property
    def store_url(self) -> str:
        """The configured database, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'qrc.db'}"


def open_service(
    config: ServiceConfig,
    *,
    migrate: bool = True,
    policy: AlgorithmPolicy | None = None,
    observers: Iterable[Observer] = (),
) -> KeyService:
    """The key service of ``config``, its store migrated to the current schema."""
    arm(config.test_fault)
    directory = config.data_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(config.store_url, sqlite_synchronous=config.sqlite_synchronous)
    if migrate:
        db.upgrade()
    custody = open_custody(directory, config.custody)
    with db.session() as session:
        next_seq = AuditLog.head(session)[0] + 1
    anchor_path = config.audit_anchor or directory / ANCHOR_FILE
    mac = MacKeyFile(anchor_path.with_name(MAC_KEY_FILE)).load_or_create(next_seq)
    anchor: AuditAnchor = FileAnchor(anchor_path)
    if isinstance(custody, DataObjects):  # an HSM holds the pinned keys
        anchor = TokenAnchor(custody, mirror=anchor)
    return KeyService(
        db,
        Keyring(custody, loader=kek_loader(directory, config.custody)),
        destruction_delay=config.destruction_delay,
        min_destruction_delay=config.min_destruction_delay,
        policy=policy,
        observers=observers,
        audit_anchor=anchor,
        witness=FileWitness(config.audit_witness or directory / WITNESS_FILE),
        audit_mac=mac,
    )
