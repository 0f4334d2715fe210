"""RQ jobs (run by `recpo worker`): send outbox rows, re-dispatch rows whose job was lost."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from flows.messages import Channel
from gateway import outbox
from gateway.dispatch import RQDispatcher
from gateway.ratelimit import RedisLimiter
from gateway.senders import Sender, build_senders
from recpo.config import Settings
from recpo.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 100
# A job sends its own rows and, with spare hands, up to this many other rows that are due now
# (their own jobs, still queued, then find them sent and skip them without a database query).
DRAIN = 32
# Sends in flight at once in one worker process: the provider's answer, not our CPU, is the wait.
SEND_THREADS = 8
# Rows this process sent: later jobs for them skip at once.
REMEMBER = 100_000
_FINAL = frozenset({"sent"})  # a sent row never needs sending again


class _Finished:
    """The most recent `size` outbox rows this process finished (thread-safe, bounded)."""

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
    # Without a pool (given senders, or a database bound to one connection) rows go one by one.
    pool: ThreadPoolExecutor | None = None
    thread_senders: Callable[[], dict[Channel, Sender]] | None = None
    finished: _Finished = field(default_factory=_Finished)


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
    """Send a batch of outbox rows (and other rows due now); schedule retries; count outcomes.

    An error on one of the job's own rows fails the job after the others were tried (the
    reconciler sends that row again); an error on a row taken on besides is only logged.
    """
    ctx = context()
    counts: dict[str, int] = {}
    own = [i for i in dict.fromkeys(message_ids) if i not in ctx.finished]
    if len(own) < len(message_ids):
        counts["skipped"] = len(message_ids) - len(own)
    rows = list(own)
    if ctx.pool is not None and own:
        now = ctx.runtime.clock.now()
        others = outbox.due_now(ctx.runtime.database, now, DRAIN, exclude=own)
        rows += [i for i in others if i not in ctx.finished]
    if ctx.pool is not None and len(rows) > 1:
        futures = [ctx.pool.submit(_send, ctx, i, ctx.thread_senders) for i in rows]
    else:
        futures = [_run_here(_send, ctx, i, None) for i in rows]
    failure: BaseException | None = None
    for message_id, future in zip(rows, futures, strict=True):
        try:
            result = future.result()
        except Exception as exc:
            log.exception("outbox %s: send failed unexpectedly; the reconciler retries", message_id)
            if message_id in own and failure is None:
                failure = exc
            continue
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        if result.outcome in _FINAL:
            ctx.finished.add(message_id)
        if result.outcome in {"retry", "paced"} and result.retry_at is not None:
            ctx.dispatcher.dispatch_later(message_id, result.retry_at)
        if result.fallback_id is not None:
            ctx.dispatcher.dispatch([result.fallback_id])
    if failure is not None:
        raise failure
    return counts


def _send(
    ctx: WorkerContext,
    message_id: int,
    thread_senders: Callable[[], dict[Channel, Sender]] | None,
) -> outbox.SendResult:
    senders = thread_senders() if thread_senders is not None else ctx.senders
    return outbox.send_item(
        ctx.runtime.database, senders, message_id, ctx.runtime.clock, ctx.limiter
    )


def _run_here(function: Callable[..., outbox.SendResult], *args: object) -> Future:
    """Run `function` now, in this thread, as a finished future."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


def reconcile() -> int:
    """Re-dispatch outbox rows left behind (lost jobs, dead workers); return how many."""
    ctx = context()
    due = outbox.due_items(ctx.runtime.database, ctx.runtime.clock.now())
    for start in range(0, len(due), BATCH):
        ctx.dispatcher.dispatch(due[start : start + BATCH])
    if due:
        log.info("reconciler: re-dispatched %d outbox rows", len(due))
    return len(due)
