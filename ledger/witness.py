"""A C2SP tlog-witness: checks each checkpoint a log submits and cosigns it if consistent.

The witness keeps, per log origin, the size and root hash of the latest checkpoint it cosigned,
in its own small database (SQLite by default; SQLAlchemy Core on its own metadata, so it never
mixes with the registry's schema). `Witness.add_checkpoint` implements `POST /add-checkpoint`
(c2sp.org/tlog-witness) and answers with the status the spec prescribes:

- 400 a malformed request, or an old size above the checkpoint's size;
- 404 a checkpoint origin the witness is not configured for;
- 403 no signature verifies against the log's configured key(s);
- 409 (`text/x.tlog.size`, body "<size>\\n") the old size is not the size it last cosigned
  (zero if never), or the old size equals the checkpoint's size but the root differs;
- 422 the consistency proof from its recorded tree does not verify;
- 200 one cosignature line per witness key.

The check of the old size and the update of the record happen as one compare-and-swap on
(origin, size, root), so two concurrent requests cannot both advance (or roll back) the record.
A refused request whose log signature verified is kept as evidence (`witness_evidence`) and
logged as a warning: the log signed two histories that do not extend each other (a rewritten or
forked log). `WitnessStore.status` summarises both for the operator (`GET /` of the server).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import merkle
from ledger.cosignature import CosignatureSigner
from ledger.note import (
    Checkpoint,
    InvalidSignatureError,
    MalformedNoteError,
    UnverifiedNoteError,
    Verifier,
    open_checkpoint,
)
from recpo.db import make_engine

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 1 << 16
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)", re.ASCII)
logger = logging.getLogger(__name__)

metadata = sa.MetaData()

logs_table = sa.Table(
    "witness_logs",
    metadata,
    sa.Column("origin", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("checkpoint", sa.Text, nullable=False),  # the note the log signed, as evidence
    sa.Column("updated_at", sa.Text, nullable=False),  # ISO 8601 UTC
)

evidence_table = sa.Table(
    "witness_evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("received_at", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, body text and content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Recorded:
    """The witness's record for one log: the latest cosigned size and root."""

    size: int
    root: bytes


@dataclass(frozen=True)
class LogStatus:
    """One log as its witness sees it: the size last cosigned, and the refusals kept."""

    origin: str
    cosigned_size: int | None
    cosigned_at: str | None
    refusals: int
    last_refusal: dict | None  # a `witness_evidence` row

    def lines(self) -> list[str]:
        """The status as text lines, for operators."""
        if self.cosigned_size is None:
            lines = [f"log {self.origin}: nothing cosigned yet"]
        else:
            lines = [
                f"log {self.origin}: cosigned up to size {self.cosigned_size} ({self.cosigned_at})"
            ]
        if self.last_refusal is not None:
            last = self.last_refusal
            lines.append(
                f"ALARM log {self.origin}: {self.refusals} checkpoint(s) signed by the log "
                f"refused as another history; latest {last['received_at']}: {last['status']} "
                f"{last['reason']} (the signed requests are kept as evidence)"
            )
        return lines


class WitnessStore:
    """The witness's own database: one row per log, changed only by compare-and-swap."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> WitnessStore:
        """Open (creating if needed) the witness database at SQLAlchemy `url`."""
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(make_engine(url))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def get(self, origin: str) -> Recorded | None:
        """Return the record for `origin`, or None if the witness never cosigned for it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(logs_table.c.size, logs_table.c.root).where(logs_table.c.origin == origin)
            ).one_or_none()
        return None if row is None else Recorded(row.size, bytes(row.root))

    def advance(
        self, origin: str, expected: Recorded | None, new: Recorded, note: str, now: dt.datetime
    ) -> bool:
        """Replace record `expected` by `new` atomically; return False if it changed meanwhile."""
        values = {"size": new.size, "root": new.root, "checkpoint": note, "updated_at": _iso(now)}
        with self.engine.begin() as conn:
            if expected is None:
                exists = conn.execute(
                    sa.select(logs_table.c.origin).where(logs_table.c.origin == origin)
                ).first()
                if exists is not None:
                    return False
                try:
                    with conn.begin_nested():
                        conn.execute(logs_table.insert().values(origin=origin, **values))
                except sa.exc.IntegrityError:
                    return False
                return True
            changed = conn.execute(
                logs_table.update()
                .where(
                    logs_table.c.origin == origin,
                    logs_table.c.size == expected.size,
                    logs_table.c.root == expected.root,
                )
                .values(**values)
            )
            return changed.rowcount == 1

    def keep_evidence(
        self, origin: str, status: int, reason: str, request: str, now: dt.datetime
    ) -> None:
        """Keep a refused, log-signed request: it may prove the log misbehaved."""
        with self.engine.begin() as conn:
            conn.execute(
                evidence_table.insert().values(
                    origin=origin,
                    status=status,
                    reason=reason,
                    request=request,
                    received_at=_iso(now),
                )
            )

    def status(self, origin: str) -> LogStatus:
        """What the witness holds for `origin`: its cosigned size, and the refusals kept."""
        with self.engine.connect() as conn:
            record = conn.execute(
                sa.select(logs_table.c.size, logs_table.c.updated_at).where(
                    logs_table.c.origin == origin
                )
            ).one_or_none()
            count, latest = conn.execute(
                sa.select(sa.func.count(), sa.func.max(evidence_table.c.id)).where(
                    evidence_table.c.origin == origin
                )
            ).one()
            last = (
                conn.execute(sa.select(evidence_table).where(evidence_table.c.id == latest)).one()
                if latest is not None
                else None
            )
        return LogStatus(
            origin,
            record.size if record else None,
            record.updated_at if record else None,
            count,
            dict(last._mapping) if last is not None else None,
        )

    def evidence(self, origin: str | None = None) -> list[dict]:
        """Return the kept evidence, oldest first (all origins unless one is given)."""
        query = sa.select(evidence_table).order_by(evidence_table.c.id)
        if origin is not None:
            query = query.where(evidence_table.c.origin == origin)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BadRequest(Exception):
    """The request body does not follow the add-checkpoint syntax."""


@dataclass(frozen=True)
class Request:
    """A parsed add-checkpoint request."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str


def parse_request(body: bytes) -> Request:
    """Parse `old <size>`, the proof lines, a blank line and the checkpoint note."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest("request too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("request has no blank line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise BadRequest("first line must be 'old <size>' (decimal, no leading zeroes)")
    old_size = int(match.group(1))
    if old_size >= 1 << 63:
        raise BadRequest("old size out of range")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise BadRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in proof_lines:
        try:
            raw = base64.b64decode(line.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise BadRequest("consistency proof line is not base64") from None
        if len(raw) != merkle.HASH_SIZE:
            raise BadRequest("consistency proof line is not a 32-byte hash")
        proof.append(raw)
    return Request(old_size, tuple(proof), note)


def format_request(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """Return an add-checkpoint request body (the client side of `parse_request`)."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class Witness:
    """A witness: its cosigning key, the logs it follows (by origin) and its store."""

    def __init__(
        self,
        signer: CosignatureSigner,
        log_keys: Iterable[Verifier],
        store: WitnessStore,
        now: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        """Follow each log whose key is given; a log's origin is its key's name."""
        self.signer = signer
        self.store = store
        self.now = now
        self.logs: dict[str, list[Verifier]] = {}
        for key in log_keys:
            self.logs.setdefault(key.name, []).append(key)
        if not self.logs:
            raise ValueError("a witness needs at least one log key")

    def add_checkpoint(self, body: bytes) -> Response:
        """Handle one `POST /add-checkpoint` request body."""
        try:
            request = parse_request(body)
        except BadRequest as exc:
            return Response(400, f"{exc}\n")
        origin = request.note.split("\n", 1)[0]
        verifiers = self.logs.get(origin)
        if verifiers is None:
            return Response(404, f"unknown log origin {origin!r}\n")
        try:
            checkpoint, opened = open_checkpoint(request.note, verifiers, origin)
        except (UnverifiedNoteError, InvalidSignatureError):
            return Response(403, "no signature verifies with the log's key\n")
        except MalformedNoteError as exc:
            return Response(400, f"malformed checkpoint: {exc}\n")
        if request.old_size > checkpoint.size:
            return Response(400, "old size is above the checkpoint's size\n")
        if checkpoint.size == 0 and checkpoint.root != merkle.EMPTY_ROOT:
            return self._refuse(422, "a tree of size 0 must have the empty root", request, body)
        return self._check_and_cosign(request, checkpoint, opened.text, body)

    def _check_and_cosign(
        self, request: Request, checkpoint: Checkpoint, text: str, body: bytes
    ) -> Response:
        origin = checkpoint.origin
        recorded = self.store.get(origin)
        known = 0 if recorded is None else recorded.size
        if request.old_size != known:
            return _conflict(known)
        if request.old_size == 0:
            # The first checkpoint, or one after the empty tree (which every tree extends).
            if request.proof:
                return Response(400, "the consistency proof must be empty when old size is 0\n")
        elif checkpoint.size == request.old_size:
            assert recorded is not None
            if checkpoint.root != recorded.root:
                return self._refuse(409, "same size, different root", request, body, known)
            if request.proof:
                return self._refuse(422, "proof must be empty for equal sizes", request, body)
        else:
            assert recorded is not None
            if not merkle.verify_consistency(
                recorded.size, checkpoint.size, recorded.root, checkpoint.root, list(request.proof)
            ):
                return self._refuse(422, "consistency proof does not verify", request, body)
        new = Recorded(checkpoint.size, checkpoint.root)
        if not self.store.advance(origin, recorded, new, request.note, self.now()):
            now_known = self.store.get(origin)
            return _conflict(0 if now_known is None else now_known.size)
        return Response(200, self.signer.cosign(text))

    def _refuse(
        self, status: int, reason: str, request: Request, body: bytes, size: int | None = None
    ) -> Response:
        origin = request.note.split("\n", 1)[0]
        self.store.keep_evidence(origin, status, reason, body.decode("utf-8"), self.now())
        logger.warning(
            "refused a checkpoint signed by %s: %s %s (evidence kept)", origin, status, reason
        )
        if status == 409 and size is not None:
            return _conflict(size)
        return Response(status, reason + "\n")


def _conflict(size: int) -> Response:
    return Response(409, f"{size}\n", SIZE_CONTENT_TYPE)


def default_database_url(key_file: Path | None) -> str:
    """Return the default witness database: `witness.sqlite3` beside the key file (or here)."""
    folder = key_file.resolve().parent if key_file is not None else Path.cwd()
    return f"sqlite:///{folder / 'witness.sqlite3'}"
