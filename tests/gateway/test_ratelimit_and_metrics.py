"""Rate limits (inbound per phone, outbound segments per channel) and the /metrics page."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from flows.engine import Conversations
from flows.messages import Channel, Inbound
from gateway import outbox
from gateway.inbound import SLOW_DOWN, receive
from gateway.models import Direction, Message
from gateway.ratelimit import (
    INBOUND_PER_PHONE,
    MemoryLimiter,
    Rate,
    RedisLimiter,
)
from gateway.senders import RecordingSender
from gateway.text import fold_for_sms
from recpo.i18n import DEFAULT_LOCALE, translate

PHONE = "+51987000011"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TestLimiters:
    @pytest.fixture(params=["memory", "redis"])
    def limiter(self, request, redis):
        if request.param == "memory":
            return MemoryLimiter()
        return RedisLimiter(redis)

    def test_burst_then_wait(self, limiter):
        rate = Rate(count=1, period=10, burst=3)
        assert [limiter.wait("k", rate) for _ in range(3)] == [0, 0, 0]
        wait = limiter.wait("k", rate)
        assert 9 < wait <= 10
        assert limiter.wait("other", rate) == 0  # keys are independent

    def test_cost_counts_units(self, limiter):
        rate = Rate(count=10, period=1, burst=20)
        assert limiter.wait("seg", rate, cost=20) == 0
        assert limiter.wait("seg", rate, cost=1) == pytest.approx(0.1, abs=0.02)

    def test_refill_with_time(self):
        time = FakeTime()
        limiter = MemoryLimiter(now=time)
        rate = Rate(count=1, period=10, burst=1)
        assert limiter.wait("k", rate) == 0
        assert limiter.wait("k", rate) == pytest.approx(10)
        time.now += 10
        assert limiter.wait("k", rate) == 0


class TestInboundLimit:
    def test_a_flooding_phone_is_logged_but_not_handled(self, database, db_session, clock):
        limiter = MemoryLimiter()
        allowed = int(INBOUND_PER_PHONE.burst)
        results = [
            receive(
                database,
                Conversations(),
                Inbound(Channel.SMS, PHONE, f"m{i}", f"SM{i}", clock.now()),
                limiter,
            )
            for i in range(allowed + 3)
        ]
        handled = [len(r.outbox) for r in results]
        # Each handled message gets the help reply; the first refused one gets one notice.
        assert handled == [1] * allowed + [1, 0, 0]
        notice = db_session.get(Message, results[allowed].outbox[0])
        assert notice.body == fold_for_sms(translate(DEFAULT_LOCALE, SLOW_DOWN))
        inbound = db_session.scalar(
            sa.select(sa.func.count()).select_from(Message).where(Message.direction == Direction.IN)
        )
        assert inbound == allowed + 3  # nothing accepted is lost


class TestOutboundPacing:
    def test_sends_beyond_the_channel_rate_are_paced_not_dropped(self, database, clock):
        ids = [
            receive(
                database,
                Conversations(),
                Inbound(Channel.SMS, f"+5198700{i:04d}", "hola", f"SM{i}", clock.now()),
            ).outbox[0]
            for i in range(25)
        ]
        sender = RecordingSender()
        senders = {Channel.SMS: sender, Channel.WHATSAPP: sender, Channel.USSD: sender}
        time = FakeTime()
        limiter = MemoryLimiter(now=time)
        outcomes = [outbox.send_item(database, senders, i, clock, limiter).outcome for i in ids]
        sent = outcomes.count("sent")
        assert outcomes.count("paced") == len(ids) - sent
        assert 15 <= sent <= 20  # the burst, in segments (the help text may take two)
        time.now += 10
        clock.advance(dt.timedelta(seconds=10))
        for message_id, outcome in zip(ids, outcomes, strict=True):
            if outcome == "paced":
                assert (
                    outbox.send_item(database, senders, message_id, clock, limiter).outcome
                    == "sent"
                )
        assert sorted(m.id for m in sender.sent) == sorted(ids)


class TestMetrics:
    def test_prometheus_page(self, client, app):
        client.post(
            "/ussd",
            data={
                "sessionId": "ATm1",
                "serviceCode": "*500#",
                "phoneNumber": PHONE,
                "networkCode": "71610",
                "text": "",
            },
        )
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        text = response.get_data(as_text=True)
        assert 'recpo_inbound_messages_total{channel="ussd",outcome="accepted"}' in text
        assert "recpo_outbox_backlog 0.0" in text
        assert "recpo_outbox_oldest_unsent_seconds 0.0" in text
        assert 'recpo_webhook_seconds_count{endpoint="ussd.callback"}' in text
