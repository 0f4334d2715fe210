"""Console fixtures: accounts of each role, signing in, demo data, rows for the lists."""

from __future__ import annotations

import datetime as dt
import functools
import re

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from admin.auth import start_session
from admin.models import StaffRole, User
from admin.users import hash_password
from admin.views.common import SESSION_TOKEN
from flows.messages import Channel
from gateway.models import Direction, Encoding, Message, MessageEvent, Status
from recpo.db import Database
from registry.demo import seed_demo
from registry.models import FlagStatus, RedFlag, Registrant

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@functools.cache
def password_hash() -> str:
    """One scrypt hash for every test account (hashing costs ~0.1 s)."""
    return hash_password(PASSWORD)


def add_user(database: Database, name: str, role: StaffRole, now: dt.datetime) -> User:
    with database.transaction() as session:
        user = User(name=name, role=role, password_hash=password_hash(), created_at=now)
        session.add(user)
        session.flush()
    return user


@pytest.fixture
def accounts(database, clock) -> dict[StaffRole, User]:
    """One console user per role: ana (admin), lucho (analyst), rita (auditor)."""
    names = {StaffRole.ADMIN: "ana", StaffRole.ANALYST: "lucho", StaffRole.AUDITOR: "rita"}
    return {role: add_user(database, name, role, clock.now()) for role, name in names.items()}


def sign_in(client: FlaskClient, database: Database, user: User, now: dt.datetime) -> str:
    """Give `client` a live console session for `user` (without the login form); return the CSRF
    token of its pages."""
    with database.transaction() as session:
        token = start_session(session, user, now)
    with client.session_transaction() as cookie:
        cookie[SESSION_TOKEN] = token
    return csrf_of(client)


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token of the client's session (as its pages carry it)."""
    page = client.get("/admin/").get_data(as_text=True)
    match = CSRF.search(page)
    assert match, "no CSRF token on the console's start page"
    return match.group(1)


@pytest.fixture
def as_role(client, database, clock, accounts):
    """`as_role(StaffRole.X)` signs the test client in as that role; returns the CSRF token."""

    def sign(role: StaffRole) -> str:
        return sign_in(client, database, accounts[role], clock.now())

    return sign


@pytest.fixture
def demo(database, clock) -> dict[str, int]:
    """The demo registrants and REINFO rows; returns registrant ids by document number."""
    with database.transaction() as session:
        seed_demo(session, clock.now())
        return dict(session.execute(sa.select(Registrant.document_number, Registrant.id)).all())


def add_message(
    session,
    *,
    phone: str = "+51987000011",
    body: str = "AYUDA",
    channel: Channel = Channel.SMS,
    direction: Direction = Direction.IN,
    status: Status | None = None,
    at: dt.datetime,
    provider_id: str | None = None,
    simulated: bool = False,
    events: tuple[Status, ...] = (),
) -> Message:
    status = status or (Status.RECEIVED if direction is Direction.IN else Status.QUEUED)
    message = Message(
        channel=channel,
        direction=direction,
        phone=phone,
        body=body,
        provider_id=provider_id,
        status=status,
        encoding=Encoding.UNICODE if channel is Channel.WHATSAPP else Encoding.GSM7,
        segments=1,
        simulated=simulated,
        created_at=at,
        updated_at=at,
    )
    session.add(message)
    session.flush()
    for step in events:
        session.add(MessageEvent(message_id=message.id, status=step, at=at))
    return message


def add_flag(
    session,
    *,
    at: dt.datetime,
    rule: str = "R1",
    status: FlagStatus = FlagStatus.OPEN,
    evidence: str = '{"ruc": "10456789123", "standing": "suspended"}',
    phone: str | None = "+51987000001",
) -> RedFlag:
    flag = RedFlag(
        rule=rule,
        reason="refused: RUC 10456789123 is SUSPENDED",
        phone=phone,
        document="DNI 45678912",
        evidence=evidence,
        status=status,
        created_at=at,
        updated_at=at,
    )
    session.add(flag)
    session.flush()
    return flag
