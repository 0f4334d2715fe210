"""The endpoints of the partner API (described, field by field, in `gateway.partner_api.openapi`).

Lists are ordered by id and paged with an opaque cursor (keyset pagination: a page never repeats
or skips a row, whatever is inserted meanwhile). Decimal amounts are JSON strings, so no precision
is lost on the way; times are ISO 8601 in UTC; date filters are calendar days in Lima.

Names, document numbers and phones (and a flag's evidence) appear only for tokens holding the
``personal_data`` scope; without it, digit runs that could be a DNI, RUC or phone are masked in a
flag's reason, and a transaction's mining right (código único) is shown only when REINFO lists it
under companies alone (a natural person's right names its holder in the public REINFO list).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Response, current_app, request, url_for
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from gateway.partner_api.core import (
    PROBLEMS,
    Problem,
    bp,
    invalid,
    json_response,
    personal_data,
    requires,
)
from gateway.partner_api.params import MAX_ID, Query, encode_cursor
from recpo.clock import LIMA
from recpo.runtime import current_runtime, request_session
from registry import partners
from registry.identifiers import (
    DocumentType,
    InvalidIdentifier,
    dni_from_ruc,
    natural_person_ruc,
    parse_document,
    parse_ruc,
)
from registry.lookup import rights_naming_no_person, seller_standing
from registry.materials import Material
from registry.models import (
    FlagStatus,
    PhoneLinkState,
    RedFlag,
    Registrant,
    Transaction,
    TransactionStatus,
)

MATERIALS = tuple(m.value for m in Material)
TRANSACTION_STATUSES = tuple(s.value for s in TransactionStatus)
FLAG_STATUSES = tuple(s.value for s in FlagStatus)
GROUPS = ("department", "ubigeo", "material", "week")
DEFAULT_GROUPS = ("department", "material", "week")
MAX_AGGREGATE_DAYS = 366
_DIGIT_RUN = re.compile(r"\+?[0-9][0-9 .-]{6,}[0-9]")


# --- formatting ---------------------------------------------------------------------------------


def _decimal(value: Decimal | float | None, places: int | None = None) -> str | None:
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if places is not None:
        return f"{number.quantize(Decimal(1).scaleb(-places)):f}"
    number = number.quantize(Decimal("0.0001")).normalize()
    return f"{number:f}"


def _time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _party(registrant: Registrant, personal: bool, reinfo_ruc: str | None = None) -> dict:
    party: dict[str, Any] = {"role": registrant.role.value, "recpo_number": registrant.recpo_number}
    if personal:
        party["document_type"] = registrant.document_type.value
        party["document_number"] = registrant.document_number
        party["name"] = registrant.name
        if reinfo_ruc is not None:
            party["reinfo_ruc"] = reinfo_ruc
    return party


def _transaction(t: Transaction, rules: list[str], personal: bool, public: set[str]) -> dict:
    shown = t.codigo_unico if personal or t.codigo_unico in public else None
    return {
        "id": t.id,
        "status": t.status.value,
        "declared_by": t.initiator.value,
        "material": t.material,
        "quantity": _decimal(t.quantity),
        "unit": t.unit,
        "grade": _decimal(t.grade),
        "fine_gold_g": _decimal(t.fine_gold_g, 2),
        "price_pen": _decimal(t.price_pen, 2),
        "department": t.department,
        "province": t.province,
        "district": t.district,
        "ubigeo": t.ubigeo,
        "mining_right_declared": t.codigo_unico is not None,
        "codigo_unico": shown,
        "proposed_at": _time(t.created_at),
        "decided_at": _time(t.decided_at),
        "receipt_code": t.receipt_code,
        "flagged": bool(rules),
        "flag_rules": rules,
        "buyer": _party(t.buyer, personal),
        "seller": _party(t.seller, personal, reinfo_ruc=t.seller_ruc),
    }


def _public_rights(transactions: list[Transaction], personal: bool) -> set[str]:
    """The declared rights among `transactions` that name no natural person (one query)."""
    if personal:
        return set()
    codes = {t.codigo_unico for t in transactions if t.codigo_unico}
    return rights_naming_no_person(request_session(), codes)


def _flag_rules(transaction_ids: list[int]) -> dict[int, list[str]]:
    if not transaction_ids:
        return {}
    rows = request_session().execute(
        sa.select(RedFlag.transaction_id, RedFlag.rule)
        .where(RedFlag.transaction_id.in_(transaction_ids))
        .distinct()
    )
    rules: dict[int, set[str]] = defaultdict(set)
    for transaction_id, rule in rows:
        rules[transaction_id].add(rule)
    return {k: sorted(v) for k, v in rules.items()}


def _page(rows: list, limit: int, kind: str, data: list) -> Response:
    more = len(rows) > limit
    next_cursor = encode_cursor(kind, rows[limit - 1].id) if more else None
    return json_response({"data": data, "next_cursor": next_cursor})


# --- index, problems --------------------------------------------------------------------------


@bp.get("/")
def index() -> Response:
    """Where to start: the OpenAPI document."""
    base = current_runtime().settings.public_base_url
    return json_response(
        {
            "name": "RECPO partner API",
            "version": "v1",
            "openapi": f"{base}{url_for('partner_api.openapi')}",
        }
    )


@bp.get("/problems/<slug>")
def problem_type(slug: str) -> Response:
    """What a problem `type` means."""
    if slug not in PROBLEMS:
        raise Problem("not-found", f"no problem type {slug!r}")
    status, title, description = PROBLEMS[slug]
    return json_response(
        {"type": slug, "title": title, "status": status, "description": description}
    )


# --- transactions -------------------------------------------------------------------------------


def _transaction_filters(query: Query) -> list:
    clauses = query.date_range().where(Transaction.created_at)
    if (department := query.text("department")) is not None:
        clauses.append(Transaction.department == department.upper())
    if (ubigeo := query.ubigeo()) is not None:
        clauses.append(Transaction.ubigeo.startswith(ubigeo, autoescape=True))
    if (material := query.choice("material", MATERIALS)) is not None:
        clauses.append(Transaction.material == material)
    if (status := query.choice("status", TRANSACTION_STATUSES)) is not None:
        clauses.append(Transaction.status == TransactionStatus(status))
    if (buyer_ruc := query.values.get("buyer_ruc")) is not None:
        try:
            ruc = parse_ruc(buyer_ruc)
        except InvalidIdentifier as exc:
            raise invalid("buyer_ruc", str(exc)) from None
        clauses.append(
            Transaction.buyer_id.in_(
                sa.select(Registrant.id).where(
                    Registrant.document_type == DocumentType.RUC,
                    Registrant.document_number == ruc,
                )
            )
        )
    flagged = query.boolean("flagged")
    if flagged is not None:
        exists = sa.exists().where(RedFlag.transaction_id == Transaction.id)
        clauses.append(exists if flagged else ~exists)
    return clauses


@bp.get("/transactions")
@requires(partners.TRANSACTIONS_READ)
def transactions() -> Response:
    query = Query(
        (
            "from",
            "to",
            "department",
            "ubigeo",
            "material",
            "status",
            "buyer_ruc",
            "flagged",
            "limit",
            "cursor",
        )
    )
    limit, after = query.limit(), query.cursor("transactions")
    clauses = _transaction_filters(query)
    if after is not None:
        clauses.append(Transaction.id > after)
    rows = list(
        request_session().scalars(
            sa.select(Transaction)
            .where(*clauses)
            .options(selectinload(Transaction.buyer), selectinload(Transaction.seller))
            .order_by(Transaction.id)
            .limit(limit + 1)
        )
    )
    rules = _flag_rules([t.id for t in rows[:limit]])
    personal = personal_data()
    public = _public_rights(rows[:limit], personal)
    data = [_transaction(t, rules.get(t.id, []), personal, public) for t in rows[:limit]]
    return _page(rows, limit, "transactions", data)


@bp.get("/transactions/<int:transaction_id>")
@requires(partners.TRANSACTIONS_READ)
def transaction(transaction_id: int) -> Response:
    Query(())
    found = (
        request_session().get(Transaction, transaction_id)
        if 1 <= transaction_id <= MAX_ID
        else None
    )
    if found is None:
        raise Problem("not-found", f"no transaction {transaction_id}")
    rules = _flag_rules([found.id])
    personal = personal_data()
    public = _public_rights([found], personal)
    return json_response(_transaction(found, rules.get(found.id, []), personal, public))


# --- registrants --------------------------------------------------------------------------------


def _find_registrant(document_type: DocumentType, number: str) -> Registrant | None:
    candidates = [(document_type, number)]
    if document_type is DocumentType.DNI:
        candidates.append((DocumentType.RUC, natural_person_ruc(number)))
    elif document_type is DocumentType.RUC and (dni := dni_from_ruc(number)) is not None:
        candidates.append((DocumentType.DNI, dni))
    session = request_session()
    for kind, value in candidates:
        registrant = session.scalar(
            sa.select(Registrant)
            .where(Registrant.document_type == kind, Registrant.document_number == value)
            .options(selectinload(Registrant.phones))
        )
        if registrant is not None:
            return registrant
    return None


@bp.get("/registrants/<document>")
@requires(partners.REGISTRANTS_READ)
def registrant(document: str) -> Response:
    query = Query(("document_type",))
    kind = query.choice("document_type", tuple(t.value for t in DocumentType))
    try:
        parsed = parse_document(document, DocumentType(kind) if kind else None)
    except InvalidIdentifier as exc:
        raise invalid("document", str(exc)) from None
    personal = personal_data()
    found = _find_registrant(parsed.type, parsed.number)
    standing = seller_standing(request_session(), parsed)
    registrations = []
    for r in standing.registrations:
        item: dict[str, Any] = {
            "codigo_unico": r.codigo_unico,
            "mining_right": r.mining_right,
            "department": r.department,
            "province": r.province,
            "district": r.district,
            "ubigeo": r.ubigeo,
            "status": r.status.value,
            "snapshot_date": r.snapshot_date.isoformat(),
        }
        if personal:
            item["holder_name"] = r.holder_name
        registrations.append(item)
    reinfo: dict[str, Any] = {
        "standing": standing.standing.value,
        "may_sell": standing.may_sell,
        "reason": str(standing),
        "as_of": standing.as_of.isoformat() if standing.as_of else None,
        "registrations": registrations,
    }
    body: dict[str, Any] = {
        "document_type": parsed.type.value,
        "registered": found is not None,
        "role": found.role.value if found else None,
        "registry_status": found.status.value if found else None,
        "recpo_number": found.recpo_number if found else None,
        "reinfo": reinfo,
    }
    if personal:
        body["document_number"] = parsed.number
        body["name"] = found.name if found else None
        body["phones"] = (
            [p.phone for p in found.phones if p.state is PhoneLinkState.ACTIVE] if found else []
        )
        reinfo["ruc"] = standing.ruc
    return json_response(body)


# --- flags --------------------------------------------------------------------------------------


def _mask(text: str) -> str:
    return _DIGIT_RUN.sub("[redacted]", text)


def _evidence(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def _flag(f: RedFlag, personal: bool) -> dict:
    item: dict[str, Any] = {
        "id": f.id,
        "rule": f.rule,
        "reason": f.reason if personal else _mask(f.reason),
        "status": f.status.value,
        "transaction_id": f.transaction_id,
        "created_at": _time(f.created_at),
        "updated_at": _time(f.updated_at),
    }
    if personal:
        item["phone"] = f.phone
        item["document"] = f.document
        item["evidence"] = _evidence(f.evidence)
    return item


@bp.get("/flags")
@requires(partners.FLAGS_READ)
def flags() -> Response:
    query = Query(("status", "rule", "from", "to", "limit", "cursor"))
    limit, after = query.limit(), query.cursor("flags")
    clauses = query.date_range().where(RedFlag.created_at)
    if (status := query.choice("status", FLAG_STATUSES)) is not None:
        clauses.append(RedFlag.status == FlagStatus(status))
    if (rule := query.text("rule", max_length=20)) is not None:
        clauses.append(RedFlag.rule == rule.upper())
    if after is not None:
        clauses.append(RedFlag.id > after)
    rows = list(
        request_session().scalars(
            sa.select(RedFlag).where(*clauses).order_by(RedFlag.id).limit(limit + 1)
        )
    )
    personal = personal_data()
    return _page(rows, limit, "flags", [_flag(f, personal) for f in rows[:limit]])


# --- aggregates ---------------------------------------------------------------------------------


def _group_by(query: Query) -> tuple[str, ...]:
    raw = query.values.get("group_by")
    if raw is None:
        return DEFAULT_GROUPS
    if raw == "":
        return ()  # one total
    items = [item.strip() for item in raw.split(",")]
    if "" in items:
        raise invalid("group_by", "has an empty name (a stray comma?)")
    unknown = [item for item in items if item not in GROUPS]
    if unknown:
        raise invalid("group_by", f"unknown {', '.join(unknown)}; use {', '.join(GROUPS)}")
    if len(set(items)) != len(items):
        raise invalid("group_by", "names a grouping twice")
    return tuple(item for item in GROUPS if item in items)


def _week_start(dialect: str) -> sa.ColumnElement:
    """The Monday (Lima time) of each transaction's ISO week, as a date."""
    if dialect == "postgresql":  # constants inline, so GROUP BY repeats the same expression
        local = sa.func.timezone(sa.literal_column(f"'{LIMA.key}'"), Transaction.created_at)
        return sa.cast(sa.func.date_trunc(sa.literal_column("'week'"), local), sa.Date)
    # SQLite keeps UTC wall time; Peru has been UTC-5 all year since 1994.
    return sa.func.date(
        Transaction.created_at,
        sa.literal_column("'-5 hours'"),
        sa.literal_column("'weekday 0'"),
        sa.literal_column("'-6 days'"),
    )


def _as_date(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


@bp.get("/aggregates")
@requires(partners.AGGREGATES_READ)
def aggregates() -> Response:
    query = Query(("from", "to", "group_by", "department", "ubigeo", "material", "status"))
    dates = query.date_range(required=True)
    assert dates.start is not None and dates.end is not None
    if (dates.end - dates.start).days + 1 > MAX_AGGREGATE_DAYS:
        raise invalid("to", f"the range may span at most {MAX_AGGREGATE_DAYS} days")
    groups = _group_by(query)
    status = TransactionStatus(query.choice("status", TRANSACTION_STATUSES, default="confirmed"))
    clauses = [*dates.where(Transaction.created_at), Transaction.status == status]
    if (department := query.text("department")) is not None:
        clauses.append(Transaction.department == department.upper())
    if (ubigeo := query.ubigeo()) is not None:
        clauses.append(Transaction.ubigeo.startswith(ubigeo, autoescape=True))
    if (material := query.choice("material", MATERIALS)) is not None:
        clauses.append(Transaction.material == material)

    session = request_session()
    columns: dict[str, sa.ColumnElement] = {}
    if "department" in groups:
        columns["department"] = Transaction.department
    if "ubigeo" in groups:
        columns["ubigeo"] = Transaction.ubigeo
        columns["department"] = Transaction.department
        columns["province"] = Transaction.province
        columns["district"] = Transaction.district
    if "material" in groups:
        columns["material"] = Transaction.material
    if "week" in groups:
        columns["week_start"] = _week_start(session.get_bind().dialect.name)
    keys = list(columns)
    labelled = [column.label(name) for name, column in columns.items()]
    stmt = (
        sa.select(
            *labelled,
            Transaction.unit,
            sa.func.count().label("count"),
            sa.func.sum(Transaction.quantity).label("quantity"),
            sa.func.sum(Transaction.fine_gold_g).label("fine_gold_g"),
            sa.func.sum(Transaction.price_pen).label("price_pen"),
        )
        .where(*clauses)
        .group_by(*labelled, Transaction.unit)
    )
    folded: dict[tuple, dict[str, Any]] = {}
    for row in session.execute(stmt):
        key = tuple(getattr(row, k) for k in keys)
        group = folded.get(key)
        if group is None:
            group = folded[key] = {
                "values": dict(zip(keys, key, strict=True)),
                "count": 0,
                "quantity": defaultdict(Decimal),
                "fine_gold_g": None,
                "price_pen": Decimal(0),
            }
        group["count"] += row.count
        group["quantity"][row.unit] += Decimal(str(row.quantity or 0))
        if row.fine_gold_g is not None:
            group["fine_gold_g"] = (group["fine_gold_g"] or Decimal(0)) + Decimal(
                str(row.fine_gold_g)
            )
        group["price_pen"] += Decimal(str(row.price_pen or 0))

    data = []
    for group in folded.values():
        item: dict[str, Any] = {}
        values = group["values"]
        for name in ("department", "province", "district", "ubigeo", "material"):
            if name in values:
                item[name] = values[name]
        if "week_start" in values:
            monday = _as_date(values["week_start"])
            year, week, _ = monday.isocalendar()
            item["week"] = f"{year}-W{week:02d}"
            item["week_start"] = monday.isoformat()
        item["count"] = group["count"]
        item["quantity"] = {
            unit: _decimal(amount) for unit, amount in sorted(group["quantity"].items())
        }
        item["fine_gold_g"] = _decimal(group["fine_gold_g"], 2)
        item["price_pen"] = _decimal(group["price_pen"], 2)
        data.append(item)
    data.sort(
        key=lambda i: tuple(
            str(i.get(name) or "") for name in ("week_start", "department", "ubigeo", "material")
        )
    )
    return json_response(
        {
            "from": dates.start.isoformat(),
            "to": dates.end.isoformat(),
            "status": status.value,
            "group_by": list(groups),
            "data": data,
        }
    )


# --- anything else under /api/v1 --------------------------------------------------------------


@bp.route("/<path:_rest>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def unknown(_rest: str) -> Response:
    """404 for unknown paths; 405 for a known path asked with another method."""
    adapter = current_app.url_map.bind("localhost")
    try:
        endpoint, _args = adapter.match(request.path, method="GET")
    except HTTPException:
        endpoint = None
    if endpoint is not None and endpoint != "partner_api.unknown" and request.method != "GET":
        raise Problem(
            "method-not-allowed",
            f"{request.method} is not allowed here",
            headers={"Allow": "GET, HEAD"},
        )
    raise Problem("not-found", "no such endpoint; see /api/v1/openapi.json")
