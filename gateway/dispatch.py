"""Getting outbox rows to a sender: RQ jobs with Redis, a thread pool without it.

Both only carry outbox ids; the row itself decides whether it still needs sending (`claim`), so a
job delivered twice, or a row dispatched by both a webhook and the reconciler, is sent once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from redis import Redis
from rq import Queue

from flows.messages import Channel
from gateway import outbox
from gateway.ratelimit import MemoryLimiter
from gateway.senders import Sender
from recpo.clock import Clock
from recpo.db import Database

log = logging.getLogger(__name__)

QUEUE_NAME = "outbox"
RECONCILE_EVERY = 10.0  # seconds


class Dispatcher(Protocol):
    """Hands outbox rows to whatever sends them."""

    def dispatch(self, message_ids: list[int]) -> None: ...


class RQDispatcher:
    """Enqueue send jobs for outbox rows (`recpo worker` runs them), many webhooks' rows per job.

    Enqueuing a job costs a webhook more Python than its whole conversation step (RQ builds and
    serialises a job record), so concurrent webhooks in one process share jobs, as appends share
    the ledger sequencer: a caller that finds no enqueue in progress enqueues everything waiting,
    again until nothing is; a caller that finds one in progress leaves its ids to it and returns.
    Alone, a webhook's replies are enqueued before it returns; under load one job carries the
    replies of every webhook that finished during the previous enqueue. The rows are committed
    before they get here, so ids that never reach Redis (a failed enqueue, a process killed
    meanwhile) wait in the outbox for the reconciler, as jobs lost in Redis do.
    """

    BATCH = 100  # outbox ids per job at most

    def __init__(self, redis: Redis) -> None:
        self.queue = Queue(QUEUE_NAME, connection=redis)
        self._lock = threading.Lock()
        self._waiting: list[int] = []
        self._enqueuing = False

    def dispatch(self, message_ids: list[int]) -> None:
        """Have the rows enqueued: by this caller, or by the one already enqueueing."""
        if not message_ids:
            return
        with self._lock:
            self._waiting.extend(message_ids)
            if self._enqueuing:
                return
            self._enqueuing = True
        batch: list[int] = []
        try:
            while True:
                with self._lock:
                    batch = self._waiting[: self.BATCH]
                    del self._waiting[: self.BATCH]
                    if not batch:
                        self._enqueuing = False
                        return
                self._enqueue(batch)
        except BaseException:
            with self._lock:
                left = len(batch) + len(self._waiting)
                self._waiting.clear()
                self._enqueuing = False
            log.warning("outbox: %d row(s) not enqueued; the reconciler sends them", left)
            raise

    def _enqueue(self, message_ids: list[int]) -> None:
        # One round trip: RQ sends the job and the queue registration in one pipeline.
        with self.queue.connection.pipeline() as pipe:
            self.queue.enqueue(
                "gateway.tasks.send_messages",
                message_ids,
                result_ttl=0,
                failure_ttl=86400,
                pipeline=pipe,
            )
            pipe.execute()

    def dispatch_later(self, message_id: int, at: dt.datetime) -> None:
        """Enqueue a retry for `at` (the worker's scheduler releases it)."""
        self.queue.enqueue_at(
            at, "gateway.tasks.send_messages", [message_id], result_ttl=0, failure_ttl=86400
        )


class InProcessDispatcher:
    """Send on a small thread pool in this process: the embedded default, without Redis.

    Retries are timers; a reconciler thread started with the first dispatch picks up rows that
    were left behind (a restart between commit and send).
    """

    def __init__(
        self,
        database: Database,
        senders: Mapping[Channel, Sender],
        clock: Clock,
        workers: int = 2,
    ) -> None:
        self.database = database
        self.senders = senders
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbox")
        self.limiter = MemoryLimiter()
        self._reconciler: threading.Thread | None = None
        self._lock = threading.Lock()

    def dispatch(self, message_ids: list[int]) -> None:
        """Send each row on the pool."""
        self._start_reconciler()
        for message_id in message_ids:
            self.pool.submit(self._send, message_id)

    def _send(self, message_id: int) -> None:
        try:
            result = outbox.send_item(
                self.database, self.senders, message_id, self.clock, self.limiter
            )
        except Exception:
            log.exception(
                "outbox %s: send failed unexpectedly; the reconciler will retry", message_id
            )
            return
        if result.fallback_id is not None:
            self.dispatch([result.fallback_id])
        if result.outcome in {"retry", "paced"} and result.retry_at is not None:
            delay = max(0.0, (result.retry_at - self.clock.now()).total_seconds())
            timer = threading.Timer(delay, self.dispatch, args=([message_id],))
            timer.daemon = True
            timer.start()

    def _start_reconciler(self) -> None:
        with self._lock:
            if self._reconciler is not None:
                return
            self._reconciler = threading.Thread(target=self._reconcile_forever, daemon=True)
            self._reconciler.start()

    def _reconcile_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(RECONCILE_EVERY):
            try:
                from gateway.notices import expire_transactions  # notices build on dispatch

                expire_transactions(self.database, self.dispatch, self.clock.now())
                due = outbox.due_items(self.database, self.clock.now())
                if due:
                    log.info("reconciler: %d outbox rows were left behind; sending", len(due))
                    for message_id in due:
                        self.pool.submit(self._send, message_id)
            except Exception:
                log.exception("reconciler pass failed; trying again later")
