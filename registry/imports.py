"""Bulk imports: the public REINFO list and lists of registrants.

Both are idempotent upserts that stream the file in batches inside the caller's transaction, so a
run either lands whole or not at all, and running the same file twice changes nothing. A bad row is
rejected with its line number and reason (written to a report file) and never aborts the import;
a file that is not a CSV with the expected header is refused before anything is written.

Both keep the status history (`registry.history`): a registration's first estado and every change
of it, a registrant's creation, each naming the file (and the REINFO list's date).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import functools
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from registry import history
from registry.csvfiles import Column, CsvTable, FileRefused, Row, header_key
from registry.identifiers import (
    RUC_PREFIXES,
    DocumentType,
    InvalidIdentifier,
    normalise_codigo_unico,
    parse_document,
    parse_phone,
    parse_ruc,
    ruc_check_digit,
)
from registry.models import (
    Language,
    PhoneLink,
    PhoneLinkState,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Role,
)

__all__ = ["FileRefused", "ImportSummary", "import_registrants", "import_reinfo"]

BATCH_SIZE = 2000

Progress = Callable[[int], None]


class RowRejected(Exception):
    """A row that cannot be imported, with the reason a person can act on."""


@dataclass
class ImportSummary:
    """What an import did, row by row."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    report_path: Path | None = None
    _report_file: TextIO | None = field(default=None, repr=False)
    _report: Any = field(default=None, repr=False)

    @property
    def rows(self) -> int:
        """Data rows read, rejected ones included."""
        return self.inserted + self.updated + self.unchanged + self.rejected

    def reject(self, row: Row, reason: str) -> None:
        """Count a rejected row and write it to the report."""
        self.rejected += 1
        if self.report_path is None:
            return
        if self._report is None:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            self._report_file = self.report_path.open("w", encoding="utf-8", newline="")
            self._report = csv.writer(self._report_file)
            self._report.writerow(["line", "reason", "row"])
        self._report.writerow([row.line, reason, ";".join(row.raw)])

    def close(self) -> None:
        """Finish the report file, if one was started."""
        if self._report_file is not None:
            self._report_file.close()
            self._report_file = None

    def __str__(self) -> str:
        text = (
            f"inserted {self.inserted}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )
        if self.rejected and self.report_path:
            text += f" (rejected rows listed in {self.report_path})"
        return text


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _required(row: Row, key: str, label: str) -> str:
    value = row.values.get(key, "")
    if not value:
        raise RowRejected(f"{label} is empty")
    return value


def _limited(value: str, label: str, limit: int) -> str:
    if len(value) > limit:
        raise RowRejected(f"{label} is longer than {limit} characters")
    return value


# --- REINFO -------------------------------------------------------------------------------------

REINFO_COLUMNS = (
    Column("ruc", ("ruc", "numero de ruc", "nro ruc", "n ruc")),
    Column(
        "name",
        ("nombre", "name", "nombre o razon social", "razon social", "minero", "nombre del minero"),
    ),
    Column("codigo_unico", ("código único", "codigo", "cod unico", "codigo unico del derecho")),
    Column(
        "mining_right",
        ("derecho minero", "nombre del derecho minero", "nombre derecho minero", "mining right"),
    ),
    Column("department", ("departamento", "department")),
    Column("province", ("provincia", "province")),
    Column("district", ("distrito", "district")),
    Column("status", ("estado", "status", "estado reinfo", "condicion")),
    Column("ubigeo", ("ubigeo", "ubigeo inei"), required=False),
)

_REINFO_STATUS = {header_key(s.value): s for s in ReinfoStatus} | {
    "suspendida": ReinfoStatus.SUSPENDIDO,
    "excluida": ReinfoStatus.EXCLUIDO,
}
# The columns an import compares and rewrites, in this order (see `_content`).
_REINFO_CONTENT = (
    "holder_name",
    "mining_right",
    "department",
    "province",
    "district",
    "ubigeo",
    "status",
)
_REINFO_UPDATED = (*_REINFO_CONTENT, "snapshot_date", "updated_at")


# Fast paths for the hundred thousand rows of a REINFO list: most RUCs and códigos únicos are
# written canonically and there are only a few spellings of each estado. Anything else goes
# through the general parser, which also words the rejection.


def _ruc(text: str) -> str:
    if (
        len(text) == 11
        and text.isascii()
        and text.isdigit()
        and text[:2] in RUC_PREFIXES
        and int(text[10]) == ruc_check_digit(text[:10])
    ):
        return text
    return parse_ruc(text)


def _codigo_unico(text: str) -> str:
    if len(text) == 9 and text.isascii() and text.isdigit():
        return text
    return normalise_codigo_unico(text)


@functools.lru_cache(maxsize=64)
def _reinfo_status(text: str) -> ReinfoStatus | None:
    return _REINFO_STATUS.get(header_key(text))


def _reinfo_values(row: Row, snapshot: dt.date) -> dict[str, Any]:
    try:
        ruc = _ruc(_required(row, "ruc", "RUC"))
        codigo = _codigo_unico(_required(row, "codigo_unico", "código único"))
    except InvalidIdentifier as exc:
        raise RowRejected(str(exc)) from None
    status_text = _required(row, "status", "estado")
    status = _reinfo_status(status_text)
    if status is None:
        raise RowRejected(f"estado {status_text!r} is not one of VIGENTE, SUSPENDIDO, EXCLUIDO")
    ubigeo = row.values.get("ubigeo") or None
    if ubigeo is not None:
        ubigeo = ubigeo.zfill(6)
        if not (ubigeo.isascii() and ubigeo.isdigit() and len(ubigeo) == 6):
            raise RowRejected(f"ubigeo {row.values['ubigeo']!r} is not a 6-digit INEI code")
    return {
        "ruc": ruc,
        "codigo_unico": codigo,
        "holder_name": _limited(_required(row, "name", "nombre"), "nombre", 300),
        "mining_right": _limited(row.values.get("mining_right", ""), "derecho minero", 300),
        "department": _limited(_required(row, "department", "departamento"), "departamento", 100),
        "province": _limited(_required(row, "province", "provincia"), "provincia", 100),
        "district": _limited(_required(row, "district", "distrito"), "distrito", 100),
        "ubigeo": ubigeo,
        "status": status,
        "snapshot_date": snapshot,
    }


def _content(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[c] for c in _REINFO_CONTENT)


class _FirstLines:
    """The line on which each (RUC, código único) was first accepted during one import.

    A registration given twice in a file keeps its first line and the later ones are rejected,
    whichever batches they fall in; that is what makes a re-run change nothing. The index lives in
    a private temporary SQLite file (deleted on close) rather than a dict, so the importer's memory
    stays flat however long the file.
    """

    _CHUNK = 500  # host parameters per query, well below SQLite's oldest limit (999)

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE first_line (key INTEGER PRIMARY KEY, line INTEGER)")

    @staticmethod
    def key(ruc: str, codigo_unico: str) -> int:
        """Return the pair as one integer: the RUC without its check digit, then the código."""
        return int(ruc[:10] + codigo_unico)  # 19 digits: fits SQLite's 64-bit integers

    def lines(self, keys: list[int]) -> dict[int, int]:
        """Return the first line of each of `keys` already recorded."""
        found: dict[int, int] = {}
        for start in range(0, len(keys), self._CHUNK):
            chunk = keys[start : start + self._CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, line FROM first_line WHERE key IN ({marks})"  # noqa: S608
            found.update(self._db.execute(query, chunk))
        return found

    def record(self, lines: dict[int, int]) -> None:
        """Record the first line of new keys."""
        self._db.executemany("INSERT INTO first_line (key, line) VALUES (?, ?)", lines.items())

    def close(self) -> None:
        """Delete the index."""
        self._db.close()


def import_reinfo(
    session: Session,
    path: Path,
    *,
    snapshot_date: dt.date,
    now: dt.datetime,
    report_path: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
    source_file: str | None = None,
    changed_by: str | None = None,
) -> ImportSummary:
    """Upsert the REINFO list in `path` (a snapshot published on `snapshot_date`).

    The status history names the file as `source_file` (default: the file's own name) and, for
    an upload from the console, the user who made it (`changed_by`).
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime given as `now`; use recpo.clock")
    summary = ImportSummary(report_path=report_path)
    source = _Source(snapshot_date, now, source_file or path.name, changed_by)
    with CsvTable(path, REINFO_COLUMNS) as csv_table:
        first_lines = _FirstLines()
        try:
            connection = session.connection()
            for batch in _batches(csv_table.rows(), batch_size):
                _reinfo_batch(connection, batch, source, summary, first_lines)
                if progress:
                    progress(summary.rows)
        finally:
            first_lines.close()
            summary.close()
    return summary


@dataclass(frozen=True)
class _Source:
    """Where a REINFO import's rows come from, as the status history records it."""

    snapshot_date: dt.date
    now: dt.datetime
    file: str
    changed_by: str | None


def _reinfo_batch(
    connection: sa.Connection,
    batch: list[Row],
    source: _Source,
    summary: ImportSummary,
    first_lines: _FirstLines,
) -> None:
    checked: list[tuple[Row, dict[str, Any] | None, str]] = []
    for row in batch:
        try:
            if row.problem:
                raise RowRejected(row.problem)
            values = _reinfo_values(row, source.snapshot_date)
        except RowRejected as exc:
            checked.append((row, None, str(exc)))
        else:
            checked.append((row, values, ""))
    keys = {
        first_lines.key(values["ruc"], values["codigo_unico"]): row.line
        for row, values, _ in reversed(checked)
        if values is not None
    }
    earlier = first_lines.lines(list(keys))
    parsed: dict[tuple[str, str], dict[str, Any]] = {}
    for row, values, problem in checked:
        if values is None:
            summary.reject(row, problem)
            continue
        key = first_lines.key(values["ruc"], values["codigo_unico"])
        first = earlier.get(key, keys[key])
        if first != row.line:
            summary.reject(
                row, f"the same RUC and código único as line {first} (that line is kept)"
            )
            continue
        parsed[values["ruc"], values["codigo_unico"]] = values
    first_lines.record({key: line for key, line in keys.items() if key not in earlier})
    if parsed:
        _reinfo_write(connection, parsed, source, summary)


_STATUS_AT = 4 + _REINFO_CONTENT.index("status")  # in the rows `_reinfo_write` reads


def _reinfo_write(
    connection: sa.Connection,
    parsed: dict[tuple[str, str], dict[str, Any]],
    source: _Source,
    summary: ImportSummary,
) -> None:
    snapshot, now = source.snapshot_date, source.now
    table = ReinfoRegistration.__table__
    # Looked up by RUC alone (one index range per RUC); the few other registrations of those RUCs
    # that come back are ignored.
    held = sa.select(
        table.c.id,
        table.c.ruc,
        table.c.codigo_unico,
        table.c.snapshot_date,
        *(table.c[c] for c in _REINFO_CONTENT),
    ).where(_among(connection, table.c.ruc, {ruc for ruc, _ in parsed}))
    existing = {(r[1], r[2]): r for r in connection.execute(held) if (r[1], r[2]) in parsed}
    inserts, updates, touched = [], [], []
    changes: list[history.ReinfoChange] = []  # estados to record: new ones and changed ones
    for key, values in parsed.items():
        old = existing.get(key)
        if old is None:
            values["updated_at"] = now
            inserts.append(values)
            summary.inserted += 1
        elif old[3] > snapshot:  # the registration comes from a newer list: keep it
            summary.unchanged += 1
        elif tuple(old[4:]) != _content(values):
            values["b_id"] = old[0]
            values["updated_at"] = now
            updates.append(values)
            if old[_STATUS_AT] != values["status"]:
                changes.append((old[0], _plain(old[_STATUS_AT]), _plain(values["status"])))
            summary.updated += 1
        else:
            summary.unchanged += 1
            if old[3] < snapshot:
                touched.append(old[0])
    if inserts:
        ids = _insert(connection, table, inserts)
        changes += [(i, None, _plain(v["status"])) for i, v in zip(ids, inserts, strict=True)]
    if updates:
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("b_id"))
            .values({c: sa.bindparam(c) for c in _REINFO_UPDATED}),
            updates,
        )
    if touched:
        connection.execute(
            table.update()
            .where(_among(connection, table.c.id, touched))
            .values(snapshot_date=snapshot)
        )
    history.record_reinfo_changes(
        connection,
        changes,
        snapshot_date=snapshot,
        now=now,
        source_file=source.file,
        changed_by=source.changed_by,
    )


def _among(connection: sa.Connection, column: sa.Column, values: Iterable[Any]) -> sa.ColumnElement:
    """`column IN values`; on PostgreSQL as ``= ANY(array)``, one parameter however many values.

    An expanding IN of a thousand values costs a long query to parse and plan in every batch, and
    as many distinct statements as batch sizes in the driver's caches.
    """
    if connection.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


_NEXT_IDS = sa.text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
)


def _insert(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` (dicts with the same keys): COPY on PostgreSQL with psycopg, else INSERT.

    Return the new rows' ids, in the order of `rows` (the status history is written from them).

    COPY is several times faster than even a pipelined executemany. It bypasses SQLAlchemy's bind
    processing, so values go as that processing would send them: enums as their values (and
    timestamps timezone-aware, which `import_reinfo` checks); errors come out as SQLAlchemy's.
    The ids are drawn from the table's sequence first (one query), so nothing is read back.
    """
    if connection.dialect.driver != "psycopg":
        inserted = connection.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
        )
        return list(inserted.scalars())
    ids = list(connection.scalars(_NEXT_IDS, {"table": table.name, "count": len(rows)}))
    statement = f"COPY {table.name} (id, {', '.join(rows[0])}) FROM STDIN"
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        driver_connection = connection.connection.driver_connection
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for id_, row in zip(ids, rows, strict=True):
                copy.write_row([id_, *(_plain(value) for value in row.values())])
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error) from None
    return ids


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


# --- registrants ---------------------------------------------------------------------------------

REGISTRANT_COLUMNS = (
    Column("role", ("role", "rol", "tipo")),
    Column("document", ("document", "documento", "dni ruc", "numero de documento")),
    Column("name", ("name", "nombre", "nombre o razon social", "razon social")),
    Column("phone", ("phone", "telefono", "celular", "movil")),
    Column("language", ("language", "idioma", "lengua")),
    Column("recpo_number", ("recpo number", "recpo", "numero recpo", "registro recpo"), False),
)

_ROLES = {header_key(r.value): r for r in Role} | {
    "minero": Role.MINER,
    "planta": Role.PLANT,
    "planta de beneficio": Role.PLANT,
    "acopiador": Role.STOCKPILER,
    "refinador": Role.REFINER,
    "refineria": Role.REFINER,
    "fundicion": Role.REFINER,
    "comercializador": Role.TRADER,
}
_LANGUAGES = {
    "": Language.SPANISH,
    "es": Language.SPANISH,
    "espanol": Language.SPANISH,
    "castellano": Language.SPANISH,
    "spanish": Language.SPANISH,
    "qu": Language.QUECHUA,
    "quechua": Language.QUECHUA,
    "runasimi": Language.QUECHUA,
    "runa simi": Language.QUECHUA,
}


@dataclass(frozen=True)
class _RegistrantRow:
    row: Row
    role: Role
    document_type: DocumentType
    document_number: str
    name: str
    phone: str | None
    language: Language
    recpo_number: str | None


def _registrant_values(row: Row) -> _RegistrantRow:
    role_text = _required(row, "role", "role")
    role = _ROLES.get(header_key(role_text))
    if role is None:
        raise RowRejected(
            f"role {role_text!r} is not one of miner, plant, stockpiler, refiner, trader"
        )
    try:
        document = parse_document(_required(row, "document", "document"))
        phone = parse_phone(row.values["phone"]) if row.values.get("phone") else None
    except InvalidIdentifier as exc:
        raise RowRejected(str(exc)) from None
    if role.is_buyer and document.type is not DocumentType.RUC:
        raise RowRejected(f"a {role.value} registers with its RUC, not a {document.type.label}")
    language = _LANGUAGES.get(header_key(row.values.get("language", "")))
    if language is None:
        raise RowRejected(
            f"language {row.values['language']!r} is not es (Spanish) or qu (Quechua)"
        )
    recpo_number = row.values.get("recpo_number") or None
    if recpo_number and not role.is_buyer:
        raise RowRejected("only buyers have a RECPO number")
    return _RegistrantRow(
        row=row,
        role=role,
        document_type=document.type,
        document_number=document.number,
        name=_limited(_required(row, "name", "name"), "name", 200),
        phone=phone,
        language=language,
        recpo_number=_limited(recpo_number, "RECPO number", 30) if recpo_number else None,
    )


def import_registrants(
    session: Session,
    path: Path,
    *,
    now: dt.datetime,
    decided_by: str = "import",
    report_path: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
    source_file: str | None = None,
    changed_by: str | None = None,
) -> ImportSummary:
    """Upsert the registrants in `path`, linking each row's phone as an active phone.

    The status history records each registrant created, naming `source_file` (default: the
    file's own name) and, for an upload from the console, its user (`changed_by`).
    """
    summary = ImportSummary(report_path=report_path)
    phones_in_file: dict[str, tuple[DocumentType, str]] = {}
    source = (source_file or path.name, changed_by)
    with CsvTable(path, REGISTRANT_COLUMNS) as csv_table:
        try:
            for batch in _batches(csv_table.rows(), batch_size):
                _registrant_batch(session, batch, now, decided_by, source, phones_in_file, summary)
                if progress:
                    progress(summary.rows)
        finally:
            summary.close()
    return summary


def _registrant_batch(
    session: Session,
    batch: list[Row],
    now: dt.datetime,
    decided_by: str,
    source: tuple[str, str | None],
    phones_in_file: dict[str, tuple[DocumentType, str]],
    summary: ImportSummary,
) -> None:
    parsed: list[_RegistrantRow] = []
    for row in batch:
        try:
            if row.problem:
                raise RowRejected(row.problem)
            parsed.append(_registrant_values(row))
        except RowRejected as exc:
            summary.reject(row, str(exc))
    if not parsed:
        return
    keys = {(p.document_type, p.document_number) for p in parsed}
    registrants = {
        (r.document_type, r.document_number): r
        for r in session.scalars(
            sa.select(Registrant).where(
                sa.tuple_(Registrant.document_type, Registrant.document_number).in_(list(keys))
            )
        )
    }
    phones = {p.phone for p in parsed if p.phone}
    links = {
        link.phone: link
        for link in session.scalars(
            sa.select(PhoneLink).where(
                PhoneLink.phone.in_(phones), PhoneLink.state == PhoneLinkState.ACTIVE
            )
        )
    }
    created_here: list[Registrant] = []
    for item in parsed:
        key = (item.document_type, item.document_number)
        registrant = registrants.get(key)
        if item.phone:
            owner = phones_in_file.setdefault(item.phone, key)
            if owner != key:
                summary.reject(
                    item.row, "the phone is given to another registrant earlier in the file"
                )
                continue
            link = links.get(item.phone)
            # Links made earlier in this run have no registrant_id yet and belong to this key.
            if (
                link is not None
                and link.registrant_id is not None
                and (registrant is None or registrant.id != link.registrant_id)
            ):
                summary.reject(item.row, "the phone is already linked to another registrant")
                continue
        changed = created = False
        if registrant is None:
            created = True
            registrant = Registrant(
                role=item.role,
                document_type=item.document_type,
                document_number=item.document_number,
                name=item.name,
                language=item.language,
                recpo_number=item.recpo_number,
                created_at=now,
                updated_at=now,
            )
            session.add(registrant)
            registrants[key] = registrant
            created_here.append(registrant)
            summary.inserted += 1
        else:
            for attribute in ("role", "name", "language", "recpo_number"):
                if getattr(registrant, attribute) != getattr(item, attribute):
                    setattr(registrant, attribute, getattr(item, attribute))
                    changed = True
        if item.phone and item.phone not in links:
            links[item.phone] = PhoneLink(
                registrant=registrant,
                phone=item.phone,
                state=PhoneLinkState.ACTIVE,
                requested_at=now,
                decided_by=decided_by,
                decided_at=now,
            )
            session.add(links[item.phone])
            changed = True
        if created:
            continue
        if changed:
            registrant.updated_at = now
            summary.updated += 1
        else:
            summary.unchanged += 1
    # Flushed, the batch's objects are only weakly held by the session and go with this frame;
    # the caller's own objects stay attached (expunge_all would silently detach them).
    session.flush()
    history.record_registrants_created(
        session, created_here, now=now, source_file=source[0], changed_by=source[1]
    )
