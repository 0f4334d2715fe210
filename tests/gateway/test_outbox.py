"""Sending from the outbox: once, with retries and backoff, statuses forward only, nothing lost."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, SimpleWorker

from flows.engine import Conversations
from flows.messages import Channel, Inbound
from gateway import outbox, tasks
from gateway.dispatch import QUEUE_NAME, Relay, RQDispatcher, flush_relays
from gateway.inbound import receive
from gateway.models import Message, MessageEvent, OutboxItem, OutboxState, Status, advances
from gateway.senders import PermanentSendError, RecordingSender, RetryableSendError
from recpo.config import Settings
from recpo.runtime import Runtime


def _queue_reply(database, clock, provider_id: str = "SM1") -> int:
    inbound = Inbound(Channel.SMS, "+51987000011", "hola", provider_id, clock.now())
    return receive(database, Conversations(), inbound).outbox[0]


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def senders(sender):
    return {Channel.SMS: sender, Channel.WHATSAPP: sender, Channel.USSD: sender}


class TestSendItem:
    def test_sent_once(self, database, db_session, clock, senders, sender):
        message_id = _queue_reply(database, clock)
        assert outbox.send_item(database, senders, message_id, clock).outcome == "sent"
        assert outbox.send_item(database, senders, message_id, clock).outcome == "skipped"
        assert [m.id for m in sender.sent] == [message_id]
        message = db_session.get(Message, message_id)
        assert (message.status, message.provider_id) == (Status.SENT, f"rec-{message_id}")
        item = db_session.get(OutboxItem, message_id)
        assert (item.state, item.attempts) == (OutboxState.SENT, 1)

    def test_retryable_error_backs_off_then_sends(
        self, database, db_session, clock, senders, sender
    ):
        message_id = _queue_reply(database, clock)
        sender.failures.append(RetryableSendError("HTTP 503"))
        result = outbox.send_item(database, senders, message_id, clock)
        assert result.outcome == "retry"
        assert clock.now() + dt.timedelta(seconds=1) <= result.retry_at
        assert result.retry_at <= clock.now() + dt.timedelta(seconds=2)
        # Not due yet: a second delivery of the job does nothing.
        assert outbox.send_item(database, senders, message_id, clock).outcome == "skipped"
        clock.advance(dt.timedelta(seconds=3))
        assert outbox.send_item(database, senders, message_id, clock).outcome == "sent"
        item = db_session.get(OutboxItem, message_id)
        assert item.attempts == 2
        assert item.last_error is None

    def test_permanent_error_fails_at_once(self, database, db_session, clock, senders, sender):
        message_id = _queue_reply(database, clock)
        sender.failures.append(PermanentSendError("invalid number (21211)"))
        assert outbox.send_item(database, senders, message_id, clock).outcome == "dead"
        message = db_session.get(Message, message_id)
        assert message.status is Status.FAILED
        item = db_session.get(OutboxItem, message_id)
        assert (item.state, item.last_error) == (OutboxState.DEAD, "invalid number (21211)")
        assert sender.sent == []

    def test_gives_up_after_max_attempts(self, database, db_session, clock, senders, sender):
        message_id = _queue_reply(database, clock)
        sender.failures.extend(RetryableSendError("timeout") for _ in range(outbox.MAX_ATTEMPTS))
        outcomes = []
        for _ in range(outbox.MAX_ATTEMPTS):
            outcomes.append(outbox.send_item(database, senders, message_id, clock).outcome)
            clock.advance(outbox.MAX_DELAY)
        assert outcomes == ["retry"] * (outbox.MAX_ATTEMPTS - 1) + ["dead"]
        assert db_session.get(Message, message_id).status is Status.FAILED

    def test_a_claimed_row_is_not_sent_by_a_second_worker(self, database, clock, senders, sender):
        message_id = _queue_reply(database, clock)
        assert outbox.claim(database, message_id, clock.now()) is not None
        # The first worker is mid-send: a second worker must keep off the row.
        assert outbox.send_item(database, senders, message_id, clock).outcome == "skipped"
        assert sender.sent == []

    def test_a_dead_workers_row_is_sent_after_its_lease(
        self, database, db_session, clock, senders, sender, caplog
    ):
        message_id = _queue_reply(database, clock)
        assert outbox.claim(database, message_id, clock.now()) is not None  # then the worker dies
        assert message_id not in outbox.due_items(database, clock.now())
        clock.advance(outbox.LEASE + dt.timedelta(seconds=1))
        assert outbox.due_items(database, clock.now()) == [message_id]
        with caplog.at_level("WARNING"):
            assert outbox.send_item(database, senders, message_id, clock).outcome == "sent"
        assert "duplicate if the provider had accepted" in caplog.text
        assert [m.id for m in sender.sent] == [message_id]

    def test_simulated_messages_never_reach_a_provider(
        self, database, db_session, clock, senders, sender
    ):
        inbound = Inbound(Channel.SMS, "+51987000011", "hola", "SIM1", clock.now(), simulated=True)
        message_id = receive(database, Conversations(), inbound).outbox[0]
        assert outbox.send_item(database, senders, message_id, clock).outcome == "sent"
        assert sender.sent == []  # the configured provider was not used
        message = db_session.get(Message, message_id)
        assert message.simulated
        assert message.provider_id.startswith("console-")


class TestBackoff:
    @pytest.mark.parametrize(
        ("attempt", "low", "high"), [(1, 1, 2), (2, 2, 4), (3, 4, 8), (20, 300, 600)]
    )
    def test_doubles_with_jitter_and_a_ceiling(self, attempt, low, high):
        assert outbox.backoff(attempt, rng=lambda: 0.0) == dt.timedelta(seconds=low)
        assert outbox.backoff(attempt, rng=lambda: 1.0) == dt.timedelta(seconds=high)


class TestStatus:
    @pytest.mark.parametrize(
        ("current", "new", "moves"),
        [
            (Status.QUEUED, Status.SENT, True),
            (Status.SENT, Status.DELIVERED, True),
            (Status.DELIVERED, Status.READ, True),
            (Status.DELIVERED, Status.SENT, False),
            (Status.READ, Status.DELIVERED, False),
            (Status.SENT, Status.FAILED, True),
            (Status.FAILED, Status.DELIVERED, False),
            (Status.UNDELIVERED, Status.SENT, False),
            (Status.READ, Status.FAILED, False),
            (Status.RECEIVED, Status.SENT, False),
        ],
    )
    def test_only_forward(self, current, new, moves):
        assert advances(current, new) is moves

    def test_callbacks_never_move_backwards(self, database, db_session, clock, senders):
        message_id = _queue_reply(database, clock)
        outbox.send_item(database, senders, message_id, clock)
        provider_id = f"rec-{message_id}"
        assert outbox.apply_status(
            database, Channel.SMS, provider_id, Status.DELIVERED, None, clock.now()
        )
        assert not outbox.apply_status(
            database, Channel.SMS, provider_id, Status.SENT, None, clock.now()
        )
        assert db_session.get(Message, message_id).status is Status.DELIVERED
        history = db_session.scalars(
            sa.select(MessageEvent.status)
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        ).all()
        assert history == [Status.QUEUED, Status.SENT, Status.DELIVERED, Status.SENT]

    def test_unknown_provider_id_is_ignored(self, database, clock):
        assert not outbox.apply_status(
            database, Channel.SMS, "SMnope", Status.DELIVERED, None, clock.now()
        )


class TestRQ:
    @pytest.fixture
    def worker_context(self, database, redis, clock, senders, tmp_path: Path):
        settings = Settings.from_env({}, tmp_path)
        runtime = Runtime(settings=settings, database=database, redis=redis, clock=clock)
        yield tasks.configure(runtime, senders)
        tasks._context = None

    def _work(self, redis) -> None:
        SimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(burst=True)

    def test_jobs_carry_rows_to_the_sender(self, database, redis, clock, worker_context, sender):
        ids = [_queue_reply(database, clock, f"SM{i}") for i in range(3)]
        RQDispatcher(redis).dispatch(ids)
        self._work(redis)
        assert sorted(m.id for m in sender.sent) == sorted(ids)

    def test_a_job_delivered_twice_sends_once(self, database, redis, clock, worker_context, sender):
        message_id = _queue_reply(database, clock)
        RQDispatcher(redis).dispatch([message_id])
        RQDispatcher(redis).dispatch([message_id])
        self._work(redis)
        assert [m.id for m in sender.sent] == [message_id]

    def test_flushed_redis_loses_nothing(self, database, redis, clock, worker_context, sender):
        ids = [_queue_reply(database, clock, f"SM{i}") for i in range(4)]
        RQDispatcher(redis).dispatch(ids)
        redis.flushdb()  # Redis restarted without persistence: the jobs are gone
        self._work(redis)
        assert sender.sent == []
        clock.advance(outbox.RECONCILE_AFTER + dt.timedelta(seconds=1))
        assert tasks.reconcile() == 4
        self._work(redis)
        assert sorted(m.id for m in sender.sent) == sorted(ids)
        assert tasks.reconcile() == 0


class TestJobs:
    """`RQDispatcher`: rows into jobs."""

    def test_each_call_is_a_job(self, redis):
        dispatcher = RQDispatcher(redis)
        dispatcher.dispatch([7, 8])
        dispatcher.dispatch([9])
        jobs = Queue(QUEUE_NAME, connection=redis).jobs
        assert [job.args for job in jobs] == [([7, 8],), ([9],)]

    def test_a_job_carries_at_most_a_batch(self, redis):
        dispatcher = RQDispatcher(redis)
        ids = list(range(1, RQDispatcher.BATCH * 2 + 2))
        dispatcher.dispatch(ids)
        jobs = Queue(QUEUE_NAME, connection=redis).jobs
        assert [len(job.args[0]) for job in jobs] == [RQDispatcher.BATCH, RQDispatcher.BATCH, 1]
        assert [i for job in jobs for i in job.args[0]] == ids

    def test_a_failed_enqueue_is_logged_and_raised(self, caplog):
        dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens
        with pytest.raises(RedisConnectionError):
            RQDispatcher(dead).dispatch([1, 2])
        assert "2 row(s) not enqueued" in caplog.text


class TestRelay:
    """A web process's webhooks leave their rows to one thread (`Relay`)."""

    @staticmethod
    def _job_args(redis) -> list[list[int]]:
        return [job.args[0] for job in Queue(QUEUE_NAME, connection=redis).jobs]

    def test_rows_left_within_the_linger_travel_in_one_job(self, redis):
        relay = Relay(RQDispatcher(redis), linger=0.5)
        relay.dispatch([1])
        relay.dispatch([2, 3])  # both return at once: nothing is enqueued yet
        assert self._job_args(redis) == []
        deadline = time.monotonic() + 10
        while not self._job_args(redis):
            assert time.monotonic() < deadline, "the relay never enqueued"
            time.sleep(0.02)
        assert relay.flush()
        assert self._job_args(redis) == [[1, 2, 3]]

    def test_flush_enqueues_what_waits_now(self, redis):
        relay = Relay(RQDispatcher(redis), linger=60)
        relay.dispatch([5])
        assert relay.flush()
        assert self._job_args(redis) == [[5]]

    def test_flush_relays_empties_every_relay_as_at_exit(self, redis):
        first, second = Relay(RQDispatcher(redis), linger=60), Relay(RQDispatcher(redis), linger=60)
        first.dispatch([7])
        second.dispatch([8, 9])
        assert flush_relays()
        assert sorted(self._job_args(redis)) == [[7], [8, 9]]

    def test_a_full_batch_does_not_wait_for_the_linger(self, redis):
        relay = Relay(RQDispatcher(redis), linger=60)
        relay.dispatch(list(range(1, RQDispatcher.BATCH + 1)))
        deadline = time.monotonic() + 10
        while not self._job_args(redis):
            assert time.monotonic() < deadline, "a full batch waited for the linger"
            time.sleep(0.02)
        assert self._job_args(redis) == [list(range(1, RQDispatcher.BATCH + 1))]

    def test_an_unreachable_redis_is_logged_not_raised_and_the_rows_stay_queued(
        self, database, clock, caplog
    ):
        ids = [_queue_reply(database, clock, f"SM{i}") for i in range(2)]
        dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens
        relay = Relay(RQDispatcher(dead), linger=0)
        relay.dispatch(ids)  # a webhook never sees the failure
        deadline = time.monotonic() + 30
        while "not enqueued" not in caplog.text:
            assert time.monotonic() < deadline, "the failed enqueue was not logged"
            time.sleep(0.05)
        assert relay.flush()
        with database.transaction() as session:
            states = session.scalars(
                sa.select(OutboxItem.state).where(OutboxItem.message_id.in_(ids))
            ).all()
        assert states == [OutboxState.PENDING] * 2  # for the reconciler
