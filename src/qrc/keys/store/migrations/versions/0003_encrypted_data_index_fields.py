"""the encrypted-data index: unique identifiers, data type, location, integrity hash,
rewrap time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qrc.keys.store.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLE = "qrc_encrypted_data_index"


def upgrade() -> None:
    # Identifiers become unique: a repeated one (possible before) keeps its first row's
    # name and the others get "#<id>" appended, so that nothing is lost.
    op.execute(
        "UPDATE qrc_encrypted_data_index SET data_ref = data_ref || '#' || CAST(id AS VARCHAR(20)) "
        "WHERE id NOT IN (SELECT MIN(id) FROM qrc_encrypted_data_index GROUP BY data_ref)"
    )
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("location", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("integrity_hash", sa.String(length=80), nullable=True))
        batch_op.add_column(
            sa.Column("rewrapped_at", qrc.keys.store.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_qrc_encrypted_data_index_data_ref"), ["data_ref"]
        )


def downgrade() -> None:
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_qrc_encrypted_data_index_data_ref"), type_="unique")
        batch_op.drop_column("rewrapped_at")
        batch_op.drop_column("integrity_hash")
        batch_op.drop_column("location")
        batch_op.drop_column("data_type")
