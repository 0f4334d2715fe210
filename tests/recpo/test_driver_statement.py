"""`recpo.db.DriverStatement`: the hot path's statements, run as SQLAlchemy would run them."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from flows.messages import Channel
from flows.models import Conversation
from flows.store import lock_conversation, update
from recpo.db import Database, DriverStatement
from registry.models import (
    DocumentType,
    Language,
    PhoneLink,
    PhoneLinkState,
    Registrant,
    RegistrantStatus,
    Role,
)
from registry.phones import active_registrant

NOW = dt.datetime(2026, 3, 2, 15, 4, 5, 678901, tzinfo=dt.UTC)
PHONE = "+51987650002"


@pytest.fixture
def session(backend_session: Session) -> Session:
    """On both backends (`backend_session`)."""
    return backend_session


def _registrant(session: Session) -> Registrant:
    person = Registrant(
        role=Role.MINER,
        document_type=DocumentType.DNI,
        document_number="45678912",
        name="Juana Quispe",
        language=Language.QUECHUA,
        recpo_number="R-2026-0001",
        status=RegistrantStatus.SUSPENDED,
        created_at=NOW,
        updated_at=NOW + dt.timedelta(hours=1),
    )
    session.add(person)
    session.flush()
    session.add(
        PhoneLink(registrant=person, phone=PHONE, state=PhoneLinkState.ACTIVE, requested_at=NOW)
    )
    session.flush()
    return person


def _columns(obj: object) -> dict[str, object]:
    mapper = sa.inspect(type(obj))
    return {attr.key: getattr(obj, attr.key) for attr in mapper.column_attrs}


class Statements:
    """The SQL a session sends, as it sends it."""

    def __init__(self, session: Session) -> None:
        self.sent: list[str] = []
        self.engine = session.connection().engine
        event.listen(self.engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, _params, _context, _many) -> None:
        self.sent.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def updates_of(self, table: str) -> list[str]:
        return [s for s in self.sent if s.lstrip().upper().startswith(f"UPDATE {table.upper()}")]


class TestLoad:
    def test_an_object_as_the_orm_loads_it(self, session: Session):
        _registrant(session)
        session.expunge_all()
        fast = active_registrant(session, PHONE)
        assert fast is not None
        expected = _columns(fast)
        session.expunge_all()
        orm = session.scalars(
            sa.select(Registrant).join(PhoneLink).where(PhoneLink.phone == PHONE)
        ).one()
        assert _columns(orm) == expected
        assert orm.language is Language.QUECHUA and orm.updated_at.tzinfo is not None
        assert orm is not fast

    def test_the_object_belongs_to_the_session_and_its_relationships_load(self, session):
        _registrant(session)
        session.expunge_all()
        person = active_registrant(session, PHONE)
        assert person is not None
        state = sa.inspect(person)
        assert state.persistent and not state.modified
        assert session.get(Registrant, person.id) is person  # no second object for the row
        assert [link.phone for link in person.phones] == [PHONE]

    def test_only_what_changes_is_written(self, session: Session):
        _registrant(session)
        session.commit()
        session.begin()
        session.expunge_all()
        statements = Statements(session)
        try:
            person = active_registrant(session, PHONE)
            assert person is not None
            person.name = "Juana Quispe Mamani"
            session.flush()
            conversation = lock_conversation(session, PHONE, Channel.SMS, NOW)
            update(conversation, channel=Channel.SMS, updated_at=NOW, flow=None)  # as it is
            # Not even marked modified: the flush at commit has nothing to look through.
            assert not sa.inspect(conversation).modified
            update(conversation, flow="purchase")
            assert sa.inspect(conversation).modified
            session.flush()
        finally:
            statements.close()
        (written,) = statements.updates_of("registrants")
        assert "name" in written and "language" not in written and "status" not in written
        (written,) = statements.updates_of("conversations")
        assert "flow" in written and "channel" not in written and "updated_at" not in written
        session.expire_all()
        assert session.get(Registrant, person.id).name == "Juana Quispe Mamani"

    def test_an_object_the_session_holds_takes_the_row_values(self, session: Session):
        held = lock_conversation(session, PHONE, Channel.SMS, NOW)
        later = NOW + dt.timedelta(minutes=5)
        again = lock_conversation(session, PHONE, Channel.WHATSAPP, later)
        assert again is held
        assert (held.channel, held.updated_at) == (Channel.WHATSAPP, later)

    def test_pending_changes_are_flushed_first_not_lost(self, session: Session):
        person = _registrant(session)
        person.name = "Juana Quispe Mamani"  # pending: not flushed yet
        assert active_registrant(session, PHONE) is person
        assert person.name == "Juana Quispe Mamani"
        session.expire_all()
        assert session.get(Registrant, person.id).name == "Juana Quispe Mamani"

    def test_nothing_found_is_none(self, session: Session):
        assert active_registrant(session, "+51987659999") is None

    def test_a_conversation_as_the_orm_loads_it(self, session: Session):
        lock_conversation(session, PHONE, Channel.WHATSAPP, NOW)
        session.flush()
        session.expunge_all()
        fast = _columns(lock_conversation(session, PHONE, Channel.WHATSAPP, NOW))
        session.expunge_all()
        orm = _columns(session.get(Conversation, PHONE))
        assert fast == orm
        assert orm["channel"] is Channel.WHATSAPP and orm["updated_at"] == NOW


class TestRows:
    TABLE = sa.table("driver_rows", sa.column("id"), sa.column("word"))

    @pytest.fixture
    def table(self, session: Session) -> None:
        session.execute(sa.text("CREATE TABLE driver_rows (id INTEGER PRIMARY KEY, word TEXT)"))

    def test_binds_with_values_of_their_own_and_given_ones(self, session: Session, table):
        insert = DriverStatement(
            sa.insert(self.TABLE)
            .values(id=sa.bindparam("id"), word=sa.literal("fixed") + sa.bindparam("tail"))
            .returning(self.TABLE.c.id, self.TABLE.c.word)
        )
        rows = insert.rows(session.connection(), {"id": 7, "tail": "-7"})
        assert [tuple(r) for r in rows] == [(7, "fixed-7")]

    def test_a_refused_row_raises_sqlalchemys_integrity_error(self, session: Session, table):
        insert = DriverStatement(sa.insert(self.TABLE).values(id=sa.bindparam("id"), word="x"))
        insert.rows(session.connection(), {"id": 1})
        session.begin_nested()
        with pytest.raises(sa.exc.IntegrityError):
            insert.rows(session.connection(), {"id": 1})


class TestTypedRows:
    def test_values_as_sqlalchemy_returns_them(self, session: Session):
        person = _registrant(session)
        statement = sa.select(
            Registrant.status, Registrant.updated_at, Registrant.name, PhoneLink.state
        ).join(PhoneLink, PhoneLink.registrant_id == Registrant.id)
        rows = DriverStatement(statement).typed_rows(session.connection(), {})
        assert [tuple(r) for r in rows] == [tuple(r) for r in session.execute(statement)]
        ((status, updated_at, name, state),) = rows
        assert status is RegistrantStatus.SUSPENDED
        assert state is PhoneLinkState.ACTIVE
        assert updated_at == person.updated_at and updated_at.tzinfo is not None
        assert name == "Juana Quispe"

    def test_returning_columns_too(self, session: Session):
        person = _registrant(session)
        statement = (
            sa.update(Registrant)
            .where(Registrant.id == sa.bindparam("person"))
            .values(status=RegistrantStatus.ACTIVE)
            .returning(Registrant.status, Registrant.language)
        )
        rows = DriverStatement(statement).typed_rows(session.connection(), {"person": person.id})
        assert [tuple(r) for r in rows] == [(RegistrantStatus.ACTIVE, Language.QUECHUA)]


def test_a_dead_connection_is_invalidated(committing_database: Database):
    statement = DriverStatement(sa.select(sa.literal(1)))
    with committing_database.transaction() as session:
        connection = session.connection()
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with committing_database.bind.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            killer.commit()
        with pytest.raises(sa.exc.OperationalError):
            statement.rows(connection, {})
        assert connection.invalidated
        session.rollback()
    with committing_database.transaction() as session:  # the pool hands out a live one
        assert [tuple(r) for r in statement.rows(session.connection(), {})] == [(1,)]


def test_an_in_list_is_refused_when_compiled(database: Database):
    table = sa.table("anything", sa.column("id"))
    statement = DriverStatement(
        sa.select(table.c.id).where(table.c.id.in_(sa.bindparam("ids", expanding=True)))
    )
    with database.transaction() as session, pytest.raises(ValueError, match="expanding"):
        statement.rows(session.connection(), {"ids": [1, 2]})


@pytest.mark.parametrize("planned_each_time", [False, True])
def test_planned_each_time_is_never_prepared_on_the_server(connection, planned_each_time):
    """psycopg prepares a statement run often enough (`prepare_threshold`); a statement planned
    each time never is, so the server plans it for each execution's values."""
    statement = DriverStatement(
        sa.select(sa.literal_column("'planned?'")).where(sa.bindparam("n", type_=sa.Integer) > 0),
        planned_each_time=planned_each_time,
    )
    threshold = connection.connection.driver_connection.prepare_threshold
    for n in range(threshold + 2):
        assert statement.rows(connection, {"n": n + 1}) == [("planned?",)]
    prepared = connection.execute(
        sa.text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE :text"),
        {"text": "%'planned?'%"},
    ).scalar()
    assert prepared == (0 if planned_each_time else 1)
