"""The registry's side of witnessing: submit each new checkpoint to the configured witnesses.

`LEDGER_WITNESSES` lists the witnesses as `;`-separated `<url> <verifier key>` pairs, where the
URL is the witness's submission prefix (`POST <url>/add-checkpoint`, c2sp.org/tlog-witness) and
the key is its Ed25519 cosignature key (type 0x04, `<name>+<id>+<base64>`).

`submit` sends the newest signed checkpoint to every witness with `old <size it last cosigned>`
and the consistency proof from that size. A 409 carrying a different size (the witness knows
another size than we recorded, e.g. on first contact) is retried once from that size. Each
cosignature is verified with the witness's configured key before it is stored in
`ledger_cosignatures`; every attempt updates the witness's row in `ledger_witness_status` (last
cosigned size, last status and error). A refusal — 4xx, a 409 that does not resolve, an invalid
cosignature — sets the row's `alarm` and is kept in `ledger_witness_refusals`: a witness that
refuses a consistency proof (422) or reports a different root for the same size (409) has caught
the log rewriting or forking its history. An unreachable witness (network error, 5xx) is only
recorded as the last error.

`cosigned_note` renders a checkpoint with every stored cosignature appended, for
`GET /ledger/checkpoint` and proof bundles.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ledger import log as ledger_log
from ledger.cosignature import CosignatureVerifier, verify_cosignatures
from ledger.note import MalformedNoteError
from ledger.witness import SIZE_CONTENT_TYPE, format_request
from recpo.clock import Clock
from recpo.db import Base, Database

DEFAULT_TIMEOUT = 10.0
MAX_REASON = 500
logger = logging.getLogger(__name__)


# --- tables -----------------------------------------------------------------------------------


class LedgerCosignature(Base):
    """A witness's verified cosignature of the checkpoint of one size."""

    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    witness_name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    key_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    line: Mapped[str] = mapped_column(sa.Text)  # "— <name> <base64>\n", as the witness sent it
    cosigned_at: Mapped[dt.datetime]  # the cosignature's own timestamp
    received_at: Mapped[dt.datetime]


class WitnessStatus(Base):
    """Where each witness stands: the last size it cosigned and how the last attempt went."""

    __tablename__ = "ledger_witness_status"

    witness_name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    key_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    url: Mapped[str] = mapped_column(sa.Text)
    cosigned_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    cosigned_at: Mapped[dt.datetime | None]
    last_attempt_at: Mapped[dt.datetime | None]
    last_status: Mapped[int | None]  # HTTP status of the last answer (None: no answer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)  # None when the last attempt worked
    alarm: Mapped[bool] = mapped_column(default=False)  # the last answer was a refusal
    alarm_since: Mapped[dt.datetime | None]


class WitnessRefusal(Base):
    """One refusal by a witness, kept after later attempts (the alarm's history)."""

    __tablename__ = "ledger_witness_refusals"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    witness_name: Mapped[str] = mapped_column(sa.String(200))
    key_id: Mapped[int] = mapped_column(sa.BigInteger)
    size: Mapped[int] = mapped_column(sa.BigInteger)  # the checkpoint submitted
    old_size: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[int | None]
    reason: Mapped[str] = mapped_column(sa.Text)
    refused_at: Mapped[dt.datetime]


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessEndpoint:
    """One configured witness: its submission prefix and its cosignature verifier key."""

    url: str
    verifier: CosignatureVerifier

    @property
    def name(self) -> str:
        """Return the witness's key name."""
        return self.verifier.name

    @property
    def key_id(self) -> int:
        """Return the witness's cosignature key ID."""
        return self.verifier.key_id


def parse_witnesses(text: str | None) -> list[WitnessEndpoint]:
    """Parse `LEDGER_WITNESSES`: `;`-separated `<url> <verifier key>` pairs (empty: none)."""
    witnesses: list[WitnessEndpoint] = []
    for number, item in enumerate((text or "").split(";"), start=1):
        item = item.strip()
        if not item:
            continue
        parts = item.split()
        if len(parts) != 2:
            raise ValueError(f"LEDGER_WITNESSES item {number}: expected '<url> <verifier key>'")
        url, key = parts
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"LEDGER_WITNESSES item {number}: {url!r} is not an http(s) URL")
        try:
            verifier = CosignatureVerifier.from_text(key)
        except ValueError as exc:
            raise ValueError(f"LEDGER_WITNESSES item {number}: {exc}") from None
        if any((w.name, w.key_id) == (verifier.name, verifier.key_id) for w in witnesses):
            raise ValueError(f"LEDGER_WITNESSES item {number}: witness {verifier.name} twice")
        witnesses.append(WitnessEndpoint(url.rstrip("/"), verifier))
    return witnesses


# --- submitting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one witness did with one checkpoint."""

    witness: str
    size: int
    result: str  # "cosigned", "already cosigned", "refused", "unreachable"
    status: int | None = None
    detail: str = ""


class _Refused(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Unreachable(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _note_text(note: str) -> str:
    return note[: note.rfind("\n\n") + 1]


def _insert_ignoring_duplicates(session: Session, table: sa.Table, values: dict[str, Any]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing())


def _status_row(session: Session, witness: WitnessEndpoint) -> WitnessStatus:
    _insert_ignoring_duplicates(
        session,
        WitnessStatus.__table__,
        {
            "witness_name": witness.name,
            "key_id": witness.key_id,
            "url": witness.url,
            "alarm": False,
        },
    )
    return session.scalars(
        sa.select(WitnessStatus)
        .where(WitnessStatus.witness_name == witness.name, WitnessStatus.key_id == witness.key_id)
        .with_for_update()
    ).one()


def _post(
    http: requests.Session, witness: WitnessEndpoint, body: bytes, timeout: float
) -> requests.Response:
    try:
        return http.post(
            f"{witness.url}/add-checkpoint",
            data=body,
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise _Unreachable(None, f"{type(exc).__name__}: {exc}"[:MAX_REASON]) from None


def _reason(response: requests.Response) -> str:
    text = response.text.strip()[:MAX_REASON]
    return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"


def _reported_size(response: requests.Response) -> int | None:
    if response.headers.get("Content-Type", "").split(";")[0].strip() != SIZE_CONTENT_TYPE:
        return None
    text = response.text
    if not text.endswith("\n") or not text[:-1].isascii() or not text[:-1].isdigit():
        return None
    return int(text[:-1])


def _exchange(
    database: Database,
    head: ledger_log.TreeHead,
    witness: WitnessEndpoint,
    old: int,
    http: requests.Session,
    timeout: float,
) -> tuple[int, list]:
    """Submit `head` from `old` (once more on a 409 naming another size); return cosignatures."""
    for attempt in range(2):
        if old > head.size:
            raise _Refused(
                409,
                f"the witness has cosigned size {old}, beyond the log's newest checkpoint "
                f"{head.size}: the log was rolled back or forked",
            )
        with database.transaction() as session:
            proof = ledger_log.consistency_proof(session, old, head.size)
        response = _post(http, witness, format_request(old, proof, head.note), timeout)
        if response.status_code == 200:
            try:
                found = verify_cosignatures(_note_text(head.note), response.text, witness.verifier)
            except MalformedNoteError as exc:
                raise _Refused(200, f"invalid cosignature: {exc}") from None
            if not found:
                raise _Refused(200, "the answer holds no cosignature from the configured key")
            return old, found
        if response.status_code == 409:
            reported = _reported_size(response)
            if reported is None:
                raise _Refused(409, _reason(response))
            if reported != old and attempt == 0:
                old = reported
                continue
            if reported == old == head.size:
                raise _Refused(409, f"the witness holds another root for size {old}: a fork")
            raise _Refused(409, f"the witness has cosigned size {reported}, not {old}")
        if response.status_code >= 500:
            raise _Unreachable(response.status_code, _reason(response))
        raise _Refused(response.status_code, _reason(response))
    raise AssertionError("unreachable")  # pragma: no cover


def submit_one(
    database: Database,
    clock: Clock,
    witness: WitnessEndpoint,
    timeout: float = DEFAULT_TIMEOUT,
    http: requests.Session | None = None,
) -> Outcome:
    """Submit the newest checkpoint to one witness and record what it answered."""
    with database.transaction() as session:
        head = ledger_log.latest_checkpoint(session)
        status = _status_row(session, witness)
        old = status.cosigned_size or 0
        status.url = witness.url
        have = session.get(LedgerCosignature, (head.size, witness.name, witness.key_id))
    if have is not None and old == head.size:
        return Outcome(witness.name, head.size, "already cosigned")
    own_http = http is None
    http = requests.Session() if http is None else http
    try:
        old, found = _exchange(database, head, witness, old, http, timeout)
    except _Refused as exc:
        _record_refusal(database, clock, witness, head.size, old, exc.status, exc.reason)
        logger.warning("witness %s refused checkpoint %d: %s", witness.name, head.size, exc)
        return Outcome(witness.name, head.size, "refused", exc.status, exc.reason)
    except _Unreachable as exc:
        _record_failure(database, clock, witness, exc.status, exc.reason)
        return Outcome(witness.name, head.size, "unreachable", exc.status, exc.reason)
    finally:
        if own_http:
            http.close()
    _record_cosignatures(database, clock, witness, head.size, found)
    return Outcome(witness.name, head.size, "cosigned", 200)


def submit(
    database: Database,
    log: ledger_log.Log,
    witnesses: Sequence[WitnessEndpoint],
    timeout: float = DEFAULT_TIMEOUT,
    http: requests.Session | None = None,
) -> list[Outcome]:
    """Submit the newest checkpoint of `log` to every witness, one after the other.

    A log with no checkpoint yet has nothing to submit.
    """
    with database.transaction() as session:
        try:
            ledger_log.latest_checkpoint(session)
        except ledger_log.NotFound:
            return []
    return [submit_one(database, log.clock, w, timeout, http) for w in witnesses]


def submit_configured(
    database: Database, log: ledger_log.Log, settings: Any, timeout: float = DEFAULT_TIMEOUT
) -> list[Outcome]:
    """Submit to the witnesses of `settings.ledger_witnesses` (none configured: nothing)."""
    witnesses = parse_witnesses(settings.ledger_witnesses)
    if not witnesses:
        return []
    return submit(database, log, witnesses, timeout)


def _cosigned_at(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _record_cosignatures(
    database: Database, clock: Clock, witness: WitnessEndpoint, size: int, found: list
) -> None:
    now = clock.now()
    try:
        cosigned = [(c, _cosigned_at(c.timestamp)) for c in found]
    except (OverflowError, OSError, ValueError):
        _record_refusal(database, clock, witness, size, size, 200, "cosignature time out of range")
        return
    with database.transaction() as session:
        for cosignature, when in cosigned:
            _insert_ignoring_duplicates(
                session,
                LedgerCosignature.__table__,
                {
                    "size": size,
                    "witness_name": witness.name,
                    "key_id": witness.key_id,
                    "line": cosignature.line,
                    "cosigned_at": when,
                    "received_at": now,
                },
            )
        status = _status_row(session, witness)
        status.cosigned_size = max(size, status.cosigned_size or 0)
        status.cosigned_at = now
        status.last_attempt_at = now
        status.last_status = 200
        status.last_error = None
        status.alarm = False
        status.alarm_since = None


def _record_refusal(
    database: Database,
    clock: Clock,
    witness: WitnessEndpoint,
    size: int,
    old: int,
    http_status: int | None,
    reason: str,
) -> None:
    now = clock.now()
    with database.transaction() as session:
        status = _status_row(session, witness)
        status.last_attempt_at = now
        status.last_status = http_status
        status.last_error = reason
        if not status.alarm:
            status.alarm = True
            status.alarm_since = now
        session.add(
            WitnessRefusal(
                witness_name=witness.name,
                key_id=witness.key_id,
                size=size,
                old_size=old,
                status=http_status,
                reason=reason,
                refused_at=now,
            )
        )


def _record_failure(
    database: Database, clock: Clock, witness: WitnessEndpoint, http_status: int | None, reason: str
) -> None:
    now = clock.now()
    with database.transaction() as session:
        status = _status_row(session, witness)
        status.last_attempt_at = now
        status.last_status = http_status
        status.last_error = reason


# --- reading ----------------------------------------------------------------------------------


def cosignature_lines(session: Session, size: int) -> list[str]:
    """Return the stored cosignature lines for the checkpoint of `size`, by witness name."""
    return list(
        session.scalars(
            sa.select(LedgerCosignature.line)
            .where(LedgerCosignature.size == size)
            .order_by(LedgerCosignature.witness_name, LedgerCosignature.key_id)
        )
    )


def cosigned_note(session: Session, head: ledger_log.TreeHead | None = None) -> str:
    """Return the checkpoint note (default: the newest) with every stored cosignature appended."""
    if head is None:
        head = ledger_log.latest_checkpoint(session)
    return head.note + "".join(cosignature_lines(session, head.size))


def witness_statuses(session: Session) -> list[WitnessStatus]:
    """Return every witness's status row (for the console), by name."""
    return list(
        session.scalars(
            sa.select(WitnessStatus).order_by(WitnessStatus.witness_name, WitnessStatus.key_id)
        )
    )


def refusals(session: Session, limit: int = 100) -> list[WitnessRefusal]:
    """Return the latest refusals, newest first."""
    return list(
        session.scalars(sa.select(WitnessRefusal).order_by(WitnessRefusal.id.desc()).limit(limit))
    )


# --- in the background ------------------------------------------------------------------------


class BackgroundSubmitter:
    """Submits in a daemon thread of this process; `kick()` after each sequencing returns at once.

    Kicks that arrive while a submission runs are folded into one more run, so a burst of batches
    costs at most two submissions per witness. A process that kicked does not end before the
    submission it asked for (short-lived ones, as `recpo simulate`, would lose it with the
    thread): at exit it waits for it, at most twice the timeout per witness.
    """

    def __init__(
        self,
        database: Database,
        log: ledger_log.Log,
        witnesses: Sequence[WitnessEndpoint],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.database = database
        self.log = log
        self.witnesses = list(witnesses)
        self.timeout = timeout
        self._wanted = False
        self._running = False
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._waits_at_exit = False

    def kick(self) -> None:
        """Ask for a submission of the newest checkpoint soon."""
        if not self.witnesses:
            return
        with self._lock:
            self._wanted = True
            if self._running:
                return
            self._running = True
            self._idle.clear()
            if not self._waits_at_exit:
                atexit.register(self.wait, 2 * self.timeout * len(self.witnesses))
                self._waits_at_exit = True
        threading.Thread(target=self._run, daemon=True, name="witness-submitter").start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no submission runs or is wanted (at most `timeout` s); True if none is."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._wanted:
                    self._running = False
                    self._idle.set()
                    return
                self._wanted = False
            try:
                submit(self.database, self.log, self.witnesses, self.timeout)
            except Exception:
                logger.exception("submitting the checkpoint to the witnesses failed")
