"""Getting outbox rows to a sender: RQ jobs with Redis, a thread pool without it.

A web process hands its rows to RQ through a `Relay` (one thread, many webhooks' rows per job);
the worker's retries and the reconciler enqueue directly (`RQDispatcher`). All carry only outbox
ids; the row itself decides whether it still needs sending (`claim`), so a job delivered twice,
or a row dispatched by both a webhook and the reconciler, is sent once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import threading
import time
import weakref
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
LINGER = 0.05  # seconds a relay waits for more rows before it enqueues (20 ms: 3% more CPU)


class Dispatcher(Protocol):
    """Hands outbox rows to whatever sends them."""

    def dispatch(self, message_ids: list[int]) -> None: ...


class RQDispatcher:
    """Enqueue send jobs for outbox rows (`recpo worker` runs them), up to BATCH rows per job.

    The rows are committed before they get here, so rows whose job never reaches Redis (a failed
    enqueue, a process killed meanwhile) wait in the outbox for the reconciler, as jobs lost in
    Redis do.
    """

    BATCH = 100  # outbox ids per job at most

    def __init__(self, redis: Redis) -> None:
        self.queue = Queue(QUEUE_NAME, connection=redis)

    def dispatch(self, message_ids: list[int]) -> None:
        """Enqueue the rows as one job per BATCH; raise if Redis refuses (the rows stay queued)."""
        for start in range(0, len(message_ids), self.BATCH):
            batch = message_ids[start : start + self.BATCH]
            try:
                self._enqueue(batch)
            except Exception:
                left = len(message_ids) - start
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


class Relay:
    """A web process's way to RQ: webhooks leave their outbox ids and return; one thread enqueues.

    The thread wakes for the first id, waits up to `linger` for more (under load a webhook
    commits every few milliseconds) and enqueues everything waiting as one job. A job costs a
    webhook more Python than its conversation step (RQ builds and writes a job record), and
    this way every webhook of the window shares one instead of paying for its own. Replies leave
    `linger` later at most. The rows are committed before they get here, so ids the thread has
    not enqueued when the process dies wait in the outbox for the reconciler (`recpo worker`, after
    `outbox.RECONCILE_AFTER`), as jobs lost in Redis do; a process that exits normally enqueues
    them first (`flush_relays`, at exit). A failed enqueue is logged, never raised into a webhook.
    """

    def __init__(self, dispatcher: RQDispatcher, linger: float = LINGER) -> None:
        self.dispatcher = dispatcher
        self.linger = linger
        self._changed = threading.Condition()
        self._waiting: list[int] = []
        self._in_hand = 0  # ids the thread has taken and not yet enqueued (or given up)
        self._thread: threading.Thread | None = None
        self._pid = 0
        _RELAYS.add(self)

    def dispatch(self, message_ids: list[int]) -> None:
        """Leave the rows for the relay thread."""
        if not message_ids:
            return
        with self._changed:
            # Wake the thread for a first row or a full job, not for each row while it lingers.
            wake = not self._waiting or len(self._waiting) + len(message_ids) >= RQDispatcher.BATCH
            self._waiting.extend(message_ids)
            self._start()
            if wake:
                self._changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Enqueue every row waiting, in this thread, and wait for the batch the relay holds.

        Return whether nothing is left waiting. For shutdown, and for whoever needs the jobs now.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            waiting, self._waiting = self._waiting, []
        if waiting:
            try:
                self.dispatcher.dispatch(waiting)
            except Exception:
                log.exception("outbox relay: enqueue failed; the reconciler sends the rows")
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._waiting and not self._in_hand,
                max(0.0, deadline - time.monotonic()),
            )

    def _start(self) -> None:
        """Start the thread in this process (again after a fork). The caller holds the lock."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._in_hand = 0
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch = RQDispatcher.BATCH
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                # Let other webhooks' rows join, unless a job's worth is waiting already.
                self._changed.wait_for(lambda: len(self._waiting) >= batch, self.linger)
                taken = self._waiting[:batch]
                del self._waiting[:batch]
                self._in_hand = len(taken)
            # A failure is logged by RQDispatcher; the rows wait in the outbox for the reconciler.
            with contextlib.suppress(Exception):
                self.dispatcher.dispatch(taken)
            with self._changed:
                self._in_hand = 0
                self._changed.notify_all()


_RELAYS: weakref.WeakSet[Relay] = weakref.WeakSet()


def flush_relays(timeout: float = 10.0) -> bool:
    """Hand every relay's waiting rows to RQ now; return whether none is left waiting.

    At exit, so a process that stops normally leaves nothing for the reconciler; and wherever
    jobs must be in Redis before what follows (a test that empties Redis for the next).
    """
    return all([relay.flush(timeout) for relay in list(_RELAYS)])


atexit.register(flush_relays)


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
