"""Benchmark the inbound and outbound message paths; print one JSON object per measurement.

Run as `.venv/bin/python bench/webhook.py [--quick]` with DATABASE_URL naming a PostgreSQL server
and REDIS_URL a scratch Redis database (`make bench` sets both; the Redis database named there is
flushed). Every figure is printed next to a baseline measured in the same run on the same machine:

1. Inbound: the real service (`recpo serve --workers W`, gunicorn on 127.0.0.1) answering correctly
   signed Twilio SMS webhooks (signature, dedup, conversation step, outbox, commit, RQ enqueue),
   next to a bare Flask app under the same gunicorn configuration (bench/bare_app.py) that parses
   the same form and returns the same empty TwiML: requests/s and p50/p99 latency at 32 concurrent
   connections (HTTP/1.1 keep-alive, which the threaded workers honour: `keep_alive_reuses` counts
   the requests that reused a connection), the two servers alternating in slices
   so that other load on the machine weighs on both alike. Every request has its own MessageSid;
   senders rotate among fresh blocks of 1,000 phones (under the inbound rate limit per phone).
   `--workers` (default 2, as `recpo serve`; more did not help on 2 cores) and `--threads`
   (default as `recpo serve`) apply to both.
2. USSD: session-start and menu-answer callbacks at 32 connections: p50/p99.
3. Outbound: N queued replies in a fresh outbox, sent by one `recpo worker --burst` process to a
   local fake Twilio REST API (with OUTBOUND_SEGMENTS_PER_SECOND raised so that pacing does not
   cap it): sends/s, next to RQ's own no-op job rate (SimpleWorker, and the forking Worker) on the
   same Redis. Then the default pace (10 segments/s, bursts of 20) with a long-running worker:
   every row sent exactly once, and the times the fake received them never beyond the pace.

The benchmark makes its own databases (CREATE DATABASE + migrations) and drops them at the end, even
on error, and stops every process it started; it empties the REDIS_URL database (only that one)
before and after. Progress goes to stderr, results to stdout; the last
line is a summary. Targets: inbound >= 40% of the bare endpoint's requests/s with p99 < 150 ms,
USSD p99 < 150 ms, >= 200 sends/s per worker process, the pace respected, nothing dropped. The
sends/s target is also judged scaled to this host (200 x its RQ no-op rate / the 235 jobs/s of the
issue's reference machine; see bench.support.Report).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/webhook.py` puts bench/ first on sys.path, where bench/ledger.py would shadow the
# `ledger` package; the project root goes there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import http.client  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench.support import (  # noqa: E402
    Report,
    fresh_database,
    libpq,
    ms,
    percentile,
    postgres_server,
    scaled,
)
from flows.messages import Channel, Inbound  # noqa: E402
from gateway import service  # noqa: E402
from gateway import text as wire  # noqa: E402
from gateway.channels.twilio import EMPTY_TWIML  # noqa: E402
from gateway.dispatch import QUEUE_NAME  # noqa: E402
from gateway.inbound import SLOW_DOWN, text_cost  # noqa: E402
from gateway.ratelimit import outbound_rate  # noqa: E402
from recpo.cli import SERVE_THREADS  # noqa: E402
from recpo.i18n import DEFAULT_LOCALE, translate  # noqa: E402
from tests.fakes.twilio_api import FakeTwilioAPI, RecordedRequest  # noqa: E402

BIN = Path(sys.executable).parent
CONNECTIONS = 32
TARGET_RATIO = 0.40
TARGET_P99_MS = 150.0
TARGET_SENDS_PER_S = 200.0
# RQ's in-process worker on the reference 2-core machine, for the host-scaled target.
REFERENCE_RQ_NOOP_PER_S = 235.0
PHONE_BLOCK = 1000
NOOP_QUEUE = "bench-noop"
# Far above anything one process can send: measures the sender, not the pace.
RAISED_RATE = "1000000"
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
SMS_FROM = "+51980000001"
USSD_CODE = "*500#"
SMS_BODIES = ("AYUDA", "Hola", "COMPRA", "venta por favor", "Buenos días, ¿qué hago?")

REPORT = Report("webhook")
RESULTS = REPORT.results
note = REPORT.note
emit = REPORT.emit


# --- services -------------------------------------------------------------------------------


def redis_url() -> str:
    raw = os.environ.get("REDIS_URL")
    if not raw:
        sys.exit("bench/webhook.py: REDIS_URL is not set (run it through `make bench`)")
    return raw


def scratch_redis(url: str) -> Redis:
    """Connect to the scratch Redis database and empty it (that database only)."""
    client = Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process in its own session, its output in a file; stopped by its process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (gunicorn and RQ shut down warm), SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                note(f"{self.name} did not stop in {timeout} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Children of a group leader that exited (a scheduler, a gunicorn worker) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_http(port: int, process: Process, timeout: float = 60.0) -> None:
    """Wait until something answers HTTP on `port` (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer on port {port}:\n{process.tail()}")


class RecordingFake(FakeTwilioAPI):
    """The test suite's fake Twilio, also noting when each request arrived."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__(account_sid, auth_token)
        self.arrivals: list[tuple[float, RecordedRequest]] = []
        self._arrival_lock = threading.Lock()

    def _record(self, request: RecordedRequest) -> Any:
        arrived = time.time()
        with self._arrival_lock:
            self.arrivals.append((arrived, request))
        return super()._record(request)

    def sent_since(self, start: int) -> list[tuple[float, RecordedRequest]]:
        with self._arrival_lock:
            return sorted(self.arrivals[start:], key=lambda pair: pair[0])

    def created_sids(self) -> set[str]:
        with self._lock:
            return {resource["sid"] for resource in self.created}


# --- load generation ------------------------------------------------------------------------


@dataclass
class Load:
    """What one closed-loop run measured."""

    elapsed: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    bad: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    reused: int = 0

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def all_latencies(self) -> list[float]:
        return [x for v in self.latencies.values() for x in v]


RequestFactory = Callable[[], tuple[bytes, str]]  # (raw HTTP request, kind)


async def _client(
    port: int,
    make_request: RequestFactory,
    check: Callable[[str, int, bytes], bool],
    deadline: float,
    load: Load,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        raw, kind = make_request()
        began = time.perf_counter()
        for attempt in range(2):
            fresh = writer is None
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    load.reconnects += 1
                else:
                    load.reused += 1
                assert reader is not None
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                if writer is not None:
                    writer.close()
                reader = writer = None
                if fresh or attempt:
                    raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip().lower()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        latency = time.perf_counter() - began
        if check(kind, status, body):
            load.latencies.setdefault(kind, []).append(latency)
        else:
            load.bad[f"{kind}:{status}:{body[:60]!r}"] += 1
        if headers.get("connection") == "close" or lines[0].startswith("HTTP/1.0"):
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(
    port: int,
    factories: list[RequestFactory],
    check: Callable[[str, int, bytes], bool],
    duration: float,
) -> Load:
    """Run one client per factory, each in a closed loop, for `duration` seconds."""

    async def main() -> Load:
        load = Load(elapsed=0.0)
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(_client(port, f, check, deadline, load) for f in factories))
        load.elapsed = time.perf_counter() - start
        return load

    return asyncio.run(main())


def merge(loads: list[Load]) -> Load:
    total = Load(elapsed=sum(x.elapsed for x in loads))
    for load in loads:
        for kind, values in load.latencies.items():
            total.latencies.setdefault(kind, []).extend(values)
        total.bad.update(load.bad)
        total.reconnects += load.reconnects
        total.reused += load.reused
    return total


class Phones:
    """Blocks of distinct, valid Peruvian mobile numbers."""

    def __init__(self) -> None:
        self.next = 10_000_000

    def block(self, size: int = PHONE_BLOCK) -> list[str]:
        first, self.next = self.next, self.next + size
        return [f"+519{n:08d}" for n in range(first, first + size)]


def _http_request(port: int, path: str, form: str, extra: str = "") -> bytes:
    body = form.encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n{extra}"
        "User-Agent: TwilioProxy/1.1\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


class SmsWebhooks:
    """Correctly signed Twilio SMS webhooks, each with its own MessageSid."""

    sids = itertools.count()
    run_tag = secrets.token_hex(4)

    def __init__(self, port: int, phones: list[str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/twilio/sms"
        self.validator = RequestValidator(AUTH_TOKEN)
        self.phones = phones

    def __call__(self) -> tuple[bytes, str]:
        n = next(self.sids)
        sid = f"SM{self.run_tag}{n:024x}"
        params = {
            "ToCountry": "PE",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": SMS_BODIES[n % len(SMS_BODIES)],
            "FromCountry": "PE",
            "To": SMS_FROM,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": self.phones[(n * 7919) % len(self.phones)],
            "ApiVersion": "2010-04-01",
        }
        signature = self.validator.compute_signature(self.url, params)
        raw = _http_request(
            self.port, "/twilio/sms", urlencode(params), f"X-Twilio-Signature: {signature}\r\n"
        )
        return raw, "sms"


def sms_ok(kind: str, status: int, body: bytes) -> bool:
    return status == 200 and body.decode() == EMPTY_TWIML


class UssdSession:
    """One client's USSD traffic: a session start, then an answer to the menu, again and again."""

    sessions = itertools.count()
    run_tag = secrets.token_hex(4)

    def __init__(self, port: int, phones: list[str]) -> None:
        self.port = port
        self.phones = phones
        self.current: tuple[str, str] | None = None

    def __call__(self) -> tuple[bytes, str]:
        if self.current is None:
            n = next(self.sessions)
            self.current = (f"ATUid_{self.run_tag}_{n}", self.phones[(n * 7919) % len(self.phones)])
            session_id, phone = self.current
            kind, text = "start", ""
        else:
            session_id, phone = self.current
            self.current = None
            kind, text = "answer", "1"
        form = urlencode(
            {
                "sessionId": session_id,
                "serviceCode": USSD_CODE,
                "phoneNumber": phone,
                "networkCode": "71606",
                "text": text,
            }
        )
        return _http_request(self.port, "/ussd", form), kind


def ussd_ok(kind: str, status: int, body: bytes) -> bool:
    return status == 200 and body.startswith(b"CON " if kind == "start" else (b"CON ", b"END "))


# --- 1. and 2. inbound ----------------------------------------------------------------------


def service_env(url: str, redis: str, port: int, fake: FakeTwilioAPI, instance: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "META_", "OUTBOUND_", "GUNICORN_"))
    }
    env.update(
        DATABASE_URL=url,
        REDIS_URL=redis,
        PORT=str(port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        RECPO_INSTANCE_PATH=str(instance),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_SMS_FROM=SMS_FROM,
        TWILIO_API_URL=fake.url,
        USSD_SERVICE_CODE=USSD_CODE,
        PYTHONUNBUFFERED="1",
    )
    return env


def inbound_counts(url: str) -> dict[str, int]:
    """Count what the inbound runs left in the message log and the outbox."""
    slow_down = text_cost(Channel.SMS, translate(DEFAULT_LOCALE, SLOW_DOWN))[0]
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM messages WHERE direction = 'in' AND channel = 'sms'),"
            " (SELECT count(*) FROM messages i WHERE i.direction = 'in' AND i.channel = 'sms'"
            "   AND NOT EXISTS (SELECT 1 FROM messages r WHERE r.in_reply_to = i.id"
            "   AND r.body <> %s)),"
            " (SELECT count(*) FROM outbox),"
            " (SELECT count(*) FROM messages WHERE direction = 'in' AND channel = 'ussd')",
            (slow_down,),
        ).fetchone()
    names = ("sms_logged", "sms_unanswered_or_slowed", "outbox_rows", "ussd_logged")
    return dict(zip(names, row, strict=True))


def bench_inbound(
    server: sa.URL,
    redis: str,
    workers: int,
    threads: int,
    duration: float,
    slices: int,
    logdir: Path,
) -> None:
    phones = Phones()
    with RecordingFake(ACCOUNT_SID, AUTH_TOKEN) as fake, fresh_database(server, "inbound") as url:
        scratch_redis(redis).close()
        svc_port, bare_port = free_port(), free_port()
        instance = logdir / "instance"
        env = service_env(url, redis, svc_port, fake, instance)
        workers_arg = ["--workers", str(workers), "--threads", str(threads)]
        svc = Process(
            "recpo-serve",
            [str(BIN / "recpo"), "serve", "--port", str(svc_port), *workers_arg],
            env,
            logdir,
        )
        bare = Process(
            "bare-app",
            [
                sys.executable,
                str(ROOT / "bench" / "bare_app.py"),
                "--port",
                str(bare_port),
                *workers_arg,
            ],
            env,
            logdir,
        )
        try:
            wait_http(svc_port, svc)
            wait_http(bare_port, bare)
            ports = {"bare": bare_port, "full": svc_port}
            warm = min(2.0, duration / 3)
            sent = collections.Counter()
            for name, port in ports.items():
                note(f"inbound: warming up {name} for {warm} s")
                block = phones.block()
                load = run_load(
                    port, [SmsWebhooks(port, block) for _ in range(CONNECTIONS)], sms_ok, warm
                )
                sent[name] += load.count
                if load.bad:
                    raise RuntimeError(f"{name} warm-up answers: {dict(load.bad)}")
            runs: dict[str, list[Load]] = {name: [] for name in ports}
            note(
                f"inbound: bare and full alternating in {slices} slices, {duration} s each in "
                f"all, {CONNECTIONS} connections, gunicorn --workers {workers} --threads {threads}"
            )
            cpu0 = time.process_time()
            for _ in range(slices):
                for name, port in ports.items():
                    block = phones.block()
                    factories: list[RequestFactory] = [
                        SmsWebhooks(port, block) for _ in range(CONNECTIONS)
                    ]
                    load = run_load(port, factories, sms_ok, duration / slices)
                    runs[name].append(load)
                    sent[name] += load.count
            client_cpu = time.process_time() - cpu0
            bare_load, full_load = merge(runs["bare"]), merge(runs["full"])
            for name, load in (("bare", bare_load), ("full", full_load)):
                if load.bad:
                    raise RuntimeError(f"{name}: unexpected answers {dict(load.bad)}")
            counts = inbound_counts(url)
            if counts["sms_logged"] != sent["full"]:
                raise RuntimeError(
                    f"{sent['full']} webhooks answered 200 but {counts['sms_logged']} logged"
                )
            bare_rate = bare_load.count / bare_load.elapsed
            full_rate = full_load.count / full_load.elapsed
            lat, bare_lat = full_load.all_latencies(), bare_load.all_latencies()
            p99 = percentile(lat, 99)
            common = {
                "connections": CONNECTIONS,
                "gunicorn_workers": workers,
                "gunicorn_threads": threads,
                "keep_alive_reuses": full_load.reused,
                "connects": full_load.reconnects,
            }
            emit(
                "sms_webhook_requests_per_s",
                full_rate,
                "requests/s",
                baseline="bare_flask_requests_per_s",
                baseline_value=bare_rate,
                target=f"ratio >= {TARGET_RATIO}",
                passed=full_rate >= TARGET_RATIO * bare_rate,
                requests=full_load.count,
                baseline_requests=bare_load.count,
                p50_ms=ms(percentile(lat, 50)),
                p99_ms=ms(p99),
                baseline_p50_ms=ms(percentile(bare_lat, 50)),
                baseline_p99_ms=ms(percentile(bare_lat, 99)),
                seconds_each=round(full_load.elapsed, 2),
                slices=slices,
                load_generator_cpu_s=round(client_cpu, 2),
                **common,
            )
            emit(
                "sms_webhook_p99_ms",
                p99 * 1000,
                "ms",
                baseline="bare_flask_p99_ms",
                baseline_value=percentile(bare_lat, 99) * 1000,
                target=f"p99 < {TARGET_P99_MS} ms",
                passed=p99 * 1000 < TARGET_P99_MS,
                p50_ms=ms(percentile(lat, 50)),
                max_ms=ms(max(lat)),
                logged=counts["sms_logged"],
                replies_queued=counts["outbox_rows"],
                unanswered_or_rate_limited=counts["sms_unanswered_or_slowed"],
                **common,
            )

            note(f"ussd: warming up for {warm} s")
            block = phones.block()
            run_load(
                svc_port, [UssdSession(svc_port, block) for _ in range(CONNECTIONS)], ussd_ok, warm
            )
            note(f"ussd: session starts and menu answers for {duration} s")
            block = phones.block()
            ussd = run_load(
                svc_port,
                [UssdSession(svc_port, block) for _ in range(CONNECTIONS)],
                ussd_ok,
                duration,
            )
            if ussd.bad:
                raise RuntimeError(f"ussd: unexpected answers {dict(ussd.bad)}")
            starts, answers = ussd.latencies.get("start", []), ussd.latencies.get("answer", [])
            every = ussd.all_latencies()
            p99 = percentile(every, 99)
            emit(
                "ussd_reply_p99_ms",
                p99 * 1000,
                "ms",
                target=f"p99 < {TARGET_P99_MS} ms",
                passed=p99 * 1000 < TARGET_P99_MS,
                requests_per_s=round(ussd.count / ussd.elapsed, 1),
                p50_ms=ms(percentile(every, 50)),
                start_p50_ms=ms(percentile(starts, 50)),
                start_p99_ms=ms(percentile(starts, 99)),
                answer_p50_ms=ms(percentile(answers, 50)),
                answer_p99_ms=ms(percentile(answers, 99)),
                starts=len(starts),
                answers=len(answers),
                connections=CONNECTIONS,
                gunicorn_workers=workers,
                gunicorn_threads=threads,
                keep_alive_reuses=ussd.reused,
                connects=ussd.reconnects,
            )
        finally:
            for process in (svc, bare):
                process.stop()
            scratch_redis(redis).close()  # the jobs the webhooks queued


# --- 3. outbound ----------------------------------------------------------------------------


def outbox_states(url: str) -> dict[str, int]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
    return {state: count for state, count in rows}


def fill_outbox(url: str, redis: str, instance: Path, count: int, phones: Phones) -> int:
    """Queue replies as webhooks would (`Gateway.receive`: commit, then RQ enqueue).

    `count` phones each send AYUDA once; return how many replies that queued (one each).
    """
    from recpo.app import create_app

    app = create_app({"DATABASE_URL": url, "REDIS_URL": redis, "INSTANCE_PATH": str(instance)})
    gateway: service.Gateway = app.extensions[service.EXTENSION_KEY]
    logging.getLogger("gateway").setLevel(logging.WARNING)  # one line per message otherwise
    tag = secrets.token_hex(4)
    senders = phones.block(count)

    def one(n: int) -> int:
        inbound = Inbound(
            channel=Channel.SMS,
            phone=senders[n],
            text="AYUDA",
            provider_id=f"SMfill{tag}{n:020x}",
            received_at=gateway.clock.now(),
        )
        return len(gateway.receive(inbound).outbox)

    with ThreadPoolExecutor(max_workers=4) as pool:
        queued = sum(pool.map(one, range(count)))
    gateway.database.dispose()
    return queued


def wait_dequeued(redis: Redis, key: str, initial: int, process: Process) -> float:
    """Return the moment the worker took its first job from the queue."""
    while redis.llen(key) >= initial:
        if process.poll() is not None:
            raise RuntimeError(f"{process.name} exited without working:\n{process.tail()}")
        time.sleep(0.001)
    return time.perf_counter()


def bench_rq_noop(
    redis_url_: str, count: int, worker_class: str, logdir: Path
) -> tuple[float, float]:
    """RQ's own rate: `count` no-op jobs, one burst worker; return (jobs/s, wall incl. start)."""
    redis = Redis.from_url(redis_url_)
    queue = Queue(NOOP_QUEUE, connection=redis)
    with redis.pipeline() as pipe:
        for _ in range(count):
            queue.enqueue("bare_app.noop", result_ttl=0, failure_ttl=86400, pipeline=pipe)
        pipe.execute()
    key = queue.key
    if redis.llen(key) != count:
        raise RuntimeError(f"{redis.llen(key)} no-op jobs queued, not {count}")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bench"))
    url_arg = ["--url", redis_url_, NOOP_QUEUE]
    worker = Process(
        f"rq-{worker_class.rsplit('.', 1)[-1]}",
        [str(BIN / "rq"), "worker", "--burst", "--with-scheduler", "-w", worker_class, *url_arg],
        env,
        logdir,
    )
    try:
        first = wait_dequeued(redis, key, count, worker)
        code = worker.wait(timeout=count / 10 + 60)
        done = time.perf_counter()
    finally:
        worker.stop()
    if code != 0 or redis.llen(key):
        raise RuntimeError(f"no-op worker exited {code}:\n{worker.tail()}")
    redis.close()
    return count / (done - first), done - worker.started


def check_sent(url: str, fake: RecordingFake, since: int, expected: int) -> dict[str, Any]:
    """Compare the outbox with what the fake received: every row sent once, nothing extra."""
    arrivals = fake.sent_since(since)
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(
            "SELECT m.provider_id, m.phone FROM outbox o JOIN messages m ON m.id = o.message_id"
            " WHERE o.state = 'sent'"
        ).fetchall()
    sids = {sid for sid, _ in rows}
    created = fake.created_sids()
    to_counts = collections.Counter(req.field("To") for _, req in arrivals)
    return {
        "requests_received": len(arrivals),
        "duplicates": len(arrivals) - expected,
        "sent_rows_unknown_to_fake": len(sids - created),
        "recipients_match": sum(to_counts.values()) == expected,
    }


def pace_excess(arrivals: list[tuple[float, RecordedRequest]], per_second: float, burst: float):
    """Per From number: the most segments beyond `burst + per_second * window` in any window."""
    by_sender: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    for at, req in arrivals:
        by_sender[req.field("From")].append((at, wire.segments(req.field("Body"))))
    report = {}
    for sender, sends in by_sender.items():
        sends.sort()
        worst, max_1s = -math.inf, 0
        for i in range(len(sends)):
            total = 0
            for j in range(i, len(sends)):
                total += sends[j][1]
                span = sends[j][0] - sends[i][0]
                worst = max(worst, total - (burst + per_second * span))
                if span <= 1.0:
                    max_1s = max(max_1s, total)
        seconds = sends[-1][0] - sends[0][0]
        report[sender] = {
            "sends": len(sends),
            "segments": sum(s for _, s in sends),
            "max_excess_segments": round(worst, 2),
            "max_segments_in_1s": max_1s,
            "seconds": round(seconds, 2),
        }
    return report


def worker_env(url: str, redis: str, fake: FakeTwilioAPI, instance: Path, rate: str | None) -> dict:
    env = service_env(url, redis, 5000, fake, instance)
    if rate is not None:
        env["OUTBOUND_SEGMENTS_PER_SECOND"] = rate
    return env


def poll_sent(url: str, target: int, process: Process, timeout: float) -> float:
    """Poll the outbox until `target` rows are SENT; return that moment."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        while True:
            (sent,) = conn.execute("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()
            if sent >= target:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sent} of {target} rows sent in {timeout} s")
            if process.poll() is not None:
                (sent,) = conn.execute(
                    "SELECT count(*) FROM outbox WHERE state = 'sent'"
                ).fetchone()
                if sent >= target:
                    return time.perf_counter()
                raise RuntimeError(
                    f"{process.name} exited with {sent} of {target} sent:\n{process.tail()}"
                )
            time.sleep(0.02)


def bench_outbound(
    server: sa.URL, redis_url_: str, count: int, fork_count: int, pace_count: int, logdir: Path
) -> None:
    phones = Phones()
    instance = logdir / "instance-outbound"
    with RecordingFake(ACCOUNT_SID, AUTH_TOKEN) as fake, fresh_database(server, "outbound") as url:
        redis = scratch_redis(redis_url_)
        try:
            note(f"outbound: RQ's own rate, {count} no-op jobs, SimpleWorker")
            simple_rate, simple_wall = bench_rq_noop(
                redis_url_, count, "rq.worker.SimpleWorker", logdir
            )
            note(f"outbound: RQ's own rate, {fork_count} no-op jobs, forking Worker")
            fork_rate, _ = bench_rq_noop(redis_url_, fork_count, "rq.worker.Worker", logdir)

            note(f"outbound: queueing {count} replies")
            began = time.perf_counter()
            count = fill_outbox(url, redis_url_, instance, count, phones)
            queued = redis.llen(f"rq:queue:{QUEUE_NAME}")
            note(
                f"outbound: {count} replies queued in {time.perf_counter() - began:.1f} s, "
                f"{queued} jobs"
            )
            if outbox_states(url) != {"pending": count}:
                raise RuntimeError(f"outbox after filling: {outbox_states(url)}")

            note("outbound: one `recpo worker --burst` (pace raised)")
            worker = Process(
                "recpo-worker-burst",
                [str(BIN / "recpo"), "worker", "--burst"],
                worker_env(url, redis_url_, fake, instance, RAISED_RATE),
                logdir,
            )
            try:
                first = wait_dequeued(redis, f"rq:queue:{QUEUE_NAME}", queued, worker)
                done = poll_sent(url, count, worker, timeout=count / 5 + 60)
                code = worker.wait(timeout=60)
            finally:
                worker.stop()
            if code != 0:
                raise RuntimeError(f"worker exited {code}:\n{worker.tail()}")
            rate = count / (done - first)
            states = outbox_states(url)
            checked = check_sent(url, fake, 0, count)
            all_sent_once = (
                states == {"sent": count}
                and checked["duplicates"] == 0
                and checked["sent_rows_unknown_to_fake"] == 0
            )
            host_target = scaled(TARGET_SENDS_PER_S, REFERENCE_RQ_NOOP_PER_S, simple_rate)
            emit(
                "outbound_sends_per_s_one_worker",
                rate,
                "sends/s",
                baseline="rq_simpleworker_noop_jobs_per_s",
                baseline_value=simple_rate,
                target=f">= {TARGET_SENDS_PER_S:g} sends/s",
                passed=rate >= TARGET_SENDS_PER_S and all_sent_once,
                scaled_target=(
                    f">= {host_target:.0f} sends/s ({TARGET_SENDS_PER_S:g} x {simple_rate:.0f} / "
                    f"{REFERENCE_RQ_NOOP_PER_S:g} RQ no-op jobs/s), all sent once"
                ),
                scaled_pass=rate >= host_target and all_sent_once,
                messages=count,
                jobs=queued,
                wall_s_with_startup=round(done - worker.started, 2),
                rq_forking_worker_noop_jobs_per_s=round(fork_rate, 1),
                rq_simpleworker_wall_s_with_startup=round(simple_wall, 2),
                outbound_segments_per_second=RAISED_RATE,
                outbox=states,
                **checked,
            )

            default = outbound_rate({})
            note(
                f"outbound: {pace_count} replies at the default pace "
                f"({default.count:g} segments/s, bursts of {default.burst:g}), long-running worker"
            )
            since = len(fake.arrivals)
            pace_count = fill_outbox(url, redis_url_, instance, pace_count, phones)
            worker = Process(
                "recpo-worker-paced",
                [str(BIN / "recpo"), "worker"],
                worker_env(url, redis_url_, fake, instance, None),
                logdir,
            )
            try:
                first = time.perf_counter()
                done = poll_sent(
                    url, count + pace_count, worker, timeout=pace_count / default.count * 4 + 60
                )
            finally:
                worker.stop()
            arrivals = fake.sent_since(since)
            states = outbox_states(url)
            checked = check_sent(url, fake, 0, count + pace_count)
            per_sender = pace_excess(arrivals, default.count, default.burst)
            worst = max(v["max_excess_segments"] for v in per_sender.values())
            seconds = arrivals[-1][0] - arrivals[0][0]
            emit(
                "outbound_pace_max_excess_segments",
                worst,
                "segments",
                target=(
                    f"<= 1 segment beyond {default.burst:g} + {default.count:g}/s x window, "
                    "all sent once"
                ),
                passed=worst <= 1.0
                and states == {"sent": count + pace_count}
                and checked["duplicates"] == 0
                and checked["sent_rows_unknown_to_fake"] == 0,
                messages=pace_count,
                achieved_segments_per_s=round(
                    (sum(v["segments"] for v in per_sender.values()) - default.burst) / seconds, 2
                )
                if seconds > 0
                else None,
                seconds_to_send_all=round(done - first, 2),
                per_from_number=per_sender,
                outbox=states,
                **checked,
            )
        finally:
            redis.flushdb()
            redis.close()


# --- main -----------------------------------------------------------------------------------


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that clean up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer messages")
    parser.add_argument("--duration", type=float, help="seconds of load per server")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    parser.add_argument(
        "--threads", type=int, default=SERVE_THREADS, help="threads per gunicorn worker (both)"
    )
    parser.add_argument("--messages", type=int, help="outbound messages for the send rate")
    parser.add_argument("--paced", type=int, help="outbound messages for the pacing check")
    parser.add_argument("--only", choices=["inbound", "outbound"], action="append")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 10.0)
    messages = args.messages or (500 if args.quick else 3000)
    paced = args.paced or (60 if args.quick else 200)
    only = set(args.only or ["inbound", "outbound"])
    signal.signal(signal.SIGTERM, _terminate)
    server = postgres_server()
    redis = redis_url()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recpo-bench-webhook-") as tmp:
        logdir = Path(tmp)
        if "inbound" in only:
            bench_inbound(
                server,
                redis,
                args.workers,
                args.threads,
                duration,
                1 if args.quick else 5,
                logdir,
            )
        if "outbound" in only:
            bench_outbound(
                server, redis, messages, min(messages, 100 if args.quick else 200), paced, logdir
            )
    summary = REPORT.summary(args.quick, began)
    return 1 if args.strict and not summary["all_pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
