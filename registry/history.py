"""Status history: every change of a REINFO registration's estado and of a registrant's standing.

Rows are only ever added (`registry.models.StatusChange`). The REINFO import records a
registration's first estado and each later change, set-based (one INSERT ... SELECT per batch);
the registrant import records each registrant it creates; the console records a DGFM user
suspending, closing or restoring a registrant, with their note.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, joinedload

from recpo.db import UTCDateTime
from registry.models import Registrant, RegistrantStatus, StatusChange, StatusSource

HISTORY_LIMIT = 100

_CHANGES = StatusChange.__table__
_COLUMNS = (
    *("registration_id", "old_status", "new_status", "changed_at", "source", "snapshot_date"),
    *("source_file", "changed_by"),
)  # of a REINFO import's rows

# (the registration's id, its estado before (None: first seen), its estado now)
ReinfoChange = tuple[int, str | None, str]


@functools.cache
def _reinfo_statement() -> sa.Insert:
    """PostgreSQL: one INSERT ... SELECT for a batch, its rows passed as three arrays."""
    rows = (
        sa.func.unnest(
            sa.bindparam("ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("olds", type_=ARRAY(sa.String)),
            sa.bindparam("news", type_=ARRAY(sa.String)),
        )
        .table_valued("registration_id", "old_status", "new_status")
        .render_derived(name="k")
    )
    return _CHANGES.insert().from_select(
        list(_COLUMNS),
        sa.select(
            rows.c.registration_id,
            rows.c.old_status,
            rows.c.new_status,
            sa.bindparam("changed_at", type_=UTCDateTime()),
            sa.literal(StatusSource.REINFO_IMPORT, _CHANGES.c.source.type),
            sa.bindparam("snapshot_date", type_=sa.Date),
            sa.bindparam("source_file", type_=sa.String),
            sa.bindparam("changed_by", type_=sa.String),
        ),
    )


def record_reinfo_changes(
    connection: sa.Connection,
    changes: Sequence[ReinfoChange],
    *,
    snapshot_date: dt.date,
    now: dt.datetime,
    source_file: str | None,
    changed_by: str | None = None,
) -> None:
    """Record the estado of registrations an import inserted, or whose estado it changed."""
    if not changes:
        return
    source = {
        "changed_at": now,
        "snapshot_date": snapshot_date,
        "source_file": source_file[:200] if source_file else None,
        "changed_by": changed_by[:80] if changed_by else None,
    }
    if connection.dialect.name == "postgresql":
        ids, olds, news = zip(*changes, strict=True)
        connection.execute(_reinfo_statement(), {"ids": ids, "olds": olds, "news": news, **source})
        return
    connection.execute(
        _CHANGES.insert(),
        [
            {
                "registration_id": id_,
                "old_status": old,
                "new_status": new,
                "source": StatusSource.REINFO_IMPORT,
                **source,
            }
            for id_, old, new in changes
        ],
    )


def record_registrants_created(
    session: Session,
    registrants: Sequence[Registrant],
    *,
    now: dt.datetime,
    source_file: str | None,
    changed_by: str | None = None,
) -> None:
    """Record the first standing of registrants an import created (they must have ids)."""
    if not registrants:
        return
    session.execute(
        _CHANGES.insert(),
        [
            {
                "registrant_id": registrant.id,
                "old_status": None,
                "new_status": _value(registrant.status or RegistrantStatus.ACTIVE),
                "changed_at": now,
                "source": StatusSource.REGISTRANT_IMPORT,
                "source_file": source_file[:200] if source_file else None,
                "changed_by": changed_by[:80] if changed_by else None,
            }
            for registrant in registrants
        ],
    )


def change_standing(
    session: Session,
    registrant: Registrant,
    status: RegistrantStatus,
    *,
    now: dt.datetime,
    changed_by: str,
    note: str,
) -> StatusChange | None:
    """Set a registrant's standing from the console; return the change (None: already so)."""
    if registrant.status is status:
        return None
    change = StatusChange(
        registrant_id=registrant.id,
        old_status=_value(registrant.status),
        new_status=status.value,
        changed_at=now,
        source=StatusSource.CONSOLE,
        changed_by=changed_by[:80],
        note=note[:500],
    )
    registrant.status = status
    registrant.updated_at = now
    session.add(change)
    return change


def history_of(
    session: Session,
    registrant_id: int,
    registration_ids: Sequence[int] = (),
    limit: int = HISTORY_LIMIT,
) -> list[StatusChange]:
    """The status changes of a registrant and of its REINFO registrations, newest first."""
    subject = StatusChange.registrant_id == registrant_id
    if registration_ids:
        subject = sa.or_(subject, StatusChange.registration_id.in_(list(registration_ids)))
    return list(
        session.scalars(
            sa.select(StatusChange)
            .where(subject)
            .options(joinedload(StatusChange.registration))
            .order_by(StatusChange.changed_at.desc(), StatusChange.id.desc())
            .limit(limit)
        )
    )


def _value(status: Any) -> str:
    return getattr(status, "value", status)
