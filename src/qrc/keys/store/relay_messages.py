"""The relay's table, ``qrc_relay_messages`` (migration 0004); the queues that use it are
:mod:`qrc.keys.relay_queue`. Ciphertext only: agent messages sealed to their recipients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from qrc.keys.store.db import Base, UTCDateTime

__all__ = ["RelayMessage"]


class RelayMessage(Base):
    """One sealed message waiting for its recipient."""

    __tablename__ = "qrc_relay_messages"
    __table_args__ = (Index("ix_qrc_relay_messages_recipient_seq", "recipient", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    recipient: Mapped[str] = mapped_column(String(200))
    sender_actor: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
