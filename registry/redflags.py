"""Red-flag rules R1–R10 (OECD gold supplement, adapted: GLOSSARY "Red flags worth raising").

Each rule is one function ``rN_...(session, scope, thresholds) -> list[Finding]`` that runs ONE
set-based SQL query (window functions, GROUP BY, joins) over the transactions in `scope` and
returns what it finds, each `Finding` with a reason a person can read and JSON evidence. The same
function serves both evaluations, so they agree by construction:

- on proposal (`evaluate_proposal`, called by `registry.transactions._create`): the scope is the
  new transaction; every query is narrowed to its seller (and buyer) and uses the indexes below;
- nightly (`run_nightly`, ``recpo registry flags run --since 30``): the scope is every transaction
  created in the window; a rule looking back (R4, R5, R9, R10) also reads the history before it.

Only live transactions count and are flagged: proposed or confirmed (a disputed, expired or
cancelled one never happened). `record` writes the findings not yet raised: one flag per
transaction and rule, enforced by the unique index ``uq_red_flags_transaction_id_rule`` (the
check before inserting keeps a re-run quiet; the index and ``ON CONFLICT DO NOTHING`` make it
hold between concurrent runs too). Running the nightly evaluation twice adds nothing.

The rules, with the defaults of `Thresholds` (all configurable, see there):

R1  the seller's RUC holds no VIGENTE registration in the current REINFO data. Sellers are
    refused at proposal (`check_seller` flags the refusal); the nightly run re-checks the window's
    transactions against the REINFO list held now (a registration suspended after the sale).
R2  the mining right (código único) the seller declared is not one of the seller's REINFO
    registrations, or that registration is not VIGENTE: gold said to come from someone else's
    concession (as under a constancia de origen) or from a suspended one. Miners declare the
    right with a sale; the seller of a purchase declares it before confirming, and R2 runs then
    (`registry.transactions.declare_right`). Transactions without a declared right (recorded
    before it was asked) are not judged.
R3  the transaction's place (ubigeo, else department/province/district by name) matches none of
    the seller's REINFO registrations (sellers with no registration at all are R1's).
R4  the seller's fine gold over a rolling 30 days, this transaction included, is above the
    capacity of its category: 3,000 g for a natural person (RUC 10/15/17, taken as a productor
    minero artesanal), 42,000 g for a company (RUC 20, taken as a pequeño productor minero).
R5  a new supplier (fewer than 3 earlier transactions in 180 days) selling 250 g of fine gold or
    more at once, or a sudden jump: 5 times the seller's own average over at least 5 earlier
    transactions in 180 days (and at least 50 g).
R6  a phone linked (active or revoked link) to the seller and to 3 or more different people.
R7  any mercury transaction (also raised by `_create` itself; never twice).
R8  the price per fine gram (sponge, doré, refined, native gold) more than 25 % below or 10 %
    above the reference: LBMA ÷ 31.1034768 × PEN/USD of the Lima date (or the latest of the 7
    days before; no reference, no flag).
R9  structuring: 3 or more transactions of the same seller (6 of the same buyer) priced just below
    S/ 35,000 (within 10 %) in 7 days; the one completing the pattern is flagged.
R10 the same seller trading in two different provinces (or departments) on the same Lima day;
    every transaction of that seller and day is flagged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recpo.clock import lima_date
from registry.models import (
    FlagStatus,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Transaction,
    TransactionStatus,
)
from registry.prices import TROY_OUNCE_G, ReferencePrice

__all__ = [
    "NOT_EVALUABLE",
    "RULES",
    "Finding",
    "NightlyReport",
    "RuleRun",
    "Scope",
    "Thresholds",
    "evaluate",
    "evaluate_proposal",
    "record",
    "run_nightly",
]

TX = Transaction.__table__
FLAGS = RedFlag.__table__
REINFO = ReinfoRegistration.__table__
LINKS = PhoneLink.__table__
REGISTRANTS = Registrant.__table__
PRICES = ReferencePrice.__table__

RULE_NAMES = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10")
LIVE = (TransactionStatus.PROPOSED, TransactionStatus.CONFIRMED)

_RULE_LIST = ", ".join(f"'{rule}'" for rule in RULE_NAMES)
_ONE_PER_RULE = sa.text(f"transaction_id IS NOT NULL AND rule IN ({_RULE_LIST})")

# Indexes the rules need, on tables defined in registry.models (as admin.models does).
INDEXES = (
    # One flag per transaction and rule (flags without a transaction, as refusals, are free).
    sa.Index(
        "uq_red_flags_transaction_id_rule",
        FLAGS.c.transaction_id,
        FLAGS.c.rule,
        unique=True,
        postgresql_where=_ONE_PER_RULE,
        sqlite_where=_ONE_PER_RULE,
    ),
    # A seller's (a buyer's) recent history, read on every proposal by R4, R5, R9 and R10.
    sa.Index("ix_transactions_seller_ruc_created_at", TX.c.seller_ruc, TX.c.created_at),
    sa.Index("ix_transactions_buyer_id_created_at", TX.c.buyer_id, TX.c.created_at),
)


# --- thresholds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the rules, with its documented default.

    Defaults marked [I] are our own inference, to be confirmed by DGFM. Override them in code with
    `dataclasses.replace`, from text with `with_overrides`, or in the environment with
    ``RECPO_REDFLAG_<FIELD>`` (e.g. ``RECPO_REDFLAG_R4_ARTISANAL_G=1500``; tuples comma-separated),
    which the on-proposal evaluation and ``recpo registry flags run`` read.
    """

    # R4 capacity, grams of fine gold per rolling window. REINFO does not publish the stratum, so
    # the category comes from the RUC: natural persons (10, 15, 17) are taken as productores
    # mineros artesanales (legal ceiling 25 t of ore a day), companies (20) as pequeños
    # productores (350 t a day). At a generous 4 g/t recovered over 30 days: 3,000 g and
    # 42,000 g [I] — above them a seller sells more than its stratum can produce. Colombia's cap
    # for subsistence miners, 420 g a year [S], would be 35 g per 30 days.
    r4_window_days: int = 30
    r4_artisanal_g: Decimal = Decimal(3000)
    r4_small_scale_g: Decimal = Decimal(42000)
    # R5: "new" is fewer than `r5_new_max_prior` earlier transactions in the history window
    # (a new supplier, or one back after a long pause); 250 g of fine gold is about 2.5 days at
    # the artisanal ceiling [I]. A jump is `r5_jump_factor` times the seller's own average over at
    # least `r5_history_min` earlier transactions, and at least `r5_jump_min_g` [I].
    r5_history_days: int = 180
    r5_new_max_prior: int = 3
    r5_new_large_g: Decimal = Decimal(250)
    r5_history_min: int = 5
    r5_jump_factor: Decimal = Decimal(5)
    r5_jump_min_g: Decimal = Decimal(50)
    # R6: distinct people (a DNI and its RUC 10 are one person) on one phone, the seller included.
    # Two is common (a family phone); three or more is a pattern [I].
    r6_min_people: int = 3
    # R7: the controlled materials.
    r7_materials: tuple[str, ...] = ("mercury",)
    # R8: buyers quote a discount below the reference (GLOSSARY); more than 25 % below suggests
    # gold of doubtful origin, paying above the reference suggests laundering [I]. Ore, tailings
    # and carbon are sold well below their contained gold, so only recovered gold is compared.
    r8_below_pct: Decimal = Decimal(25)
    r8_above_pct: Decimal = Decimal(10)
    r8_max_age_days: int = 7
    r8_materials: tuple[str, ...] = ("sponge", "dore", "refined", "native")
    # R9: S/ 35,000 is about US$ 10,000, the operations-register threshold of the UIF-Perú [I];
    # "just below" is within `r9_margin_pct` under it. A buyer trades with many sellers, so more
    # such purchases are needed before its pattern is one.
    r9_threshold_pen: Decimal = Decimal(35000)
    r9_margin_pct: Decimal = Decimal(10)
    r9_window_days: int = 7
    r9_min_count: int = 3
    r9_buyer_min_count: int = 6
    # R10: "distant" is another province (or, with "department", another department).
    r10_level: str = "province"

    def __post_init__(self) -> None:
        if self.r10_level not in ("province", "department"):
            raise ValueError("r10_level must be 'province' or 'department'")

    def with_overrides(self, overrides: Mapping[str, str]) -> Thresholds:
        """Return a copy with fields given as text (as in the environment or on the CLI)."""
        known = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, text in overrides.items():
            if name not in known:
                raise ValueError(f"unknown threshold {name!r}; known: {', '.join(known)}")
            current = known[name]
            try:
                if isinstance(current, tuple):
                    changes[name] = tuple(p.strip() for p in text.split(",") if p.strip())
                elif isinstance(current, Decimal):
                    changes[name] = Decimal(text)
                elif isinstance(current, int):
                    changes[name] = int(text)
                else:
                    changes[name] = text
            except (ArithmeticError, ValueError):
                raise ValueError(f"threshold {name}: {text!r} is not a valid value") from None
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, prefix: str = "RECPO_REDFLAG_"
    ) -> Thresholds:
        """Return the defaults overridden by ``RECPO_REDFLAG_<FIELD>`` variables."""
        names = [f.name for f in dataclasses.fields(cls)]
        given = {n: environ[prefix + n.upper()] for n in names if prefix + n.upper() in environ}
        return cls().with_overrides(given)


@functools.cache
def _environment_thresholds() -> Thresholds:
    """The thresholds of the environment for proposals; the defaults if they are invalid.

    A typing error in a variable must not stop every proposal: it is logged here, and
    ``recpo registry flags run`` refuses to run with it.
    """
    try:
        return Thresholds.from_env()
    except ValueError as exc:
        logging.getLogger(__name__).error("RECPO_REDFLAG_* ignored, defaults used: %s", exc)
        return Thresholds()


# --- findings and scopes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One transaction a rule flags, with the reason and evidence for the console."""

    transaction_id: int
    rule: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    phone: str | None = None


@dataclass(frozen=True)
class Scope:
    """The transactions a rule may flag: one just proposed, or those created in a window."""

    since: dt.datetime
    until: dt.datetime
    transaction_id: int | None = None
    seller_ruc: str | None = None
    seller_id: int | None = None
    buyer_id: int | None = None

    @classmethod
    def window(cls, since: dt.datetime, until: dt.datetime) -> Scope:
        """Every transaction created from `since` to `until` (nightly)."""
        return cls(since=since, until=until)

    @classmethod
    def proposal(cls, transaction: Transaction) -> Scope:
        """The transaction just proposed; the rules read only its parties' history."""
        return cls(
            since=transaction.created_at,
            until=transaction.created_at,
            transaction_id=transaction.id,
            seller_ruc=transaction.seller_ruc,
            seller_id=transaction.seller_id,
            buyer_id=transaction.buyer_id,
        )

    def flaggable(self, columns: Any) -> sa.ColumnElement[bool]:
        """The condition on a row (of `transactions` or a subquery) to be in this scope."""
        if self.transaction_id is not None:
            return columns.id == self.transaction_id
        return sa.and_(columns.created_at >= self.since, columns.created_at <= self.until)


Rule = Callable[[Session, Scope, Thresholds], list[Finding]]


# --- SQL helpers (PostgreSQL, and SQLite for the embedded default) -------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _window(partition_by: Any, days: int, dialect: str) -> dict[str, Any]:
    """`over()` arguments: per `partition_by`, the `days` before each row's time, row included.

    A RANGE frame on the timestamp itself (an interval on PostgreSQL, Julian days on SQLite), so
    the frame follows time, not a count of rows; rows at the very same instant are peers.
    """
    if dialect == "postgresql":
        order_by, offset = TX.c.created_at, dt.timedelta(days=days)
    else:
        order_by, offset = sa.func.julianday(TX.c.created_at), float(days)
    frame = sa.FrameClause(offset, None, sa.FrameClauseType.PRECEDING, sa.FrameClauseType.CURRENT)
    return {"partition_by": partition_by, "order_by": order_by, "range_": frame}


def _lima_date(column: Any, dialect: str) -> sa.ColumnElement[dt.date]:
    """The calendar date in Lima (UTC-5, no daylight saving since 1994) of a UTC timestamp."""
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("America/Lima", column), sa.Date)
    return sa.type_coerce(sa.func.date(column, "-5 hours"), sa.Date)


def _text_agg(expression: Any, dialect: str) -> sa.ColumnElement[str]:
    """The values of `expression` joined with '|' (order unspecified; see `_split`)."""
    if dialect == "postgresql":
        return sa.func.string_agg(expression, sa.literal_column("'|'"))
    return sa.func.group_concat(expression, "|")


def _split(text: str | None) -> list[str]:
    """The distinct values of a `_text_agg`, sorted."""
    return sorted({p for p in (text or "").split("|") if p})


def _among(dialect: str, column: Any, values: Iterable[Any]) -> sa.ColumnElement[bool]:
    values = list(values)
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _live(columns: Any) -> sa.ColumnElement[bool]:
    return columns.status.in_(LIVE)


def _grams(value: Any) -> str:
    return f"{Decimal(value):,.2f}"


def _num(value: Any) -> str:
    """A number for the evidence: a string, exact, without a float's noise."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    return f"{Decimal(value).normalize():f}"


def _norm(column: Any) -> sa.ColumnElement[str]:
    return sa.func.upper(sa.func.trim(column))


# --- the rules ----------------------------------------------------------------------------------


def r1_seller_not_vigente(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R1: the seller's RUC holds no VIGENTE registration in the REINFO data held now."""

    def count(status: ReinfoStatus) -> Any:
        return sa.func.sum(sa.case((REINFO.c.status == status, 1), else_=0))

    regs = sa.select(
        REINFO.c.ruc,
        count(ReinfoStatus.VIGENTE).label("vigente"),
        count(ReinfoStatus.SUSPENDIDO).label("suspendido"),
        count(ReinfoStatus.EXCLUIDO).label("excluido"),
        sa.func.max(REINFO.c.snapshot_date).label("as_of"),
    ).group_by(REINFO.c.ruc)
    if scope.seller_ruc is not None:
        regs = regs.where(REINFO.c.ruc == scope.seller_ruc)
    regs = regs.subquery()
    query = (
        sa.select(TX.c.id, TX.c.seller_ruc, regs.c.suspendido, regs.c.excluido, regs.c.as_of)
        .select_from(TX.outerjoin(regs, regs.c.ruc == TX.c.seller_ruc))
        .where(scope.flaggable(TX.c), _live(TX.c), sa.func.coalesce(regs.c.vigente, 0) == 0)
    )
    findings = []
    for row in session.execute(query):
        if row.as_of is None:
            reason = f"seller RUC {row.seller_ruc} is not in REINFO (re-checked after the sale)"
            standing = "not_in_reinfo"
        else:
            reason = (
                f"seller RUC {row.seller_ruc} holds no VIGENTE REINFO registration in the list "
                f"of {row.as_of.isoformat()} ({row.suspendido} SUSPENDIDO, {row.excluido} EXCLUIDO)"
            )
            standing = "suspended" if row.suspendido else "excluded"
        evidence = {
            "ruc": row.seller_ruc,
            "standing": standing,
            "suspendido": int(row.suspendido or 0),
            "excluido": int(row.excluido or 0),
            "reinfo_as_of": row.as_of.isoformat() if row.as_of else None,
        }
        findings.append(Finding(row.id, "R1", reason, evidence))
    return findings


def r2_mining_right_not_linked(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R2: the declared mining right is not the seller's in REINFO, or not VIGENTE there."""
    dialect = _dialect(session)
    declared = REINFO.alias("declared")
    own, holder = REINFO.alias("own"), REINFO.alias("holder")
    # Read only for the rows found (few): the seller's VIGENTE rights, and who holds the one named.
    own_rights = (
        sa.select(_text_agg(own.c.codigo_unico, dialect))
        .where(own.c.ruc == TX.c.seller_ruc, own.c.status == ReinfoStatus.VIGENTE)
        .scalar_subquery()
    )
    holders = (
        sa.select(_text_agg(holder.c.ruc + " " + sa.cast(holder.c.status, sa.String), dialect))
        .where(holder.c.codigo_unico == TX.c.codigo_unico)
        .scalar_subquery()
    )
    query = (
        sa.select(
            TX.c.id,
            TX.c.seller_ruc,
            TX.c.codigo_unico,
            declared.c.status,
            declared.c.mining_right,
            declared.c.snapshot_date,
            own_rights.label("own_rights"),
            holders.label("holders"),
        )
        .select_from(
            TX.outerjoin(
                declared,
                sa.and_(
                    declared.c.ruc == TX.c.seller_ruc,
                    declared.c.codigo_unico == TX.c.codigo_unico,
                ),
            )
        )
        .where(
            scope.flaggable(TX.c),
            _live(TX.c),
            TX.c.codigo_unico.is_not(None),
            sa.or_(declared.c.id.is_(None), declared.c.status != ReinfoStatus.VIGENTE),
        )
    )
    findings = []
    for row in session.execute(query):
        others = [
            {"ruc": ruc, "status": status}
            for ruc, _, status in (h.partition(" ") for h in _split(row.holders))
            if ruc != row.seller_ruc
        ]
        if row.status is None:
            reason = (
                f"declared mining right {row.codigo_unico} is not registered in REINFO to "
                f"seller RUC {row.seller_ruc}"
            )
            if others:
                listed = ", ".join(f"{o['ruc']} ({o['status']})" for o in others)
                reason += f"; REINFO lists it under RUC {listed}"
            else:
                reason += "; REINFO lists no registration of that right"
            standing = "not_linked"
        else:
            status = ReinfoStatus(row.status)
            reason = (
                f"declared mining right {row.codigo_unico} ({row.mining_right}) is "
                f"{status.value} in REINFO for seller RUC {row.seller_ruc}"
            )
            standing = "suspended" if status is ReinfoStatus.SUSPENDIDO else "excluded"
        evidence = {
            "ruc": row.seller_ruc,
            "codigo_unico": row.codigo_unico,
            "standing": standing,
            "declared_status": ReinfoStatus(row.status).value if row.status else None,
            "seller_vigente_rights": _split(row.own_rights),
            "other_holders": others,
            "reinfo_as_of": row.snapshot_date.isoformat() if row.snapshot_date else None,
        }
        findings.append(Finding(row.id, "R2", reason[:300], evidence))
    return findings


# Rules that cannot be evaluated on the data held, and why (reported by `run_nightly`); every rule
# is evaluable now that transactions record the declared mining right (R2).
NOT_EVALUABLE: dict[str, str] = {}


def r3_district_mismatch(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R3: the transaction's place matches none of the seller's REINFO registrations."""
    dialect = _dialect(session)
    place = REINFO.c.district + ", " + REINFO.c.province + ", " + REINFO.c.department
    places = sa.select(REINFO.c.ruc, _text_agg(place, dialect).label("places")).group_by(
        REINFO.c.ruc
    )
    if scope.seller_ruc is not None:
        places = places.where(REINFO.c.ruc == scope.seller_ruc)
    places = places.subquery()
    same_place = sa.or_(
        sa.and_(TX.c.ubigeo.is_not(None), REINFO.c.ubigeo == TX.c.ubigeo),
        sa.and_(
            _norm(REINFO.c.district) == _norm(TX.c.district),
            _norm(REINFO.c.province) == _norm(TX.c.province),
            _norm(REINFO.c.department) == _norm(TX.c.department),
        ),
    )
    matching = sa.exists().where(REINFO.c.ruc == TX.c.seller_ruc, same_place)
    query = (
        sa.select(
            TX.c.id,
            TX.c.seller_ruc,
            TX.c.department,
            TX.c.province,
            TX.c.district,
            TX.c.ubigeo,
            places.c.places,
        )
        .select_from(TX.join(places, places.c.ruc == TX.c.seller_ruc))
        .where(
            scope.flaggable(TX.c),
            _live(TX.c),
            sa.or_(TX.c.district.is_not(None), TX.c.ubigeo.is_not(None)),
            ~matching,
        )
    )
    findings = []
    for row in session.execute(query):
        where = ", ".join(p for p in (row.district, row.province, row.department) if p)
        if row.ubigeo:
            where += f" ({row.ubigeo})"
        registered = _split(row.places)
        reason = (
            f"transaction place {where} matches none of seller RUC {row.seller_ruc}'s REINFO "
            f"registrations ({'; '.join(registered)})"
        )
        evidence = {
            "ruc": row.seller_ruc,
            "transaction_place": {
                "department": row.department,
                "province": row.province,
                "district": row.district,
                "ubigeo": row.ubigeo,
            },
            "registered_places": registered,
        }
        findings.append(Finding(row.id, "R3", reason, evidence))
    return findings


def _category(ruc: Any) -> Any:
    return sa.case((sa.func.substr(ruc, 1, 2) == "20", "small_scale"), else_="artisanal")


def r4_over_capacity(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R4: the seller's fine gold over the rolling window is above its category's capacity."""
    dialect = _dialect(session)
    frame = _window(TX.c.seller_ruc, th.r4_window_days, dialect)
    history = sa.select(
        TX.c.id,
        TX.c.seller_ruc,
        TX.c.created_at,
        TX.c.fine_gold_g,
        sa.func.sum(TX.c.fine_gold_g).over(**frame).label("rolling"),
        sa.func.count().over(**frame).label("transactions"),
    ).where(
        _live(TX.c),
        TX.c.fine_gold_g.is_not(None),
        TX.c.created_at >= scope.since - dt.timedelta(days=th.r4_window_days),
        TX.c.created_at <= scope.until,
    )
    if scope.seller_ruc is not None:
        history = history.where(TX.c.seller_ruc == scope.seller_ruc)
    history = history.subquery()
    category = _category(history.c.seller_ruc)
    capacity = sa.case((category == "small_scale", th.r4_small_scale_g), else_=th.r4_artisanal_g)
    query = sa.select(history, category.label("category"), capacity.label("capacity")).where(
        scope.flaggable(history.c), history.c.rolling > capacity
    )
    findings = []
    for row in session.execute(query):
        category_text = "artisanal" if row.category == "artisanal" else "small-scale"
        reason = (
            f"seller RUC {row.seller_ruc} sold {_grams(row.rolling)} g of fine gold in the "
            f"{th.r4_window_days} days to this transaction, above the {category_text} capacity "
            f"of {_grams(row.capacity)} g"
        )
        evidence = {
            "ruc": row.seller_ruc,
            "category": row.category,
            "window_days": th.r4_window_days,
            "fine_gold_g_in_window": _num(row.rolling),
            "transactions_in_window": row.transactions,
            "capacity_g": _num(row.capacity),
            "this_fine_gold_g": _num(row.fine_gold_g),
        }
        findings.append(Finding(row.id, "R4", reason, evidence))
    return findings


def r5_new_or_jump(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R5: a new supplier with a large first volume, or a sudden jump over its own average."""
    dialect = _dialect(session)
    frame = _window(TX.c.seller_ruc, th.r5_history_days, dialect)
    history = sa.select(
        TX.c.id,
        TX.c.seller_ruc,
        TX.c.created_at,
        TX.c.fine_gold_g,
        (sa.func.count().over(**frame) - 1).label("prior"),
        (sa.func.sum(TX.c.fine_gold_g).over(**frame) - TX.c.fine_gold_g).label("prior_g"),
    ).where(
        _live(TX.c),
        TX.c.fine_gold_g.is_not(None),
        TX.c.created_at >= scope.since - dt.timedelta(days=th.r5_history_days),
        TX.c.created_at <= scope.until,
    )
    if scope.seller_ruc is not None:
        history = history.where(TX.c.seller_ruc == scope.seller_ruc)
    history = history.subquery()
    h = history.c
    new_and_large = sa.and_(h.prior < th.r5_new_max_prior, h.fine_gold_g >= th.r5_new_large_g)
    jump = sa.and_(
        h.prior >= th.r5_history_min,
        h.prior >= 1,
        h.fine_gold_g >= th.r5_jump_min_g,
        h.fine_gold_g * h.prior > th.r5_jump_factor * h.prior_g,
    )
    query = sa.select(history).where(scope.flaggable(h), sa.or_(new_and_large, jump))
    findings = []
    for row in session.execute(query):
        evidence = {
            "ruc": row.seller_ruc,
            "fine_gold_g": _num(row.fine_gold_g),
            "history_days": th.r5_history_days,
            "earlier_transactions": row.prior,
            "earlier_fine_gold_g": _num(row.prior_g or 0),
        }
        if row.prior < th.r5_new_max_prior:
            reason = (
                f"new supplier: seller RUC {row.seller_ruc} sells {_grams(row.fine_gold_g)} g of "
                f"fine gold with {row.prior} earlier transaction(s) in {th.r5_history_days} days "
                f"(large: {_grams(th.r5_new_large_g)} g or more)"
            )
            evidence["pattern"] = "new_supplier_large_volume"
        else:
            average = Decimal(row.prior_g) / row.prior
            factor = Decimal(row.fine_gold_g) / average if average else None
            times = f"{factor:.1f} times" if factor is not None else "far above"
            reason = (
                f"sudden jump: {_grams(row.fine_gold_g)} g of fine gold is {times} seller RUC "
                f"{row.seller_ruc}'s average of {_grams(average)} g over {row.prior} earlier "
                f"transactions in {th.r5_history_days} days"
            )
            evidence["pattern"] = "sudden_jump"
            evidence["earlier_average_g"] = _num(average.quantize(Decimal("0.01")))
        findings.append(Finding(row.id, "R5", reason, evidence))
    return findings


def r6_shared_phone(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R6: a phone of the seller has been linked to many different people (documents/RUCs)."""
    dialect = _dialect(session)
    approved = LINKS.c.state.in_([PhoneLinkState.ACTIVE, PhoneLinkState.REVOKED])
    number = REGISTRANTS.c.document_number
    document_type = sa.cast(REGISTRANTS.c.document_type, sa.String)
    person = sa.case(
        (document_type == "dni", number),
        (
            sa.and_(document_type == "ruc", sa.func.substr(number, 1, 2) == "10"),
            sa.func.substr(number, 3, 8),
        ),
        else_=document_type + ":" + number,
    )
    linked = (
        sa.select(
            LINKS.c.phone,
            person.label("person"),
            (sa.func.upper(document_type) + " " + number).label("document"),
        )
        .select_from(LINKS.join(REGISTRANTS, REGISTRANTS.c.id == LINKS.c.registrant_id))
        .where(approved)
    )
    if scope.seller_id is not None:
        mine = LINKS.alias("mine")
        own = sa.select(mine.c.phone).where(
            mine.c.registrant_id == scope.seller_id,
            mine.c.state.in_([PhoneLinkState.ACTIVE, PhoneLinkState.REVOKED]),
        )
        linked = linked.where(LINKS.c.phone.in_(own))
    linked = linked.subquery()
    crowded = (
        sa.select(
            linked.c.phone,
            sa.func.count(sa.distinct(linked.c.person)).label("people"),
            _text_agg(linked.c.document, dialect).label("documents"),
        )
        .group_by(linked.c.phone)
        .having(sa.func.count(sa.distinct(linked.c.person)) >= th.r6_min_people)
        .subquery()
    )
    seller_link = LINKS.alias("seller_link")
    query = (
        sa.select(TX.c.id, TX.c.seller_ruc, crowded.c.phone, crowded.c.people, crowded.c.documents)
        .select_from(
            TX.join(
                seller_link,
                sa.and_(
                    seller_link.c.registrant_id == TX.c.seller_id,
                    seller_link.c.state.in_([PhoneLinkState.ACTIVE, PhoneLinkState.REVOKED]),
                ),
            ).join(crowded, crowded.c.phone == seller_link.c.phone)
        )
        .where(scope.flaggable(TX.c), _live(TX.c))
        .order_by(TX.c.id, crowded.c.phone)
    )
    by_transaction: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(query):
        by_transaction[row.id].append(row)
    findings = []
    for transaction_id, rows in by_transaction.items():
        phones = {row.phone: row for row in rows}
        first = rows[0]
        reason = (
            f"the seller's phone {first.phone} has been linked to {first.people} different "
            f"people ({', '.join(_split(first.documents))})"
        )
        if len(phones) > 1:
            reason += f"; {len(phones) - 1} more such phone(s)"
        evidence = {
            "ruc": first.seller_ruc,
            "phones": {
                phone: {"people": row.people, "documents": _split(row.documents)}
                for phone, row in phones.items()
            },
            "min_people": th.r6_min_people,
        }
        findings.append(Finding(transaction_id, "R6", reason[:300], evidence, phone=first.phone))
    return findings


def r7_mercury(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R7: any mercury transaction (a controlled input)."""
    query = sa.select(TX.c.id, TX.c.material, TX.c.quantity, TX.c.unit).where(
        scope.flaggable(TX.c), _live(TX.c), TX.c.material.in_(th.r7_materials)
    )
    return [
        Finding(
            row.id,
            "R7",
            f"{row.material} transaction (controlled input, Minamata Convention)",
            {"quantity": _num(row.quantity), "unit": row.unit},
        )
        for row in session.execute(query)
    ]


def r8_price_off_reference(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R8: the price per fine gram is far below or above the LBMA reference of its date."""
    dialect = _dialect(session)
    day = _lima_date(TX.c.created_at, dialect)
    earlier = PRICES.alias("earlier")
    latest = (
        sa.select(sa.func.max(earlier.c.price_date))
        .where(earlier.c.price_date <= day)
        .correlate(TX)
        .scalar_subquery()
    )
    # price / fine < lbma / oz * rate * (1 - below): multiplied out, no division in SQL.
    paid = TX.c.price_pen * TROY_OUNCE_G * 100
    reference = TX.c.fine_gold_g * PRICES.c.lbma_usd_per_oz * PRICES.c.pen_per_usd
    query = (
        sa.select(
            TX.c.id,
            TX.c.material,
            TX.c.price_pen,
            TX.c.fine_gold_g,
            day.label("day"),
            PRICES.c.price_date,
            PRICES.c.lbma_usd_per_oz,
            PRICES.c.pen_per_usd,
        )
        .select_from(TX.join(PRICES, PRICES.c.price_date == latest))
        .where(
            scope.flaggable(TX.c),
            _live(TX.c),
            TX.c.material.in_(th.r8_materials),
            TX.c.fine_gold_g > 0,
            sa.or_(
                paid < reference * (100 - th.r8_below_pct),
                paid > reference * (100 + th.r8_above_pct),
            ),
        )
    )
    findings = []
    for row in session.execute(query):
        if (row.day - row.price_date).days > th.r8_max_age_days:
            continue  # no reference recent enough: nothing to compare with
        per_gram = (Decimal(row.price_pen) / Decimal(row.fine_gold_g)).quantize(Decimal("0.01"))
        ref = (Decimal(row.lbma_usd_per_oz) / TROY_OUNCE_G * Decimal(row.pen_per_usd)).quantize(
            Decimal("0.01")
        )
        off = ((per_gram - ref) / ref * 100).quantize(Decimal("0.1"))
        direction = "below" if off < 0 else "above"
        reason = (
            f"S/ {per_gram:,} per fine gram of {row.material} is {abs(off)} % {direction} the "
            f"reference of S/ {ref:,} (LBMA {Decimal(row.lbma_usd_per_oz):,.2f} USD/oz × "
            f"{Decimal(row.pen_per_usd):.3f} PEN/USD of {row.price_date.isoformat()})"
        )
        evidence = {
            "price_pen": _num(row.price_pen),
            "fine_gold_g": _num(row.fine_gold_g),
            "pen_per_fine_gram": _num(per_gram),
            "reference_pen_per_fine_gram": _num(ref),
            "difference_pct": _num(off),
            "reference_date": row.price_date.isoformat(),
            "transaction_date_lima": row.day.isoformat(),
            "lbma_usd_per_oz": _num(row.lbma_usd_per_oz),
            "pen_per_usd": _num(row.pen_per_usd),
            "allowed_pct": {"below": _num(th.r8_below_pct), "above": _num(th.r8_above_pct)},
        }
        findings.append(Finding(row.id, "R8", reason, evidence))
    return findings


def r9_structuring(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R9: many transactions of one seller (or buyer) just below the reporting threshold."""
    dialect = _dialect(session)
    floor = th.r9_threshold_pen * (100 - th.r9_margin_pct) / 100
    by_seller = _window(TX.c.seller_ruc, th.r9_window_days, dialect)
    by_buyer = _window(TX.c.buyer_id, th.r9_window_days, dialect)
    below = sa.select(
        TX.c.id,
        TX.c.seller_ruc,
        TX.c.buyer_id,
        TX.c.created_at,
        TX.c.price_pen,
        sa.func.count().over(**by_seller).label("by_seller"),
        sa.func.count().over(**by_buyer).label("by_buyer"),
    ).where(
        _live(TX.c),
        TX.c.price_pen >= floor,
        TX.c.price_pen < th.r9_threshold_pen,
        TX.c.created_at >= scope.since - dt.timedelta(days=th.r9_window_days),
        TX.c.created_at <= scope.until,
    )
    if scope.transaction_id is not None:
        below = below.where(
            sa.or_(TX.c.seller_ruc == scope.seller_ruc, TX.c.buyer_id == scope.buyer_id)
        )
    below = below.subquery()
    query = sa.select(below).where(
        scope.flaggable(below.c),
        sa.or_(below.c.by_seller >= th.r9_min_count, below.c.by_buyer >= th.r9_buyer_min_count),
    )
    findings = []
    for row in session.execute(query):
        parties = []
        if row.by_seller >= th.r9_min_count:
            parties.append(f"{row.by_seller} by seller RUC {row.seller_ruc}")
        if row.by_buyer >= th.r9_buyer_min_count:
            parties.append(f"{row.by_buyer} by buyer #{row.buyer_id}")
        reason = (
            f"structuring: {' and '.join(parties)} of S/ {floor:,.2f} to just below "
            f"S/ {th.r9_threshold_pen:,.2f} within {th.r9_window_days} days"
        )
        evidence = {
            "ruc": row.seller_ruc,
            "buyer_id": row.buyer_id,
            "price_pen": _num(row.price_pen),
            "threshold_pen": _num(th.r9_threshold_pen),
            "floor_pen": _num(floor),
            "window_days": th.r9_window_days,
            "just_below_by_seller": row.by_seller,
            "just_below_by_buyer": row.by_buyer,
        }
        findings.append(Finding(row.id, "R9", reason, evidence))
    return findings


def r10_distant_same_day(session: Session, scope: Scope, th: Thresholds) -> list[Finding]:
    """R10: the same seller trading in different provinces (departments) on one Lima day."""
    dialect = _dialect(session)
    day = _lima_date(TX.c.created_at, dialect)
    if th.r10_level == "department":
        place = TX.c.department
    else:
        place = TX.c.department + " / " + sa.func.coalesce(TX.c.province, "")
    rows = sa.select(
        TX.c.id,
        TX.c.seller_ruc,
        TX.c.created_at,
        TX.c.department,
        TX.c.province,
        TX.c.district,
        day.label("day"),
        place.label("place"),
    ).where(_live(TX.c), TX.c.department.is_not(None))
    if scope.transaction_id is not None:
        rows = rows.where(
            TX.c.seller_ruc == scope.seller_ruc,
            TX.c.created_at >= scope.since - dt.timedelta(days=1),
            TX.c.created_at <= scope.until + dt.timedelta(days=1),
            day == lima_date(scope.since),
        )
    else:
        rows = rows.where(
            TX.c.created_at >= scope.since - dt.timedelta(days=1),
            TX.c.created_at <= scope.until,
        )
    rows = rows.subquery()
    groups = (
        sa.select(rows.c.seller_ruc, rows.c.day)
        .group_by(rows.c.seller_ruc, rows.c.day)
        .having(sa.func.count(sa.distinct(rows.c.place)) > 1)
        .subquery()
    )
    query = (
        sa.select(rows)
        .join(groups, sa.and_(groups.c.seller_ruc == rows.c.seller_ruc, groups.c.day == rows.c.day))
        .order_by(rows.c.seller_ruc, rows.c.day, rows.c.created_at, rows.c.id)
    )
    if scope.transaction_id is None:
        query = query.where(rows.c.day >= lima_date(scope.since))
    by_day: dict[tuple[str, dt.date], list[Any]] = defaultdict(list)
    for row in session.execute(query):
        by_day[row.seller_ruc, row.day].append(row)
    findings = []
    for (ruc, day_value), group in by_day.items():
        places = sorted({row.place for row in group})
        for row in group:
            others = [
                {"transaction": o.id, "place": o.place, "district": o.district}
                for o in group
                if o.place != row.place
            ]
            reason = (
                f"seller RUC {ruc} traded in {len(places)} different "
                f"{th.r10_level}s on {day_value.isoformat()} (Lima): {'; '.join(places)}"
            )
            evidence = {
                "ruc": ruc,
                "date_lima": day_value.isoformat(),
                "level": th.r10_level,
                "this_place": row.place,
                "places": places,
                "other_transactions": others,
            }
            findings.append(Finding(row.id, "R10", reason[:300], evidence))
    return findings


RULES: dict[str, Rule] = {
    "R1": r1_seller_not_vigente,
    "R2": r2_mining_right_not_linked,
    "R3": r3_district_mismatch,
    "R4": r4_over_capacity,
    "R5": r5_new_or_jump,
    "R6": r6_shared_phone,
    "R7": r7_mercury,
    "R8": r8_price_off_reference,
    "R9": r9_structuring,
    "R10": r10_distant_same_day,
}


# --- evaluating and recording -------------------------------------------------------------------


def evaluate(
    session: Session,
    scope: Scope,
    thresholds: Thresholds | None = None,
    rules: Iterable[str] = RULES,
) -> dict[str, list[Finding]]:
    """Run the rules over `scope`; return their findings, raised before or not."""
    th = thresholds or Thresholds()
    return {rule: RULES[rule](session, scope, th) for rule in rules}


def record(session: Session, findings: Iterable[Finding], now: dt.datetime) -> list[Finding]:
    """Write the findings not flagged yet (one flag per transaction and rule); return them."""
    unique: dict[tuple[int, str], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.transaction_id, finding.rule), finding)
    if not unique:
        return []
    dialect = _dialect(session)
    rules = {rule for _, rule in unique}
    ids = {transaction_id for transaction_id, _ in unique}
    raised: set[tuple[int, str]] = set()
    ordered = sorted(ids)
    chunk = len(ordered) if dialect == "postgresql" else 10_000  # SQLite's bound parameters
    for start in range(0, len(ordered), chunk or 1):
        query = sa.select(FLAGS.c.transaction_id, FLAGS.c.rule).where(
            FLAGS.c.rule.in_(rules),
            _among(dialect, FLAGS.c.transaction_id, ordered[start : start + chunk]),
        )
        raised.update((transaction_id, rule) for transaction_id, rule in session.execute(query))
    new = [finding for key, finding in unique.items() if key not in raised]
    if not new:
        return []
    rows = [
        {
            "rule": f.rule,
            "reason": f.reason[:300],
            "transaction_id": f.transaction_id,
            "phone": f.phone,
            "document": None,
            "evidence": json.dumps(f.evidence, sort_keys=True, default=str, ensure_ascii=False),
            "status": FlagStatus.OPEN,
            "note": None,
            "created_at": now,
            "updated_at": now,
        }
        for f in new
    ]
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(FLAGS)
    # A concurrent run may have raised the same flag since the check: the unique index decides.
    session.execute(insert.on_conflict_do_nothing(), rows)
    return new


def evaluate_proposal(
    session: Session,
    transaction: Transaction,
    now: dt.datetime,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Evaluate every rule for a transaction just proposed (flushed); record and return flags.

    R10 may also flag the seller's earlier transactions of the same day, which the new one puts
    in another place.
    """
    th = thresholds or _environment_thresholds()
    findings = evaluate(session, Scope.proposal(transaction), th)
    return record(session, [f for found in findings.values() for f in found], now)


@dataclass(frozen=True)
class RuleRun:
    """What one rule did in a nightly run."""

    rule: str
    found: int
    new: int
    seconds: float
    evaluable: bool = True


@dataclass(frozen=True)
class NightlyReport:
    """A nightly run: the window, how many transactions it held, and each rule's run."""

    since: dt.datetime
    until: dt.datetime
    transactions: int
    runs: tuple[RuleRun, ...]

    @property
    def new(self) -> int:
        return sum(run.new for run in self.runs)

    @property
    def seconds(self) -> float:
        return sum(run.seconds for run in self.runs)


def run_nightly(
    session: Session,
    now: dt.datetime,
    days: int = 30,
    thresholds: Thresholds | None = None,
    rules: Iterable[str] = RULES,
) -> NightlyReport:
    """Evaluate the rules over the transactions created in the last `days`; record new flags."""
    if now.tzinfo is None:
        raise ValueError("naive datetime given as `now`; use recpo.clock")
    th = thresholds or _environment_thresholds()
    scope = Scope.window(now - dt.timedelta(days=days), now)
    transactions = session.scalar(
        sa.select(sa.func.count()).select_from(TX).where(scope.flaggable(TX.c))
    )
    runs = []
    for rule in rules:
        function = RULES[rule]
        started = time.perf_counter()
        found = function(session, scope, th)
        new = record(session, found, now)
        runs.append(
            RuleRun(
                rule,
                len(found),
                len(new),
                time.perf_counter() - started,
                rule not in NOT_EVALUABLE,
            )
        )
    return NightlyReport(scope.since, scope.until, transactions or 0, tuple(runs))
