"""Rate limits: inbound messages per phone, outbound segments per channel.

Both use GCRA (the generic cell rate algorithm): one timestamp per key, the "theoretical arrival
time", moved forward by the cost of each request. It allows short bursts, never drifts, and
answers "wait this long" instead of only yes/no — which is what pacing outbound sends needs (queue
and pace, never drop). With Redis the state is shared by every process (a Lua script keeps each
check atomic); without Redis, in the embedded default, it lives in the process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from redis import Redis

_GCRA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local increment = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local new_tat = tat + increment
local allow_at = new_tat - tolerance
if allow_at > now then
  return tostring(allow_at - now)
end
redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


@dataclass(frozen=True)
class Rate:
    """`count` units per `period` seconds, allowing bursts of `burst` units."""

    count: float
    period: float
    burst: float

    @property
    def interval(self) -> float:
        """Seconds one unit costs."""
        return self.period / self.count


def outbound_rate(environ: Mapping[str, str] = os.environ) -> Rate:
    """Return the outbound pace per channel: OUTBOUND_SEGMENTS_PER_SECOND (default 10).

    Bursts may use up to two seconds' worth of segments (20 at the default).
    """
    raw = environ.get("OUTBOUND_SEGMENTS_PER_SECOND", "").strip() or "10"
    try:
        per_second = float(raw)
    except ValueError:
        raise ValueError(f"OUTBOUND_SEGMENTS_PER_SECOND must be a number, not {raw!r}") from None
    if not 0 < per_second < float("inf"):
        raise ValueError(f"OUTBOUND_SEGMENTS_PER_SECOND must be above 0, not {raw!r}")
    return Rate(count=per_second, period=1, burst=2 * per_second)


# Defaults: a person types far slower than 20 messages a minute; a provider long code is paced
# at 10 SMS segments a second (Twilio's per-number throughput is of that order; raise it with
# OUTBOUND_SEGMENTS_PER_SECOND for a short code or a number with more throughput).
INBOUND_PER_PHONE = Rate(count=20, period=60, burst=10)
OUTBOUND_PER_CHANNEL = outbound_rate()


class Limiter(Protocol):
    """Answers how long to wait before `cost` units may pass for `key` (0: go now)."""

    def wait(self, key: str, rate: Rate, cost: float = 1) -> float: ...


class RedisLimiter:
    """GCRA state in Redis, shared by every process."""

    def __init__(self, redis: Redis, prefix: str = "recpo:rl:") -> None:
        self.redis = redis
        self.prefix = prefix
        self.script = redis.register_script(_GCRA)

    def wait(self, key: str, rate: Rate, cost: float = 1) -> float:
        """Spend `cost` units if allowed now (return 0); else return seconds to wait."""
        now = time.time()
        tolerance = rate.interval * rate.burst
        answer = self.script(
            keys=[self.prefix + key], args=[repr(now), repr(rate.interval * cost), repr(tolerance)]
        )
        return float(answer)


class MemoryLimiter:
    """GCRA state in this process (the embedded default, without Redis)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.tat: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, key: str, rate: Rate, cost: float = 1) -> float:
        """Spend `cost` units if allowed now (return 0); else return seconds to wait."""
        with self.lock:
            now = self.now()
            tat = max(self.tat.get(key, now), now)
            new_tat = tat + rate.interval * cost
            allow_at = new_tat - rate.interval * rate.burst
            if allow_at > now:
                return allow_at - now
            self.tat[key] = new_tat
            return 0.0


def make_limiter(redis: Redis | None) -> Limiter:
    """Return the limiter for this deployment."""
    return RedisLimiter(redis) if redis is not None else MemoryLimiter()
