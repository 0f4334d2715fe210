"""The dashboard (`/admin/`): trade by week, material and region; top buyers; open flags; delivery.

Every figure comes from one set-based query bounded by a date range (or, for the flag queue, by
the status index), so the page costs the same whatever the size of the tables:

- trade: one GROUP BY over the confirmed transactions of the last `weeks` Peruvian weeks (on the
  `created_at` index), bucketed into weeks by a CASE on the week boundaries computed here (exact
  in Lima time, portable to SQLite), then summed by week, by material and by department;
- top buyers: one GROUP BY buyer over the last 90 days, the ten largest by fine gold;
- open flags: one GROUP BY rule over the open flags (the `(status, id)` index);
- delivery: the first message id of the last 7 days is found on the `created_at` index, and
  outbound and failed messages are counted from it on the `(direction, id)` and `(status, id)`
  indexes (ids grow with time);
- witness alarms: the witnesses whose last answer was a refusal (one row per witness), shown
  above everything else.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from admin.charts import Bar, column_chart, row_chart
from admin.views.common import (
    bp,
    capped_count,
    lima_day_start,
    material_label,
    now,
    number,
)
from admin.views.ledger import witness_alarms
from flows.messages import Channel
from gateway.models import Direction, Message, OutboxItem, OutboxState, Status
from ledger import log as ledger_log
from recpo.clock import lima_date
from recpo.runtime import request_session
from registry.models import (
    FlagStatus,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    Transaction,
    TransactionStatus,
)

WEEK_CHOICES = (4, 12, 26, 52)
DEFAULT_WEEKS = 12
TOP_BUYERS_DAYS = 90
TOP_BUYERS = 10
DELIVERY_DAYS = 7
NO_DEPARTMENT = "—"
ZERO = Decimal(0)


@dataclass
class Totals:
    """Confirmed transactions and their fine gold."""

    transactions: int = 0
    fine_gold: Decimal = ZERO

    def add(self, count: int, grams: Decimal | None) -> None:
        self.transactions += count
        self.fine_gold += grams or ZERO


@dataclass
class Trade:
    """Confirmed trade over some weeks: by week (oldest first), material and department."""

    weeks: list[tuple[dt.date, Totals]]
    materials: list[tuple[str, Totals]]
    departments: list[tuple[str, Totals]]
    total: Totals = field(default_factory=Totals)


def week_starts(today: dt.date, weeks: int) -> list[dt.date]:
    """The Mondays of the last `weeks` weeks, oldest first, the last being this week's."""
    monday = today - dt.timedelta(days=today.weekday())
    return [monday - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def trade_by_week(db: Session, starts: list[dt.date]) -> Trade:
    """Confirmed transactions since the first of `starts` (Mondays), summed three ways."""
    bounds = [lima_day_start(day) for day in starts]
    week = sa.case(
        *[(Transaction.created_at >= bound, i) for i, bound in reversed(list(enumerate(bounds)))],
        else_=0,
    )
    rows = (
        sa.select(
            week.label("week"),
            Transaction.material,
            Transaction.department,
            Transaction.fine_gold_g,
        )
        .where(
            Transaction.status == TransactionStatus.CONFIRMED,
            Transaction.created_at >= bounds[0],
        )
        .subquery()
    )
    grouped = sa.select(
        rows.c.week,
        rows.c.material,
        rows.c.department,
        sa.func.count(),
        sa.func.sum(rows.c.fine_gold_g),
    ).group_by(rows.c.week, rows.c.material, rows.c.department)
    by_week = [Totals() for _ in starts]
    by_material: dict[str, Totals] = defaultdict(Totals)
    by_department: dict[str, Totals] = defaultdict(Totals)
    total = Totals()
    for index, material, department, count, grams in db.execute(grouped):
        by_week[index].add(count, grams)
        by_material[material].add(count, grams)
        by_department[department or NO_DEPARTMENT].add(count, grams)
        total.add(count, grams)

    def ranked(groups: dict[str, Totals]) -> list[tuple[str, Totals]]:
        return sorted(groups.items(), key=lambda kv: (-kv[1].fine_gold, -kv[1].transactions, kv[0]))

    return Trade(
        list(zip(starts, by_week, strict=True)), ranked(by_material), ranked(by_department), total
    )


@dataclass(frozen=True)
class TopBuyer:
    registrant: Registrant | None
    buyer_id: int
    transactions: int
    fine_gold: Decimal


def top_buyers(db: Session, since: dt.datetime, limit: int = TOP_BUYERS) -> list[TopBuyer]:
    """The buyers with the most fine gold in confirmed transactions since `since`."""
    fine = sa.func.coalesce(sa.func.sum(Transaction.fine_gold_g), 0)
    rows = db.execute(
        sa.select(Transaction.buyer_id, sa.func.count(), fine)
        .where(Transaction.status == TransactionStatus.CONFIRMED, Transaction.created_at >= since)
        .group_by(Transaction.buyer_id)
        .order_by(fine.desc(), sa.func.count().desc(), Transaction.buyer_id)
        .limit(limit)
    ).all()
    ids = [row[0] for row in rows]
    names = {r.id: r for r in db.scalars(sa.select(Registrant).where(Registrant.id.in_(ids)))}
    return [TopBuyer(names.get(i), i, n, Decimal(g)) for i, n, g in rows]


def open_flags_by_rule(db: Session) -> list[tuple[str, int]]:
    """Open red flags counted by rule, the largest first."""
    count = sa.func.count()
    return [
        (rule, n)
        for rule, n in db.execute(
            sa.select(RedFlag.rule, count)
            .where(RedFlag.status == FlagStatus.OPEN)
            .group_by(RedFlag.rule)
            .order_by(count.desc(), RedFlag.rule)
        )
    ]


@dataclass
class Delivery:
    """Outbound messages of one channel over the last days, and how many did not arrive."""

    channel: Channel
    outbound: int = 0
    failed: int = 0
    undelivered: int = 0

    @property
    def not_delivered(self) -> int:
        return self.failed + self.undelivered

    @property
    def rate(self) -> float | None:
        """Share of outbound messages that failed or were undelivered (None without any)."""
        return self.not_delivered / self.outbound if self.outbound else None


def delivery_health(db: Session, since: dt.datetime) -> list[Delivery]:
    """Outbound, failed and undelivered messages by channel since `since`."""
    health = {channel: Delivery(channel) for channel in Channel}
    first_id = db.scalar(
        sa.select(Message.id)
        .where(Message.created_at >= since)
        .order_by(Message.created_at)
        .limit(1)
    )
    if first_id is None:
        return list(health.values())
    for channel, count in db.execute(
        sa.select(Message.channel, sa.func.count())
        .where(Message.direction == Direction.OUT, Message.id >= first_id)
        .group_by(Message.channel)
    ):
        health[channel].outbound = count
    for channel, status, count in db.execute(
        sa.select(Message.channel, Message.status, sa.func.count())
        .where(Message.status.in_([Status.FAILED, Status.UNDELIVERED]), Message.id >= first_id)
        .group_by(Message.channel, Message.status)
    ):
        setattr(health[channel], "failed" if status is Status.FAILED else "undelivered", count)
    return list(health.values())


def _weeks_arg() -> int:
    raw = request.args.get("weeks", "")
    return int(raw) if raw.isdigit() and int(raw) in WEEK_CHOICES else DEFAULT_WEEKS


def _grams(value: object) -> str:
    return number(value, 0 if value and value >= 100 else 2)  # type: ignore[operator]


@bp.get("/")
def home() -> ResponseReturnValue:
    """The dashboard: trade by week, material and region; top buyers; flags; delivery health."""
    db = request_session()
    moment = now()
    weeks = _weeks_arg()
    starts = week_starts(lima_date(moment), weeks)
    trade = trade_by_week(db, starts)
    delivery = delivery_health(db, moment - dt.timedelta(days=DELIVERY_DAYS))
    try:
        head = ledger_log.latest_checkpoint(db)
    except ledger_log.NotFound:
        head = None
    count_fmt = lambda v: number(v, 0)  # noqa: E731
    week_label = lambda day: day.strftime("%d/%m")  # noqa: E731
    charts = {
        "week_transactions": column_chart(
            [
                Bar(
                    week_label(day),
                    t.transactions,
                    _("Week of %(day)s: %(n)s", day=day.isoformat(), n=count_fmt(t.transactions)),
                )
                for day, t in trade.weeks
            ],
            _("Confirmed transactions by week"),
            count_fmt,
            css="c-count",
        ),
        "week_fine_gold": column_chart(
            [
                Bar(
                    week_label(day),
                    t.fine_gold,
                    _("Week of %(day)s: %(n)s g", day=day.isoformat(), n=_grams(t.fine_gold)),
                )
                for day, t in trade.weeks
            ],
            _("Fine gold by week (g)"),
            _grams,
            css="c-gold",
            tick_fmt=count_fmt,
        ),
        "materials": row_chart(
            [Bar(material_label(m), t.fine_gold) for m, t in trade.materials],
            _("Fine gold by material (g)"),
            _grams,
            css="c-gold",
        ),
        "departments": row_chart(
            [Bar(d, t.fine_gold) for d, t in trade.departments],
            _("Fine gold by department (g)"),
            _grams,
            css="c-gold",
        ),
    }
    return render_template(
        "admin/dashboard.html",
        weeks=weeks,
        week_choices=WEEK_CHOICES,
        since=starts[0],
        trade=trade,
        charts=charts,
        buyers=top_buyers(db, moment - dt.timedelta(days=TOP_BUYERS_DAYS)),
        buyers_since=lima_date(moment - dt.timedelta(days=TOP_BUYERS_DAYS)),
        flags_by_rule=open_flags_by_rule(db),
        open_flags=capped_count(db, sa.select(RedFlag.id).where(RedFlag.status == FlagStatus.OPEN)),
        escalated=capped_count(
            db, sa.select(RedFlag.id).where(RedFlag.status == FlagStatus.ESCALATED)
        ),
        pending_links=capped_count(
            db, sa.select(PhoneLink.id).where(PhoneLink.state == PhoneLinkState.PENDING)
        ),
        delivery=delivery,
        delivery_days=DELIVERY_DAYS,
        not_delivered=sum(d.not_delivered for d in delivery),
        backlog=capped_count(
            db,
            sa.select(OutboxItem.message_id).where(
                OutboxItem.state.in_([OutboxState.PENDING, OutboxState.SENDING])
            ),
        ),
        head=head,
        witness_alarms=witness_alarms(db),
        grams=_grams,
        top_buyers_days=TOP_BUYERS_DAYS,
    )
