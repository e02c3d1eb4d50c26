"""the story's columns: key strength, and the security events' description, quantum-threat
flag and action taken

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:00:00

``qrc_keys.key_strength`` is the NIST security category of the key's algorithm (0 for a
classical one), filled here for existing keys from the registry. Security events recorded
before this revision get the description and action of their type as the service records
them now (the texts are copied here, so that this revision never changes with the code),
and ``is_quantum_threat_related`` true for classical TLS handshakes.

The encrypted-data index needs nothing here: revision 0003 gave it the unique identifier
(``data_ref``, the story's ``data_identifier``) and ``integrity_hash``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import get_info

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# event type: (description, quantum-threat related, action taken), as of this revision.
_EVENTS: dict[str, tuple[str, bool, str | None]] = {
    "authentication_failure": (
        "A request without a valid API token",
        False,
        "request refused (401)",
    ),
    "decryption_failure_burst": (
        "Many failed decryptions on one key within a minute (possible decryption-oracle probing)",
        False,
        "recorded for review; the key stays usable",
    ),
    "audit_verification_failure": (
        "The audit chain or a checkpoint failed verification",
        False,
        "verification reported invalid",
    ),
    "hsm_offline": (
        "The root key encryption key could not be reached",
        False,
        "unwrapped keys dropped from memory; key operations refused until it returns",
    ),
    "hsm_recovered": ("The root key encryption key is reachable again", False, None),
    "key_compromise": (
        "A key was revoked as compromised",
        False,
        "key moved to compromised: it no longer encrypts or signs",
    ),
    "compromised_key_recovery_use": (
        "A compromised key decrypted data for recovery",
        False,
        "decryption allowed for recovery and audited",
    ),
    "classical_tls_handshake": (
        "A TLS handshake without a post-quantum key exchange (harvest-now-decrypt-later risk)",
        True,
        "connection allowed by the listener's hybrid-preferred mode, and flagged",
    ),
    "tls_handshake_refused": (
        "A TLS handshake was refused",
        False,
        "handshake refused",
    ),
}


def _fill_key_strength() -> None:
    # The registry as of this code: an ID it does not know stays NULL.
    connection = op.get_bind()
    keys = sa.table("qrc_keys", sa.column("algorithm", sa.String), sa.column("key_strength"))
    for (algorithm,) in connection.execute(sa.select(keys.c.algorithm).distinct()).all():
        try:
            strength = get_info(algorithm).nist_level or 0
        except UnsupportedAlgorithm:
            continue
        connection.execute(
            keys.update().where(keys.c.algorithm == algorithm).values(key_strength=strength)
        )


def _fill_events() -> None:
    events = sa.table(
        "qrc_security_events",
        sa.column("event_type", sa.String),
        sa.column("description", sa.Text),
        sa.column("is_quantum_threat_related", sa.Boolean),
        sa.column("action_taken", sa.Text),
    )
    connection = op.get_bind()
    for event_type, (description, quantum, action) in _EVENTS.items():
        connection.execute(
            events.update()
            .where(events.c.event_type == event_type)
            .values(description=description, is_quantum_threat_related=quantum, action_taken=action)
        )


def upgrade() -> None:
    with op.batch_alter_table("qrc_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_strength", sa.Integer(), nullable=True))
    with op.batch_alter_table("qrc_security_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "is_quantum_threat_related",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("action_taken", sa.Text(), nullable=True))
    _fill_key_strength()
    _fill_events()


def downgrade() -> None:
    with op.batch_alter_table("qrc_security_events", schema=None) as batch_op:
        batch_op.drop_column("action_taken")
        batch_op.drop_column("is_quantum_threat_related")
        batch_op.drop_column("description")
    with op.batch_alter_table("qrc_keys", schema=None) as batch_op:
        batch_op.drop_column("key_strength")
