"""`GET /metrics`: Prometheus text format.

Counters live in each process; under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR
(an empty folder shared by the workers) and the page adds them up. The outbox backlog is read
from the database when the page is scraped, so every process reports the same truth.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from flask import Blueprint, Response, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from gateway.models import OutboxItem, OutboxState
from recpo.runtime import current_runtime, request_session

bp = Blueprint("metrics", __name__)

INBOUND = Counter(
    "recpo_inbound_messages_total",
    "Inbound messages by channel and outcome",
    ["channel", "outcome"],
)
OUTBOUND = Counter(
    "recpo_outbound_sends_total",
    "Outbound send attempts by channel and outcome",
    ["channel", "outcome"],
)
RATE_LIMITED = Counter(
    "recpo_rate_limited_total", "Messages held back by a rate limit", ["direction", "channel"]
)
WEBHOOK_SECONDS = Histogram(
    "recpo_webhook_seconds",
    "Time to answer a provider webhook",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)
WEBHOOK_PATHS = ("/twilio/", "/whatsapp", "/ussd")


@bp.before_app_request
def _start_timer() -> None:
    if request.path.startswith(WEBHOOK_PATHS):
        g.webhook_started = time.perf_counter()


@bp.after_app_request
def _observe(response: Response) -> Response:
    started = g.pop("webhook_started", None)
    if started is not None:
        WEBHOOK_SECONDS.labels(request.endpoint or "unknown").observe(time.perf_counter() - started)
    return response


class _Backlog:
    """Outbox rows not yet sent, and the age of the oldest, read at scrape time."""

    def collect(self):
        session = request_session()
        unsent = (OutboxState.PENDING, OutboxState.SENDING)
        count, oldest = session.execute(
            sa.select(sa.func.count(), sa.func.min(OutboxItem.created_at)).where(
                OutboxItem.state.in_(unsent)
            )
        ).one()
        now = current_runtime().clock.now()
        yield GaugeMetricFamily("recpo_outbox_backlog", "Outbox rows not yet sent", value=count)
        age = (now - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "recpo_outbox_oldest_unsent_seconds", "Age of the oldest unsent outbox row", value=age
        )


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Serve every metric in the Prometheus text format."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (INBOUND, OUTBOUND, RATE_LIMITED, WEBHOOK_SECONDS):
            registry.register(collector)
    registry.register(_Backlog())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
