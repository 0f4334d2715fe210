"""Tables of the verifiable log.

`ledger_queue` is where callers' entries wait, committed in the caller's own transaction; the
sequencer moves them, in order and in batches, into the append-only tables `ledger_entries`,
`ledger_nodes` (every complete subtree hash, so a root or a proof costs O(log n) reads) and
`ledger_checkpoints`. `ledger_state` holds the tree size and is the one serialisation point.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from recpo.db import Base

APPEND_ONLY_TABLES = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")


class QueuedEntry(Base):
    """An entry accepted with the caller's transaction, waiting for the sequencer."""

    __tablename__ = "ledger_queue"
    # Ids are never reused, on SQLite too, so a sequenced entry's queue_id stays unique.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    receipt_code: Mapped[str | None] = mapped_column(sa.String(16), unique=True)
    queued_at: Mapped[dt.datetime]


class Entry(Base):
    """One sequenced entry: its index, the exact bytes hashed, and its leaf hash."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(sa.LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    kind: Mapped[str] = mapped_column(sa.String(40))
    receipt_code: Mapped[str | None] = mapped_column(sa.String(16), unique=True)
    queue_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    sequenced_at: Mapped[dt.datetime]


class Node(Base):
    """The hash of the complete subtree at (level, index): leaves are level 0."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class SignedCheckpoint(Base):
    """A signed checkpoint; the primary key on size means one root per size, ever."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    note: Mapped[str] = mapped_column(sa.Text)
    signed_at: Mapped[dt.datetime]


class State(Base):
    """The tree head as the sequencer left it; its single row is locked to sequence."""

    __tablename__ = "ledger_state"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    last_leaf_hash: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))
