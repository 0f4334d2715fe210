"""Partner institutions' API tokens and the audit log of their calls.

A token is ``recpo_`` followed by 43 URL-safe characters (256 random bits). It is shown once, when
created; the database keeps only its SHA-256, so a token is found by the hash of what a caller
presents (a unique-index lookup: no comparison that leaks timing on the secret). Each token belongs
to one institution, carries scopes, may be revoked, and remembers when it was last used.

Scopes (`SCOPES`): ``transactions:read``, ``registrants:read``, ``flags:read``,
``aggregates:read`` grant the endpoints of the same name; ``personal_data`` adds names, document
numbers and phones to what the others return, and grants nothing by itself.

`ApiCall` rows are only ever inserted (the database refuses UPDATE and DELETE): one per call to
the API, with the institution, endpoint, parameters, status and time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from recpo.db import Base

TOKEN_PREFIX = "recpo_"  # noqa: S105 - the public prefix, not a secret
TOKEN_BYTES = 32
PREFIX_SHOWN = len(TOKEN_PREFIX) + 6  # what lists show to tell tokens apart: "recpo_AbC123"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # last_used_at is written at most this often

TRANSACTIONS_READ = "transactions:read"
REGISTRANTS_READ = "registrants:read"
FLAGS_READ = "flags:read"
AGGREGATES_READ = "aggregates:read"
PERSONAL_DATA = "personal_data"

SCOPES = {
    TRANSACTIONS_READ: "list and read transactions (goods, place, time, status)",
    REGISTRANTS_READ: "registry status and REINFO standing of a DNI or RUC",
    FLAGS_READ: "list red flags",
    AGGREGATES_READ: "volumes by region, material and ISO week",
    PERSONAL_DATA: "also return names, document numbers and phones (with the scopes above)",
}


class PartnerToken(Base):
    """A bearer token of one partner institution; only the SHA-256 of the token is kept."""

    __tablename__ = "partner_tokens"
    __table_args__ = (sa.Index("ix_partner_tokens_institution", "institution"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    institution: Mapped[str] = mapped_column(sa.String(120))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # SHA-256 hex
    token_prefix: Mapped[str] = mapped_column(sa.String(20))
    scopes: Mapped[str] = mapped_column(sa.String(200))  # space-separated, sorted
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(80))
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.active and scope in self.scope_set


class ApiCall(Base):
    """One call to the partner API: who, what, with which parameters, and the answer's status.

    Append-only: the API only inserts, and the database refuses UPDATE and DELETE.
    """

    __tablename__ = "partner_api_calls"
    __table_args__ = (
        sa.Index("ix_partner_api_calls_token_id_id", "token_id", "id"),
        sa.Index("ix_partner_api_calls_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    at: Mapped[dt.datetime]
    token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("partner_tokens.id"))
    institution: Mapped[str | None] = mapped_column(sa.String(120))
    method: Mapped[str] = mapped_column(sa.String(10))
    endpoint: Mapped[str] = mapped_column(sa.String(300))  # the path asked for
    parameters: Mapped[str] = mapped_column(sa.Text, default="{}")  # JSON of the query
    status: Mapped[int] = mapped_column(sa.SmallInteger)
    address: Mapped[str | None] = mapped_column(sa.String(64))


class TokenError(ValueError):
    """A token request that cannot be carried out (unknown scope, empty institution...)."""


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which `token` is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """Parse comma- (or space-) separated scopes; refuse unknown ones and an empty list."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    scopes = sorted({item.strip() for item in items if item.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise TokenError(f"unknown scope {', '.join(unknown)}; the scopes are: {', '.join(SCOPES)}")
    if not scopes:
        raise TokenError(f"give at least one scope: {', '.join(SCOPES)}")
    return tuple(scopes)


@dataclass(frozen=True)
class NewToken:
    """A token just created: the row, and the bearer token itself (shown once, never stored)."""

    token: PartnerToken
    secret: str


def create_token(
    session: Session,
    institution: str,
    scopes: str | Iterable[str],
    now: dt.datetime,
    created_by: str = "cli",
) -> NewToken:
    """Create a token for `institution` with `scopes`; return it with its secret."""
    institution = " ".join(institution.split())
    if not institution:
        raise TokenError("the institution's name is empty")
    if len(institution) > 120:
        raise TokenError("the institution's name is longer than 120 characters")
    parsed = parse_scopes(scopes)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token = PartnerToken(
        institution=institution,
        token_hash=hash_token(secret),
        token_prefix=secret[:PREFIX_SHOWN],
        scopes=" ".join(parsed),
        created_at=now,
        created_by=created_by[:80],
    )
    session.add(token)
    session.flush()
    return NewToken(token, secret)


def find_token(session: Session, presented: str) -> PartnerToken | None:
    """Return the token row (revoked or not) whose secret is `presented`, or None."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    digest = hash_token(presented)
    token = session.scalar(sa.select(PartnerToken).where(PartnerToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def revoke_token(session: Session, ident: str, now: dt.datetime) -> PartnerToken:
    """Revoke the token with id or shown prefix `ident`; revoking twice keeps the first time."""
    ident = ident.strip()
    if ident.isdigit():
        token = session.get(PartnerToken, int(ident))
    else:
        matches = session.scalars(
            sa.select(PartnerToken).where(PartnerToken.token_prefix == ident[:PREFIX_SHOWN])
        ).all()
        if len(matches) > 1:
            raise TokenError(f"{ident!r} names {len(matches)} tokens; give the token's id")
        token = matches[0] if matches else None
    if token is None:
        raise TokenError(f"no token {ident!r}")
    if token.revoked_at is None:
        token.revoked_at = now
    return token


def list_tokens(session: Session) -> list[PartnerToken]:
    """Return every token, oldest first."""
    return list(session.scalars(sa.select(PartnerToken).order_by(PartnerToken.id)))


def touch(session: Session, token_id: int, now: dt.datetime) -> None:
    """Record that the token was used at `now` (written at most once a minute per token)."""
    session.execute(
        sa.update(PartnerToken)
        .where(
            PartnerToken.id == token_id,
            sa.or_(
                PartnerToken.last_used_at.is_(None),
                PartnerToken.last_used_at < now - LAST_USED_RESOLUTION,
            ),
        )
        .values(last_used_at=now)
    )
