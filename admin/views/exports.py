"""CSV export of the filtered lists: messages, transactions, registrants, red flags.

Each list page links to its export with its own filters (`export_url`). The answer is streamed
(`stream_with_context`): rows are read in batches of `BATCH` by keyset on the id, newest first as
on the page, each batch in a short session of its own, so neither the process nor the database
ever holds the whole result, and no transaction stays open while the client reads.

Exports only read: auditors may export too, and see phone numbers masked as on the pages. Each
export is written to the audit log with its filters before the first row is sent. Text cells that
a spreadsheet would run as a formula (=, +, -, @ first) are prefixed with an apostrophe; message
bodies come from anyone with a phone.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Response, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin.views import flags as flag_views
from admin.views import messages as message_views
from admin.views import registrants as registrant_views
from admin.views import transactions as transaction_views
from admin.views.common import audited_view, bp, now, sees_phones
from gateway.models import Message, MessageEvent
from recpo.clock import LIMA
from recpo.runtime import current_runtime
from registry.identifiers import mask_phone
from registry.models import PhoneLink, PhoneLinkState, RedFlag, Registrant, Transaction

BATCH = 1000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Signed numbers and phone numbers, masked ones too ("+51******321"): nothing a spreadsheet could
# run but arithmetic on digits.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9][0-9.,*]*")

Rows = Callable[[Session, list[Any], Callable[[str | None], str]], Iterable[list[Any]]]


@dataclass(frozen=True)
class Export:
    """What one list exports: its filtered query, the id it pages on, the columns it reads (plain
    rows, not ORM objects: several times faster), the CSV header and the CSV rows of a batch."""

    kind: str
    statement: sa.Select
    id_column: Any
    columns: list[Any]
    header: list[str]
    rows: Rows  # (session, batch of rows, phone formatter) -> CSV rows


def _text(value: str) -> str:
    if value[:1] in _FORMULA_START and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _time(value: dt.datetime) -> str:
    return value.astimezone(LIMA).isoformat(timespec="seconds")


_CELLS: dict[type, Callable[[Any], str]] = {
    str: _text,
    int: str,
    Decimal: str,
    bool: lambda value: "yes" if value else "no",
    dt.datetime: _time,
    type(None): lambda _value: "",
}


def cell(value: Any) -> str:
    """One CSV cell: times in Peru (ISO 8601), enums by value, no formula a spreadsheet runs."""
    convert = _CELLS.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, enum.Enum):
        return _text(str(value.value))
    if isinstance(value, dt.datetime):
        return _time(value)
    return _text(str(value))


def stream_rows(export: Export, phone: Callable[[str | None], str]) -> Iterator[str]:
    """The CSV text of `export`, one chunk per batch (a byte-order mark first, for Excel)."""
    database = current_runtime().database
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export.header)
    yield "\ufeff" + buffer.getvalue()
    cursor: int | None = None
    base = export.statement.with_only_columns(*export.columns)
    while True:
        statement = base
        if cursor is not None:
            statement = statement.where(export.id_column < cursor)
        with database.sessionmaker() as session:
            batch = session.execute(statement.order_by(export.id_column.desc()).limit(BATCH)).all()
            if not batch:
                return
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(
                [cell(value) for value in row] for row in export.rows(session, batch, phone)
            )
        yield buffer.getvalue()
        if len(batch) < BATCH:
            return
        cursor = batch[-1].id


def respond(export: Export, filters: dict[str, Any]) -> ResponseReturnValue:
    """Audit the export, then stream it as a `text/csv` attachment."""
    audited_view(
        f"export.{export.kind}",
        "export",
        export.kind,
        filters={k: v for k, v in filters.items() if v not in (None, "", False)},
    )
    masked = not sees_phones()

    def phone(value: str | None) -> str:
        if not value:
            return ""
        return mask_phone(value) if masked else value

    stamp = now().astimezone(LIMA).strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(stream_rows(export, phone)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{export.kind}-{stamp}.csv"',
            "X-Accel-Buffering": "no",  # let a proxy pass the rows on as they come
        },
    )


# --- the four lists -----------------------------------------------------------------------------


MESSAGE_COLUMNS = [
    Message.id,
    Message.created_at,
    Message.channel,
    Message.direction,
    Message.phone,
    Message.status,
    Message.encoding,
    Message.segments,
    Message.provider_id,
    Message.in_reply_to,
    Message.simulated,
    Message.body,
]


def _message_rows(session: Session, batch: list[Any], phone: Callable) -> Iterator[list]:
    history: dict[int, list[str]] = {}
    for message_id, status in session.execute(
        sa.select(MessageEvent.message_id, MessageEvent.status)
        .where(MessageEvent.message_id.in_([m.id for m in batch]))
        .order_by(MessageEvent.id)
    ):
        history.setdefault(message_id, []).append(status.value)
    for m in batch:
        yield [
            m.id,
            m.created_at,
            m.channel,
            m.direction,
            phone(m.phone),
            m.status,
            " > ".join(history.get(m.id, [])),
            m.encoding,
            m.segments,
            m.provider_id,
            m.in_reply_to,
            m.simulated,
            m.body,
        ]


@bp.get("/messages.csv")
def export_messages() -> ResponseReturnValue:
    """The message log as CSV, with the page's filters."""
    filters = message_views.filters_from_args()
    export = Export(
        "messages",
        message_views.list_statement(filters),
        Message.id,
        MESSAGE_COLUMNS,
        [
            "id",
            "created_at",
            "channel",
            "direction",
            "phone",
            "status",
            "status_history",
            "encoding",
            "segments",
            "provider_id",
            "in_reply_to",
            "simulated",
            "body",
        ],
        _message_rows,
    )
    return respond(export, filters)


def _transaction_rows(session: Session, batch: list[Any], _phone: Callable) -> Iterator[list]:
    ids = [t.id for t in batch]
    names = transaction_views.names_of(
        session, {t.buyer_id for t in batch} | {t.seller_id for t in batch}
    )
    flagged: dict[int, list[str]] = {}
    for transaction_id, rule in session.execute(
        sa.select(RedFlag.transaction_id, RedFlag.rule)
        .where(RedFlag.transaction_id.in_(ids))
        .order_by(RedFlag.id)
    ):
        flagged.setdefault(transaction_id, []).append(rule)

    def party(registrant_id: int) -> tuple[str, str]:
        r = names.get(registrant_id)
        return (f"{r.document_type.label} {r.document_number}", r.name) if r else ("", "")

    for t in batch:
        yield [
            t.id,
            t.created_at,
            t.decided_at,
            t.status,
            t.initiator,
            *party(t.buyer_id),
            *party(t.seller_id),
            t.seller_ruc,
            t.material,
            t.quantity,
            t.unit,
            t.grade,
            t.fine_gold_g,
            t.price_pen,
            t.department,
            t.province,
            t.district,
            t.ubigeo,
            t.receipt_code,
            " ".join(flagged.get(t.id, [])),
        ]


@bp.get("/transactions.csv")
def export_transactions() -> ResponseReturnValue:
    """The transactions as CSV, with the page's filters."""
    filters = transaction_views.filters_from_args()
    export = Export(
        "transactions",
        transaction_views.list_statement(filters),
        Transaction.id,
        [
            Transaction.id,
            Transaction.created_at,
            Transaction.decided_at,
            Transaction.status,
            Transaction.initiator,
            Transaction.buyer_id,
            Transaction.seller_id,
            Transaction.seller_ruc,
            Transaction.material,
            Transaction.quantity,
            Transaction.unit,
            Transaction.grade,
            Transaction.fine_gold_g,
            Transaction.price_pen,
            Transaction.department,
            Transaction.province,
            Transaction.district,
            Transaction.ubigeo,
            Transaction.receipt_code,
        ],
        [
            "id",
            "created_at",
            "decided_at",
            "status",
            "initiator",
            "buyer_document",
            "buyer_name",
            "seller_document",
            "seller_name",
            "seller_ruc",
            "material",
            "quantity",
            "unit",
            "grade",
            "fine_gold_g",
            "price_pen",
            "department",
            "province",
            "district",
            "ubigeo",
            "receipt_code",
            "red_flags",
        ],
        _transaction_rows,
    )
    return respond(export, filters)


def _registrant_rows(session: Session, batch: list[Any], phone: Callable) -> Iterator[list]:
    phones: dict[int, list[str]] = {}
    for registrant_id, number in session.execute(
        sa.select(PhoneLink.registrant_id, PhoneLink.phone)
        .where(
            PhoneLink.registrant_id.in_([r.id for r in batch]),
            PhoneLink.state == PhoneLinkState.ACTIVE,
        )
        .order_by(PhoneLink.id)
    ):
        phones.setdefault(registrant_id, []).append(phone(number))
    for r in batch:
        yield [
            r.id,
            r.role,
            r.document_type.label,
            r.document_number,
            r.name,
            r.language,
            r.recpo_number,
            r.status,
            " ".join(phones.get(r.id, [])),
            r.created_at,
            r.updated_at,
        ]


@bp.get("/registrants.csv")
def export_registrants() -> ResponseReturnValue:
    """The registrants found by the page's search (all of them without one), as CSV."""
    query = registrant_views.query_arg()
    export = Export(
        "registrants",
        registrant_views.list_statement(query),
        Registrant.id,
        [
            Registrant.id,
            Registrant.role,
            Registrant.document_type,
            Registrant.document_number,
            Registrant.name,
            Registrant.language,
            Registrant.recpo_number,
            Registrant.status,
            Registrant.created_at,
            Registrant.updated_at,
        ],
        [
            "id",
            "role",
            "document_type",
            "document_number",
            "name",
            "language",
            "recpo_number",
            "status",
            "active_phones",
            "created_at",
            "updated_at",
        ],
        _registrant_rows,
    )
    return respond(export, {"q": query})


def _flag_rows(session: Session, batch: list[Any], phone: Callable) -> Iterator[list]:
    for f in batch:
        yield [
            f.id,
            f.created_at,
            f.updated_at,
            f.rule,
            f.status,
            f.reason,
            phone(f.phone),
            f.document,
            f.transaction_id,
            f.note,
        ]


@bp.get("/flags.csv")
def export_flags() -> ResponseReturnValue:
    """The red-flag queue as CSV, with the page's filters."""
    status, rule = flag_views.filters_from_args(flag_views.known_rules())
    export = Export(
        "flags",
        flag_views.list_statement(status, rule),
        RedFlag.id,
        [
            RedFlag.id,
            RedFlag.created_at,
            RedFlag.updated_at,
            RedFlag.rule,
            RedFlag.status,
            RedFlag.reason,
            RedFlag.phone,
            RedFlag.document,
            RedFlag.transaction_id,
            RedFlag.note,
        ],
        [
            "id",
            "created_at",
            "updated_at",
            "rule",
            "status",
            "reason",
            "phone",
            "document",
            "transaction_id",
            "note",
        ],
        _flag_rows,
    )
    return respond(export, {"status": status, "rule": rule})
