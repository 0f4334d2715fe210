"""Tests for registry.models: the constraints the database itself enforces, on both backends."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from recpo.db import UTCDateTime
from registry.identifiers import DocumentType
from registry.models import PhoneLink, PhoneLinkState, Registrant, ReinfoRegistration, Role

NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)
LIMA = ZoneInfo("America/Lima")


@pytest.fixture
def session(backend_session: Session) -> Session:
    """On both backends (`backend_session`)."""
    return backend_session


def registrant(session: Session, document: str = "45678912") -> Registrant:
    person = Registrant(
        role=Role.MINER,
        document_type=DocumentType.DNI,
        document_number=document,
        name="Juana Quispe",
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(person)
    session.flush()
    return person


def link(session: Session, owner: Registrant, state: PhoneLinkState, phone="+51987654321"):
    session.add(PhoneLink(registrant=owner, phone=phone, state=state, requested_at=NOW))
    session.flush()


class TestOneActiveLinkPerPhone:
    def test_second_active_link_is_refused(self, session):
        link(session, registrant(session, "45678912"), PhoneLinkState.ACTIVE)
        other = registrant(session, "41234567")
        with pytest.raises(IntegrityError, match=r"uq_phone_links_active_phone|phone_links\.phone"):
            link(session, other, PhoneLinkState.ACTIVE)

    def test_same_registrant_cannot_hold_it_active_twice(self, session):
        juana = registrant(session)
        link(session, juana, PhoneLinkState.ACTIVE)
        with pytest.raises(IntegrityError):
            link(session, juana, PhoneLinkState.ACTIVE)

    def test_pending_and_revoked_duplicates_are_allowed(self, session):
        juana, pedro, rosa = (registrant(session, d) for d in ("45678912", "41234567", "40000001"))
        link(session, juana, PhoneLinkState.ACTIVE)
        for owner in (juana, pedro, rosa):
            link(session, owner, PhoneLinkState.PENDING)
            link(session, owner, PhoneLinkState.REVOKED)
        states = session.scalars(
            sa.select(PhoneLink.state).where(PhoneLink.phone == "+51987654321")
        ).all()
        assert sorted(states) == sorted(["active"] + ["pending", "revoked"] * 3)

    def test_another_phone_may_be_active(self, session):
        juana = registrant(session)
        link(session, juana, PhoneLinkState.ACTIVE)
        link(session, juana, PhoneLinkState.ACTIVE, phone="+51987654322")
        assert session.scalar(sa.select(sa.func.count()).select_from(PhoneLink)) == 2

    def test_revoking_frees_the_phone(self, session):
        juana, pedro = registrant(session, "45678912"), registrant(session, "41234567")
        link(session, juana, PhoneLinkState.ACTIVE)
        session.execute(sa.update(PhoneLink).values(state=PhoneLinkState.REVOKED))
        link(session, pedro, PhoneLinkState.ACTIVE)
        owner = session.scalar(
            sa.select(PhoneLink.registrant_id).where(PhoneLink.state == PhoneLinkState.ACTIVE)
        )
        assert owner == pedro.id


# Raw SQL, so that nothing in Python (SQLAlchemy's enum validation) stands between the value
# and the database's CHECK constraint.
INSERTS = {
    "registrants": (
        "INSERT INTO registrants (role, document_type, document_number, name, language, status,"
        " created_at, updated_at) VALUES (:role, :document_type, '45678912', 'Juana', :language,"
        " :status, '2026-11-30 15:00:00', '2026-11-30 15:00:00')",
        {"role": "miner", "document_type": "dni", "language": "es", "status": "active"},
    ),
    "phone_links": (
        "INSERT INTO phone_links (registrant_id, phone, state, requested_at)"
        " VALUES (:registrant_id, '+51987654321', :state, '2026-11-30 15:00:00')",
        {"state": "pending"},
    ),
    "reinfo_registrations": (
        "INSERT INTO reinfo_registrations (ruc, codigo_unico, holder_name, mining_right,"
        " department, province, district, status, snapshot_date, updated_at) VALUES (:ruc,"
        " :codigo_unico, 'JUANA', 'RINCONADA', 'PUNO', 'PUTINA', 'ANANEA', :status, '2026-11-30',"
        " '2026-11-30 15:00:00')",
        {"ruc": "10456789121", "codigo_unico": "010149108", "status": "VIGENTE"},
    ),
}


def raw_insert(session: Session, table: str, **changes: str) -> None:
    statement, values = INSERTS[table]
    if table == "phone_links":
        values = {**values, "registrant_id": registrant(session).id}
    session.execute(sa.text(statement), {**values, **changes})


class TestCheckConstraints:
    @pytest.mark.parametrize("table", list(INSERTS))
    def test_valid_raw_row_is_accepted(self, session, table):
        raw_insert(session, table)
        assert session.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 1

    @pytest.mark.parametrize(
        ("table", "column", "value", "constraint"),
        [
            ("registrants", "role", "boss", "ck_registrants_role"),
            ("registrants", "role", "MINER", "ck_registrants_role"),
            ("registrants", "document_type", "pass", "ck_registrants_document_type"),
            ("registrants", "language", "ay", "ck_registrants_language"),
            ("registrants", "status", "deleted", "ck_registrants_status"),
            ("phone_links", "state", "blocked", "ck_phone_links_state"),
            ("reinfo_registrations", "status", "vigente", "ck_reinfo_registrations_status"),
            ("reinfo_registrations", "status", "ACTIVO", "ck_reinfo_registrations_status"),
            ("reinfo_registrations", "ruc", "1045678912", "ck_reinfo_registrations_ruc_length"),
            (
                "reinfo_registrations",
                "codigo_unico",
                "10149108",
                "ck_reinfo_registrations_codigo_unico_length",
            ),
        ],
    )
    def test_unknown_value_is_refused_by_the_database(
        self, session, table, column, value, constraint
    ):
        with pytest.raises(IntegrityError, match=constraint):
            raw_insert(session, table, **{column: value})


class TestTimestamps:
    def test_come_back_aware_utc(self, backend):
        lima_time = dt.datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)  # 15:00 UTC
        with backend.transaction() as session:
            juana = registrant(session)
            juana.created_at = lima_time
            session.flush()
            person_id = juana.id
        with backend.transaction() as session:
            created, updated = session.execute(
                sa.select(Registrant.created_at, Registrant.updated_at).where(
                    Registrant.id == person_id
                )
            ).one()
        assert created == NOW == lima_time
        assert created.tzinfo is dt.UTC
        assert updated.tzinfo is dt.UTC
        assert created.utcoffset() == dt.timedelta(0)

    def test_sqlite_stores_the_utc_wall_time(self, sqlite_database):
        with sqlite_database.transaction() as session:
            juana = registrant(session)
            juana.created_at = dt.datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)
            session.flush()
            stored = session.scalar(sa.text("SELECT created_at FROM registrants"))
        assert stored == "2026-11-30 15:00:00.000000"

    def test_naive_datetime_refused_on_write(self, session):
        session.add(
            Registrant(
                role=Role.MINER,
                document_type=DocumentType.DNI,
                document_number="45678912",
                name="Juana",
                created_at=dt.datetime(2026, 11, 30, 15, 0),
                updated_at=NOW,
            )
        )
        with pytest.raises(StatementError, match="naive datetime given to a UTC column"):
            session.flush()

    def test_naive_datetime_refused_in_a_query(self, session):
        query = sa.select(ReinfoRegistration.id).where(
            ReinfoRegistration.updated_at > dt.datetime(2026, 11, 30)
        )
        with pytest.raises(StatementError, match="naive datetime"):
            session.execute(query)


class TestUTCDateTime:
    @pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
    def test_refuses_naive(self, dialect):
        with pytest.raises(ValueError, match="naive datetime given to a UTC column"):
            UTCDateTime().process_bind_param(dt.datetime(2026, 11, 30, 15, 0), dialect)

    def test_binds_utc_aware_on_postgresql_and_utc_wall_time_on_sqlite(self):
        lima_time = dt.datetime(2026, 11, 30, 10, 0, tzinfo=LIMA)
        bound = UTCDateTime().process_bind_param(lima_time, postgresql.dialect())
        assert (bound, bound.tzinfo) == (NOW, dt.UTC)
        assert UTCDateTime().process_bind_param(lima_time, sqlite.dialect()) == dt.datetime(
            2026, 11, 30, 15, 0
        )

    def test_results_are_aware_utc(self):
        column = UTCDateTime()
        naive = column.process_result_value(dt.datetime(2026, 11, 30, 15, 0), sqlite.dialect())
        lima = column.process_result_value(
            dt.datetime(2026, 11, 30, 10, 0, tzinfo=LIMA), postgresql.dialect()
        )
        assert (naive, naive.tzinfo) == (NOW, dt.UTC)
        assert (lima, lima.tzinfo) == (NOW, dt.UTC)
        assert column.process_bind_param(None, sqlite.dialect()) is None
        assert column.process_result_value(None, sqlite.dialect()) is None
