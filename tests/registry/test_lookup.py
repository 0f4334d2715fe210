"""Tests for registry.lookup: may this document sell gold, and why not."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from registry.identifiers import Document, DocumentType, natural_person_ruc
from registry.lookup import Standing, seller_standing
from registry.models import ReinfoRegistration, ReinfoStatus

SNAPSHOT = dt.date(2026, 11, 30)
NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)
DNI = "45678912"
RUC = natural_person_ruc(DNI)  # 10456789124
COMPANY = "20131312955"


def register(
    session: Session,
    ruc: str,
    codigo: str,
    status: ReinfoStatus,
    snapshot: dt.date = SNAPSHOT,
) -> ReinfoRegistration:
    registration = ReinfoRegistration(
        ruc=ruc,
        codigo_unico=codigo,
        holder_name="QUISPE MAMANI JUANA",
        mining_right=f"RINCONADA {codigo[-2:]}",
        department="PUNO",
        province="SAN ANTONIO DE PUTINA",
        district="ANANEA",
        ubigeo="211002",
        status=status,
        snapshot_date=snapshot,
        updated_at=NOW,
    )
    session.add(registration)
    session.flush()
    return registration


def dni() -> Document:
    return Document(DocumentType.DNI, DNI)


class TestSellerStanding:
    def test_dni_is_looked_up_through_its_natural_person_ruc(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.VIGENTE)
        register(db_session, natural_person_ruc("45678913"), "010149109", ReinfoStatus.EXCLUIDO)

        standing = seller_standing(db_session, dni())

        assert RUC == "10456789124"
        assert standing.ruc == RUC
        assert standing.document == dni()
        assert standing.standing is Standing.VIGENTE
        assert standing.may_sell is True
        assert [r.codigo_unico for r in standing.registrations] == ["010149108"]
        assert standing.as_of == SNAPSHOT

    @pytest.mark.parametrize("number", [RUC, "10-45678912-4", COMPANY])
    def test_ruc_is_looked_up_as_given(self, db_session, number):
        register(db_session, RUC, "010149108", ReinfoStatus.VIGENTE)
        register(db_session, COMPANY, "070012317", ReinfoStatus.VIGENTE)

        standing = seller_standing(db_session, Document(DocumentType.RUC, number))

        expected = number.replace("-", "")
        assert standing.ruc == expected
        assert standing.may_sell is True
        assert [r.ruc for r in standing.registrations] == [expected]

    def test_vigente_among_several_may_sell_and_lists_only_vigente(self, db_session):
        register(db_session, RUC, "010149111", ReinfoStatus.VIGENTE)
        register(db_session, RUC, "010149108", ReinfoStatus.SUSPENDIDO)
        register(db_session, RUC, "010149110", ReinfoStatus.EXCLUIDO)
        register(db_session, RUC, "010149109", ReinfoStatus.VIGENTE)

        standing = seller_standing(db_session, dni())

        assert standing.standing is Standing.VIGENTE
        assert standing.may_sell is True
        assert [(r.codigo_unico, r.status) for r in standing.registrations] == [
            ("010149109", ReinfoStatus.VIGENTE),
            ("010149111", ReinfoStatus.VIGENTE),
        ]

    def test_only_suspendido_is_suspended(self, db_session):
        register(db_session, RUC, "010149109", ReinfoStatus.SUSPENDIDO)
        register(db_session, RUC, "010149108", ReinfoStatus.SUSPENDIDO)

        standing = seller_standing(db_session, dni())

        assert standing.standing is Standing.SUSPENDED
        assert standing.may_sell is False
        assert [r.codigo_unico for r in standing.registrations] == ["010149108", "010149109"]

    def test_only_excluido_is_excluded(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.EXCLUIDO)

        standing = seller_standing(db_session, dni())

        assert standing.standing is Standing.EXCLUDED
        assert standing.may_sell is False
        assert [r.status for r in standing.registrations] == [ReinfoStatus.EXCLUIDO]

    def test_suspendido_and_excluido_is_suspended(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.EXCLUIDO)
        register(db_session, RUC, "010149109", ReinfoStatus.SUSPENDIDO)

        standing = seller_standing(db_session, dni())

        assert standing.standing is Standing.SUSPENDED
        assert standing.may_sell is False
        assert [r.status for r in standing.registrations] == [
            ReinfoStatus.EXCLUIDO,
            ReinfoStatus.SUSPENDIDO,
        ]

    def test_not_present_is_not_in_reinfo_as_of_the_newest_list(self, db_session):
        register(db_session, COMPANY, "070012317", ReinfoStatus.VIGENTE, SNAPSHOT)
        register(db_session, COMPANY, "070012318", ReinfoStatus.VIGENTE, SNAPSHOT - dt.timedelta(9))

        standing = seller_standing(db_session, dni())

        assert standing.standing is Standing.NOT_IN_REINFO
        assert standing.may_sell is False
        assert standing.ruc == RUC
        assert standing.registrations == ()
        assert standing.as_of == SNAPSHOT
        assert str(standing) == (
            "RUC 10456789124 is not in REINFO (list of 2026-11-30): it may not sell gold."
        )

    def test_nothing_imported_yet_is_not_in_reinfo_without_a_date(self, db_session):
        standing = seller_standing(db_session, dni())
        assert standing.standing is Standing.NOT_IN_REINFO
        assert standing.may_sell is False
        assert standing.as_of is None
        assert standing.params == {"ruc": RUC, "as_of": "-"}

    def test_carne_de_extranjeria_has_no_ruc(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.VIGENTE)

        standing = seller_standing(db_session, Document(DocumentType.CE, "001234567"))

        assert standing.standing is Standing.NO_RUC
        assert standing.may_sell is False
        assert (standing.ruc, standing.registrations, standing.as_of) == (None, (), None)
        assert str(standing) == (
            "A carné de extranjería cannot be checked in REINFO: give the seller's RUC instead."
        )

    def test_as_of_is_the_newest_snapshot_of_the_sellers_registrations(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.VIGENTE, dt.date(2026, 10, 31))
        register(db_session, RUC, "010149109", ReinfoStatus.SUSPENDIDO, dt.date(2026, 11, 15))

        standing = seller_standing(db_session, dni())

        assert standing.as_of == dt.date(2026, 11, 15)
        assert str(standing) == "RUC 10456789124 is VIGENTE in REINFO (list of 2026-11-15)."


class TestReasons:
    @pytest.mark.parametrize(
        ("status", "text"),
        [
            (ReinfoStatus.VIGENTE, "RUC 10456789124 is VIGENTE in REINFO (list of 2026-11-30)."),
            (
                ReinfoStatus.SUSPENDIDO,
                "RUC 10456789124 is SUSPENDED in REINFO (list of 2026-11-30):"
                " it may not sell gold.",
            ),
            (
                ReinfoStatus.EXCLUIDO,
                "RUC 10456789124 is EXCLUDED from REINFO (list of 2026-11-30):"
                " it may not sell gold.",
            ),
        ],
    )
    def test_reason_rendered_with_ruc_and_snapshot_date(self, db_session, status, text):
        register(db_session, RUC, "010149108", status)

        standing = seller_standing(db_session, dni())

        assert str(standing) == text
        assert standing.params == {"ruc": "10456789124", "as_of": "2026-11-30"}
        assert standing.reason % standing.params == text
        assert standing.reason == standing.standing.reason

    def test_reason_is_translatable(self, db_session):
        register(db_session, RUC, "010149108", ReinfoStatus.SUSPENDIDO)
        standing = seller_standing(db_session, dni())
        catalog = {
            standing.reason: "El RUC %(ruc)s está SUSPENDIDO en el REINFO (lista del %(as_of)s)."
        }
        assert catalog[standing.reason] % standing.params == (
            "El RUC 10456789124 está SUSPENDIDO en el REINFO (lista del 2026-11-30)."
        )
