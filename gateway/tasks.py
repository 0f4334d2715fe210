"""RQ jobs (run by `recpo worker`): send outbox rows, re-dispatch rows whose job was lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flows.messages import Channel
from gateway import outbox
from gateway.dispatch import RQDispatcher
from gateway.ratelimit import RedisLimiter
from gateway.senders import Sender, build_senders
from recpo.config import Settings
from recpo.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 100


@dataclass
class WorkerContext:
    """What jobs need, built once per worker process."""

    runtime: Runtime
    senders: dict[Channel, Sender]
    dispatcher: RQDispatcher
    limiter: RedisLimiter


_context: WorkerContext | None = None


def configure(runtime: Runtime, senders: dict[Channel, Sender] | None = None) -> WorkerContext:
    """Set the services jobs in this process use (the worker calls it before working)."""
    global _context
    if runtime.redis is None:
        raise RuntimeError("RQ jobs need REDIS_URL")
    _context = WorkerContext(
        runtime,
        senders or build_senders(runtime.settings),
        RQDispatcher(runtime.redis),
        RedisLimiter(runtime.redis),
    )
    return _context


def context() -> WorkerContext:
    """Return this process's job context, building it from the environment if needed."""
    return _context or configure(Runtime.from_settings(Settings.from_env()))


def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send a batch of outbox rows; schedule retries; return counts by outcome."""
    ctx = context()
    counts: dict[str, int] = {}
    for message_id in message_ids:
        result = outbox.send_item(
            ctx.runtime.database, ctx.senders, message_id, ctx.runtime.clock, ctx.limiter
        )
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        if result.outcome in {"retry", "paced"} and result.retry_at is not None:
            ctx.dispatcher.dispatch_later(message_id, result.retry_at)
        if result.fallback_id is not None:
            ctx.dispatcher.dispatch([result.fallback_id])
    return counts


def reconcile() -> int:
    """Re-dispatch outbox rows left behind (lost jobs, dead workers); return how many."""
    ctx = context()
    due = outbox.due_items(ctx.runtime.database, ctx.runtime.clock.now())
    for start in range(0, len(due), BATCH):
        ctx.dispatcher.dispatch(due[start : start + BATCH])
    if due:
        log.info("reconciler: re-dispatched %d outbox rows", len(due))
    return len(due)
