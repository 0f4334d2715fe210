"""RQ jobs (run by `recpo worker`): send outbox rows, re-dispatch rows whose job was lost.

One worker process sends on a small thread pool: the wait for the provider's answer, not our CPU,
is what a send costs. A job returns once its own rows are handled (sent, retried later, paced or
given up), as before. While it runs, the pool also takes on other rows that are due now, whose
jobs are still queued behind it; each such row is claimed like any other, so it is sent once, and
its job later finds it sent (or still in flight, and waits for it) instead of sending it again.
Without a connection pool (a database bound to one connection, as in tests) or with senders
handed in, rows go one at a time in the job's own thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from flows.messages import Channel
from gateway import notices, outbox
from gateway.dispatch import RQDispatcher
from gateway.ratelimit import RedisLimiter
from gateway.senders import Sender, build_senders
from recpo.config import Settings
from recpo.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 100
# Sends in flight at once in one worker process.
SEND_THREADS = 8
# Rows one process holds in flight or waiting for a thread: beyond its jobs' own rows, it takes on
# rows that are due now only up to this many (and only when a whole round of threads is free).
IN_FLIGHT = 2 * SEND_THREADS
# Rows this process sent: later jobs for them skip at once, without a query.
REMEMBER = 100_000


class _Sent:
    """The most recent `size` outbox rows this process sent (bounded)."""

    def __init__(self, size: int = REMEMBER) -> None:
        self.size = size
        self.ids: OrderedDict[int, None] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, message_id: int) -> None:
        with self.lock:
            self.ids[message_id] = None
            if len(self.ids) > self.size:
                self.ids.popitem(last=False)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.ids


@dataclass
class WorkerContext:
    """What jobs need, built once per worker process."""

    runtime: Runtime
    senders: dict[Channel, Sender]
    dispatcher: RQDispatcher
    limiter: RedisLimiter
    pool: ThreadPoolExecutor | None = None  # None: one row at a time, in the job's thread
    thread_senders: Callable[[], dict[Channel, Sender]] | None = None
    sent: _Sent = field(default_factory=_Sent)
    in_flight: dict[int, Future[outbox.SendResult]] = field(default_factory=dict)
    # While a channel's pace holds rows back, taking on more rows would only hand them back.
    paced_until: dt.datetime | None = None
    # Reentrant: a future that finished before its callback was added runs it at once, here.
    lock: threading.RLock = field(default_factory=threading.RLock)


_context: WorkerContext | None = None


def configure(runtime: Runtime, senders: dict[Channel, Sender] | None = None) -> WorkerContext:
    """Set the services jobs in this process use (the worker calls it before working)."""
    global _context
    if runtime.redis is None:
        raise RuntimeError("RQ jobs need REDIS_URL")
    pool, thread_senders = None, None
    # Concurrent sends need a connection pool, and a sender per thread (provider clients keep
    # per-request state); senders handed in are used as they are, one row at a time.
    if senders is None and isinstance(runtime.database.bind, Engine):
        pool = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")
        thread_senders = _per_thread(runtime.settings)
    _context = WorkerContext(
        runtime,
        senders or build_senders(runtime.settings),
        RQDispatcher(runtime.redis),
        RedisLimiter(runtime.redis),
        pool,
        thread_senders,
    )
    return _context


def _per_thread(settings: Settings) -> Callable[[], dict[Channel, Sender]]:
    local = threading.local()

    def senders() -> dict[Channel, Sender]:
        if not hasattr(local, "senders"):
            local.senders = build_senders(settings)
        return local.senders

    return senders


def context() -> WorkerContext:
    """Return this process's job context, building it from the environment if needed."""
    return _context or configure(Runtime.from_settings(Settings.from_env()))


def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send a batch of outbox rows; schedule retries; return counts by outcome.

    An unexpected error on a row fails the job after its other rows were handled (the
    reconciler sends that row again later).
    """
    ctx = context()
    counts: dict[str, int] = {}
    mine: list[Future[outbox.SendResult]] = []
    here: list[int] = []
    with ctx.lock:
        for message_id in dict.fromkeys(message_ids):
            if message_id in ctx.sent:
                counts["skipped"] = counts.get("skipped", 0) + 1
            elif message_id in ctx.in_flight:
                mine.append(ctx.in_flight[message_id])  # taken on earlier: wait for it
            elif ctx.pool is not None:
                mine.append(_start(ctx, message_id))
            else:
                here.append(message_id)
    if ctx.pool is not None:
        _take_on_due_rows(ctx)
    mine += [_run_here(ctx, message_id) for message_id in here]
    failure: BaseException | None = None
    for future in mine:
        try:
            result = future.result()
        except Exception as exc:
            failure = failure or exc
            continue
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    if failure is not None:
        raise failure
    return counts


def _start(ctx: WorkerContext, message_id: int) -> Future[outbox.SendResult]:
    """Send the row on the pool. The caller holds `ctx.lock`."""
    assert ctx.pool is not None
    future = ctx.pool.submit(_send_on_thread, ctx, message_id)
    ctx.in_flight[message_id] = future
    future.add_done_callback(lambda _: _landed(ctx, message_id))
    return future


def _run_here(ctx: WorkerContext, message_id: int) -> Future[outbox.SendResult]:
    """Send the row in this thread; return the outcome as a finished future."""
    future: Future[outbox.SendResult] = Future()
    try:
        future.set_result(_send(ctx, message_id, ctx.senders))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _landed(ctx: WorkerContext, message_id: int) -> None:
    with ctx.lock:
        ctx.in_flight.pop(message_id, None)


def _take_on_due_rows(ctx: WorkerContext) -> None:
    """Start rows that are due now (their jobs queued behind) while threads are free."""
    now = ctx.runtime.clock.now()
    with ctx.lock:
        room = IN_FLIGHT - len(ctx.in_flight)
        busy = list(ctx.in_flight)
        paced = ctx.paced_until is not None and now < ctx.paced_until
    if room < SEND_THREADS or paced:
        return
    due = outbox.due_now(ctx.runtime.database, now, room, exclude=busy)
    with ctx.lock:
        for message_id in due:
            if message_id not in ctx.sent and message_id not in ctx.in_flight:
                _start(ctx, message_id)


def _send_on_thread(ctx: WorkerContext, message_id: int) -> outbox.SendResult:
    assert ctx.thread_senders is not None
    try:
        return _send(ctx, message_id, ctx.thread_senders())
    except Exception:
        log.exception("outbox %s: send failed unexpectedly; the reconciler retries", message_id)
        raise


def _send(ctx: WorkerContext, message_id: int, senders: dict[Channel, Sender]) -> outbox.SendResult:
    """Send one row and act on the outcome: remember it, or schedule its next attempt."""
    result = outbox.send_item(
        ctx.runtime.database, senders, message_id, ctx.runtime.clock, ctx.limiter
    )
    if result.outcome == "sent":
        ctx.sent.add(message_id)
    if result.outcome in {"retry", "paced"} and result.retry_at is not None:
        ctx.dispatcher.dispatch_later(message_id, result.retry_at)
        if result.outcome == "paced":
            with ctx.lock:
                ctx.paced_until = max(ctx.paced_until or result.retry_at, result.retry_at)
    if result.fallback_id is not None:
        ctx.dispatcher.dispatch([result.fallback_id])
    return result


def reconcile() -> int:
    """Re-dispatch outbox rows left behind (lost jobs, dead workers); return how many."""
    ctx = context()
    now = ctx.runtime.clock.now()
    notices.expire_transactions(ctx.runtime.database, ctx.dispatcher.dispatch, now)
    due = outbox.due_items(ctx.runtime.database, now)
    for start in range(0, len(due), BATCH):
        ctx.dispatcher.dispatch(due[start : start + BATCH])
    if due:
        log.info("reconciler: re-dispatched %d outbox rows", len(due))
    return len(due)
