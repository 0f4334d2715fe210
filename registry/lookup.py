"""May this document sell gold today, and if not, why not?

The answer comes from the REINFO registrations held for the seller's RUC; a DNI is looked up
through its natural-person RUC (`10` + DNI + check digit). A seller may trade when at least one of
their registrations is VIGENTE.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.i18n import N_
from registry.identifiers import Document, DocumentType, natural_person_ruc
from registry.models import ReinfoRegistration, ReinfoStatus


class Standing(enum.StrEnum):
    """The outcome of a seller lookup; each has a reason a person can read."""

    VIGENTE = "vigente"
    NOT_IN_REINFO = "not_in_reinfo"
    SUSPENDED = "suspended"
    EXCLUDED = "excluded"
    NO_RUC = "no_ruc"

    @property
    def reason(self) -> str:
        """Return the untranslated message explaining this standing."""
        return _REASONS[self]


_REASONS = {
    Standing.VIGENTE: N_("RUC %(ruc)s is VIGENTE in REINFO (list of %(as_of)s)."),
    Standing.NOT_IN_REINFO: N_(
        "RUC %(ruc)s is not in REINFO (list of %(as_of)s): it may not sell gold."
    ),
    Standing.SUSPENDED: N_(
        "RUC %(ruc)s is SUSPENDED in REINFO (list of %(as_of)s): it may not sell gold."
    ),
    Standing.EXCLUDED: N_(
        "RUC %(ruc)s is EXCLUDED from REINFO (list of %(as_of)s): it may not sell gold."
    ),
    Standing.NO_RUC: N_(
        "A carné de extranjería cannot be checked in REINFO: give the seller's RUC instead."
    ),
}


@dataclass(frozen=True)
class SellerStanding:
    """Whether a document may sell gold, with the registrations behind the answer."""

    document: Document
    ruc: str | None
    standing: Standing
    registrations: tuple[ReinfoRegistration, ...]
    as_of: dt.date | None

    @property
    def may_sell(self) -> bool:
        """True when the seller holds at least one VIGENTE registration."""
        return self.standing is Standing.VIGENTE

    @property
    def reason(self) -> str:
        """Return the untranslated reason; format it with `params`."""
        return self.standing.reason

    @property
    def params(self) -> dict[str, str]:
        """Return the values for the reason's placeholders."""
        return {
            "ruc": self.ruc or "",
            "as_of": self.as_of.isoformat() if self.as_of else "-",
        }

    def __str__(self) -> str:
        return self.reason % self.params


def seller_ruc(document: Document) -> str | None:
    """Return the RUC under which a seller's document is registered in REINFO, if any."""
    if document.type is DocumentType.RUC:
        return document.number
    if document.type is DocumentType.DNI:
        return natural_person_ruc(document.number)
    return None


def seller_standing(session: Session, document: Document) -> SellerStanding:
    """Answer whether `document` may sell gold now, from the newest REINFO list held."""
    ruc = seller_ruc(document)
    if ruc is None:
        return SellerStanding(document, None, Standing.NO_RUC, (), None)
    registrations = tuple(
        session.scalars(
            sa.select(ReinfoRegistration)
            .where(ReinfoRegistration.ruc == ruc)
            .order_by(ReinfoRegistration.codigo_unico)
        )
    )
    if not registrations:
        latest = session.scalar(sa.select(sa.func.max(ReinfoRegistration.snapshot_date)))
        return SellerStanding(document, ruc, Standing.NOT_IN_REINFO, (), latest)
    as_of = max(r.snapshot_date for r in registrations)
    statuses = {r.status for r in registrations}
    if ReinfoStatus.VIGENTE in statuses:
        standing = Standing.VIGENTE
        registrations = tuple(r for r in registrations if r.status is ReinfoStatus.VIGENTE)
    elif ReinfoStatus.SUSPENDIDO in statuses:
        standing = Standing.SUSPENDED
    else:
        standing = Standing.EXCLUDED
    return SellerStanding(document, ruc, standing, registrations, as_of)


# --- mining rights (código único) ----------------------------------------------------------------


def vigente_rights(session: Session, ruc: str) -> list[ReinfoRegistration]:
    """Return the seller's VIGENTE registrations, by código único: the rights it may sell from."""
    return list(
        session.scalars(
            sa.select(ReinfoRegistration)
            .where(ReinfoRegistration.ruc == ruc, ReinfoRegistration.status == ReinfoStatus.VIGENTE)
            .order_by(ReinfoRegistration.codigo_unico)
        )
    )


def registration_of(session: Session, ruc: str, codigo_unico: str) -> ReinfoRegistration | None:
    """Return the registration of `ruc` on the mining right `codigo_unico`, whatever its status."""
    return session.scalar(
        sa.select(ReinfoRegistration).where(
            ReinfoRegistration.ruc == ruc, ReinfoRegistration.codigo_unico == codigo_unico
        )
    )


def rights_naming_no_person(session: Session, codes: set[str] | list[str]) -> set[str]:
    """Return the codes among `codes` that REINFO lists only under companies (RUC 20).

    REINFO publishes each registration with its holder's RUC and name, so a mining right's code
    points at its holders: where one is a natural person (RUC 10, 15 or 17) the code is personal
    data, and where REINFO does not list it, nobody can tell. Only the codes returned here may be
    shown or published as they are.
    """
    codes = {code for code in codes if code}
    if not codes:
        return set()
    person = sa.case((sa.func.substr(ReinfoRegistration.ruc, 1, 2) != "20", 1), else_=0)
    query = (
        sa.select(ReinfoRegistration.codigo_unico)
        .where(ReinfoRegistration.codigo_unico.in_(sorted(codes)))
        .group_by(ReinfoRegistration.codigo_unico)
        .having(sa.func.sum(person) == 0)
    )
    return set(session.scalars(query))
