"""No secret, body or full phone in the log; faults lose nothing and process nothing twice."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from rq import Queue

from flows.engine import Conversations
from flows.messages import Channel, Inbound
from gateway import outbox
from gateway.dispatch import QUEUE_NAME, RQDispatcher
from gateway.inbound import receive
from gateway.models import Direction, Message, OutboxItem, OutboxState, Status
from gateway.service import EXTENSION_KEY
from recpo.clock import SystemClock
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.gateway.test_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS,
    TWIML,
    _sender,
    signed,
    twilio_config,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET_BODY = "COMPRA 45678912 DORE 25.5G 850 5400"


class TestLogPrivacy:
    def test_info_log_has_no_secret_body_or_full_phone(
        self, database, redis, redis_url, clock, instance_path, caplog, make_app
    ):
        caplog.set_level(logging.INFO)
        with FakeTwilioAPI(ACCOUNT_SID, AUTH_TOKEN) as fake:
            app = make_app(
                twilio_config(database, redis_url, clock, instance_path, TWILIO_API_URL=fake.url)
            )
            form = {**SMS, "Body": SECRET_BODY}
            response = signed("/twilio/sms", form).post(app.test_client())
            assert response.status_code == 200
            assert response.get_data(as_text=True) == TWIML
            reply = (
                database.sessionmaker()
                .scalars(sa.select(Message.id).where(Message.direction == Direction.OUT))
                .one()
            )
            sender = _sender(fake)
            result = outbox.send_item(database, {Channel.SMS: sender}, reply, clock)
            sender.close()
            assert result.outcome == "sent"
        phone_digits = SMS["From"].lstrip("+")
        assert caplog.records, "the path logs something at INFO"
        for record in caplog.records:
            line = record.getMessage()
            assert phone_digits not in line, line
            assert phone_digits[-8:] not in line, line
            assert SECRET_BODY not in line and "45678912" not in line, line
            assert AUTH_TOKEN not in line, line
        assert any("***" in r.getMessage() or "*" in r.getMessage() for r in caplog.records)


class FailOnce(Conversations):
    """The real conversations, with the database connection cut the first time."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False

    def handle(self, session, inbound):
        if not self.cut:
            self.cut = True
            session.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return super().handle(session, inbound)


class TestFaults:
    def test_connection_dropped_mid_request_then_retried(
        self, committing_database, redis_url, clock, instance_path, make_app
    ):
        config = twilio_config(committing_database, redis_url, clock, instance_path)
        app = make_app(config)
        app.extensions[EXTENSION_KEY].conversations = FailOnce()
        client = app.test_client()
        webhook = signed("/twilio/sms", SMS)
        assert webhook.post(client).status_code == 500
        with committing_database.transaction() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0
        # Twilio retries the webhook: handled once, answered once.
        assert webhook.post(client).status_code == 200
        assert webhook.post(client).status_code == 200
        with committing_database.transaction() as session:
            inbound = session.scalar(
                sa.select(sa.func.count())
                .select_from(Message)
                .where(Message.direction == Direction.IN)
            )
            assert inbound == 1
            assert session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)) == 1

    def test_worker_killed_mid_send_then_another_sends_it(
        self, committing_database, redis, redis_url, clock, tmp_path
    ):
        # The workers are real processes on the real clock.
        now = SystemClock().now()
        inbound = Inbound(Channel.SMS, "+51987000011", "hola", "SMkill", now)
        message_id = receive(committing_database, Conversations(), inbound).outbox[0]
        url = committing_database.bind.url.render_as_string(hide_password=False)
        with FakeTwilioAPI(ACCOUNT_SID, AUTH_TOKEN) as fake:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": redis_url,
                "RECPO_INSTANCE_PATH": str(tmp_path),
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_SMS_FROM": "+51923000111",
                "TWILIO_API_URL": fake.url,
                "OUTBOX_LEASE_SECONDS": "2",
            }
            recpo = [str(Path(sys.executable).parent / "recpo")]
            fake.hang_next(30)
            RQDispatcher(redis).dispatch([message_id])
            first = subprocess.Popen(
                [*recpo, "worker", "--burst"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while not fake.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake.requests, "the first worker never reached Twilio"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            with committing_database.transaction() as session:
                assert session.get(OutboxItem, message_id).state is OutboxState.SENDING
            time.sleep(2.5)  # the dead worker's lease runs out
            second = subprocess.run(
                [*recpo, "worker", "--burst"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 0, second.stderr
            assert "sending again" in second.stderr
            with committing_database.transaction() as session:
                item = session.get(OutboxItem, message_id)
                assert item.state is OutboxState.SENT
                assert item.message.status is Status.SENT
            # The documented window: the killed worker's request reached Twilio, so it went twice.
            assert len(fake.requests) == 2
        assert Queue(QUEUE_NAME, connection=redis).count == 0
