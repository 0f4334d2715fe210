"""The Redis connection (RQ, rate limits, dedup cache); optional in the embedded default."""

from __future__ import annotations

from redis import Redis


def connect_redis(url: str | None) -> Redis | None:
    """Return a client for `url`, or None when Redis is not configured."""
    if not url:
        return None
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
