"""the agent-message relay: per-recipient queues of sealed messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qrc.keys.store.db

# Registers the table's model on Base.metadata (until models.py imports it).
import qrc.keys.store.relay_messages

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLE = "qrc_relay_messages"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("sender_actor", sa.String(length=300), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("queued_at", qrc.keys.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", qrc.keys.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_qrc_relay_messages")),
        sa.UniqueConstraint("message_id", name=op.f("uq_qrc_relay_messages_message_id")),
    )
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        batch_op.create_index(
            "ix_qrc_relay_messages_recipient_seq", ["recipient", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_qrc_relay_messages_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qrc_relay_messages_expires_at"))
        batch_op.drop_index("ix_qrc_relay_messages_recipient_seq")
    op.drop_table(_TABLE)
