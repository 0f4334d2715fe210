"""The WhatsApp Cloud API channel: handshake, signed webhooks, statuses, and sending through Meta.

Webhooks go through the Flask test client with payloads shaped like Meta's (testdata/meta_*.json);
sending goes over real HTTP to a local fake of the Graph API (tests/fakes/graph_api.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from flows.engine import Conversations
from flows.messages import Channel, Choice, Inbound
from gateway import outbox
from gateway.channels.whatsapp_cloud import (
    API_VERSION,
    DEFAULT_API_URL,
    LIST_BUTTON,
    MetaSender,
    StatusUpdate,
    parse,
    signature,
    verify_signature,
)
from gateway.dispatch import QUEUE_NAME
from gateway.inbound import receive
from gateway.models import (
    Direction,
    Encoding,
    Message,
    MessageEvent,
    OutboxItem,
    OutboxState,
    Status,
)
from gateway.outbox import send_item
from gateway.senders import (
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendError,
    WindowClosedError,
)
from gateway.service import EXTENSION_KEY
from recpo.clock import FixedClock
from recpo.config import Settings
from recpo.db import Database
from recpo.i18n import DEFAULT_LOCALE, translate
from tests.conftest import NOW, AppFactory
from tests.fakes import graph_api as meta
from tests.fakes.graph_api import FakeGraphAPI

TESTDATA = Path(__file__).parent / "testdata"

APP_SECRET = "d5a0c1e2f3b4a5968778695a4b3c2d1e"
VERIFY_TOKEN = "recpo-verify-7f3a9c"
ACCESS_TOKEN = "EAAGm0PX4ZCpsBAtestTOKENdoNotLog"
PHONE_NUMBER_ID = "106540352242922"

ROSA = "+51987654321"
JUAN = "+51951234567"

TEXT_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgASGBQzQUI0NkE4NjM1QTU2NjVGOURGQgA="
BUTTON_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
LIST_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgASGBQzQTlGMjQ1RTk1NDk1NDc0NUE3QwA="
IMAGE_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgASGBQzQUU4Q0Q2RjA3NzE0QTkxQjFDQgA="
ROSA_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgASGBQzQUQ1QjM0RTZGOTdBNTE5RkE1RgA="
JUAN_WAMID = "wamid.HBgLNTE5NTEyMzQ1NjcVAgASGBQzQUJFMjZGQ0I1NDIyOUI4RkY2QQA="
STATUS_WAMID = "wamid.HBgLNTE5ODc2NTQzMjEVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"


def payload(name: str) -> bytes:
    """The bytes of testdata/meta_<name>.json, exactly as stored."""
    return (TESTDATA / f"meta_{name}.json").read_bytes()


def status_payload(name: str, wamid: str) -> bytes:
    """A status webhook from testdata about the message `wamid`."""
    data = json.loads(payload(f"status_{name}"))
    data["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = wamid
    return json.dumps(data).encode()


def meta_config(**overrides: Any) -> dict[str, Any]:
    """Meta's settings as a deployment would set them."""
    return {
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "META_ACCESS_TOKEN": ACCESS_TOKEN,
        "META_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        **overrides,
    }


@pytest.fixture
def graph_api() -> Iterator[FakeGraphAPI]:
    with FakeGraphAPI.running(ACCESS_TOKEN, PHONE_NUMBER_ID) as fake:
        yield fake


@pytest.fixture
def app(
    make_app: AppFactory,
    database: Database,
    redis: Redis,
    redis_url: str,
    clock: FixedClock,
    instance_path: Path,
    graph_api: FakeGraphAPI,
) -> Flask:
    """The conftest app with the Cloud API configured and pointed at the fake Graph API."""
    return make_app(
        {
            "DATABASE": database,
            "REDIS_URL": redis_url,
            "CLOCK": clock,
            "INSTANCE_PATH": str(instance_path),
            "DATABASE_URL": "postgresql+psycopg://nobody@unused.invalid/unused",
            **meta_config(META_API_URL=graph_api.url),
        }
    )


@pytest.fixture
def sender(graph_api: FakeGraphAPI) -> Iterator[MetaSender]:
    """A real sender talking to the fake, with a short read timeout for the hang case."""
    meta_sender = MetaSender(ACCESS_TOKEN, PHONE_NUMBER_ID, graph_api.url, timeout=(2.0, 0.5))
    yield meta_sender
    meta_sender.close()


def post_webhook(client: FlaskClient, body: bytes, signed: str = "valid"):
    """POST `body` to /whatsapp signed as Meta would ("valid"), with another key, or not at all."""
    headers = {"Content-Type": "application/json"}
    if signed == "valid":
        headers["X-Hub-Signature-256"] = signature(body, APP_SECRET)
    elif signed == "wrong":
        headers["X-Hub-Signature-256"] = signature(body, "not-the-app-secret")
    return client.post("/whatsapp", data=body, headers=headers)


def message_log(database: Database) -> list[tuple[str, str, str, str | None, str]]:
    """Every message in the log: (direction, phone, body, provider id, status)."""
    with database.transaction() as session:
        return [
            (m.direction.value, m.phone, m.body, m.provider_id, m.status.value)
            for m in session.scalars(sa.select(Message).order_by(Message.id))
        ]


def outbox_rows(database: Database) -> list[tuple[str, str]]:
    """Every outbox row: (phone, state)."""
    with database.transaction() as session:
        return [
            (item.message.phone, item.state.value)
            for item in session.scalars(sa.select(OutboxItem).order_by(OutboxItem.message_id))
        ]


def add_sent_message(database: Database, wamid: str, phone: str = ROSA) -> int:
    """An outbound WhatsApp message Meta has accepted as `wamid`."""
    with database.transaction() as session:
        message = Message(
            channel=Channel.WHATSAPP,
            direction=Direction.OUT,
            phone=phone,
            body="RECPO: recibo 1234 5678 9012 3456",
            provider_id=wamid,
            status=Status.SENT,
            encoding=Encoding.UNICODE,
            segments=1,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(message)
        session.flush()
        return message.id


# --- the webhook table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    query: str = ""
    body: bytes = b""
    signed: str = "valid"  # "valid", "wrong" or "missing"
    times: int = 1  # sent this many times (Meta retrying)


@dataclass(frozen=True)
class Case:
    label: str
    request: Request
    status: int
    body: str
    logged: tuple[tuple[str, str, str, str | None, str], ...] = ()  # the message log afterwards
    outbox: tuple[tuple[str, str], ...] = ()  # the outbox afterwards
    sent_before: tuple[str, ...] = ()  # wamids of outbound messages already in the log


def _in(phone: str, body: str, wamid: str) -> tuple[str, str, str, str | None, str]:
    return ("in", phone, body, wamid, "received")


def _help_to(phone: str) -> tuple[str, str, str, str | None, str]:
    # What the conversations answer is their business (tests/flows); here: one reply, queued.
    return ("out", phone, ANY, None, "queued")


def _sent_to_rosa(status: str) -> tuple[str, str, str, str | None, str]:
    return ("out", ROSA, "RECPO: recibo 1234 5678 9012 3456", STATUS_WAMID, status)


HANDSHAKE = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"

CASES = [
    Case("handshake", Request("GET", HANDSHAKE), 200, "1158201444"),
    Case(
        "handshake with a wrong token",
        Request("GET", HANDSHAKE.replace(VERIFY_TOKEN, "guess")),
        403,
        "verification failed",
    ),
    Case(
        "handshake without hub.mode",
        Request("GET", HANDSHAKE.removeprefix("hub.mode=subscribe&")),
        403,
        "verification failed",
    ),
    Case(
        "text message",
        Request(body=payload("text")),
        200,
        "",
        logged=(_in(ROSA, "Compra 5 gr", TEXT_WAMID), _help_to(ROSA)),
        outbox=((ROSA, "pending"),),
    ),
    Case(
        "button reply",
        Request(body=payload("button_reply")),
        200,
        "",
        logged=(_in(ROSA, "Sí, confirmo", BUTTON_WAMID), _help_to(ROSA)),
        outbox=((ROSA, "pending"),),
    ),
    Case(
        "list reply",
        Request(body=payload("list_reply")),
        200,
        "",
        logged=(_in(ROSA, "Oro refogado", LIST_WAMID), _help_to(ROSA)),
        outbox=((ROSA, "pending"),),
    ),
    Case(
        "image: an empty text, answered with help",
        Request(body=payload("image")),
        200,
        "",
        logged=(_in(ROSA, "", IMAGE_WAMID), _help_to(ROSA)),
        outbox=((ROSA, "pending"),),
    ),
    Case(
        "two messages in one POST",
        Request(body=payload("two_messages")),
        200,
        "",
        logged=(
            _in(ROSA, "AYUDA", ROSA_WAMID),
            _help_to(ROSA),
            _in(JUAN, "VERIFICAR 1234 5678 9012 3456", JUAN_WAMID),
            _help_to(JUAN),
        ),
        outbox=((ROSA, "pending"), (JUAN, "pending")),
    ),
    Case(
        "delivered status",
        Request(body=payload("status_delivered")),
        200,
        "",
        logged=(_sent_to_rosa("delivered"),),
        sent_before=(STATUS_WAMID,),
    ),
    Case(
        "failed status",
        Request(body=payload("status_failed")),
        200,
        "",
        logged=(_sent_to_rosa("failed"),),
        sent_before=(STATUS_WAMID,),
    ),
    Case("status for a message we never sent", Request(body=payload("status_read")), 200, ""),
    Case(
        "wrong signature",
        Request(body=payload("text"), signed="wrong"),
        403,
        "invalid signature",
    ),
    Case(
        "missing signature",
        Request(body=payload("text"), signed="missing"),
        403,
        "invalid signature",
    ),
    Case(
        "malformed JSON",
        Request(body=payload("text")[:-20]),
        400,
        "malformed payload: body is not JSON",
    ),
    Case(
        "unexpected shape",
        Request(body=payload("unexpected_shape")),
        400,
        "malformed payload: 'messages' is not a list",
    ),
    Case(
        "not a WhatsApp webhook",
        Request(body=b'{"object": "page", "entry": []}'),
        400,
        "malformed payload: not a whatsapp_business_account webhook",
    ),
    Case(
        "duplicate wamid: handled once",
        Request(body=payload("text"), times=2),
        200,
        "",
        logged=(_in(ROSA, "Compra 5 gr", TEXT_WAMID), _help_to(ROSA)),
        outbox=((ROSA, "pending"),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_webhook(case: Case, client: FlaskClient, database: Database) -> None:
    for wamid in case.sent_before:
        add_sent_message(database, wamid)
    for _ in range(case.request.times):
        if case.request.method == "GET":
            response = client.get(f"/whatsapp?{case.request.query}")
        else:
            response = post_webhook(client, case.request.body, case.request.signed)
    assert response.status_code == case.status
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == case.body
    assert message_log(database) == list(case.logged)
    assert outbox_rows(database) == list(case.outbox)


def test_replies_are_handed_to_rq_once_per_new_message(client, database, redis) -> None:
    post_webhook(client, payload("text"))
    post_webhook(client, payload("text"))  # Meta retrying
    with database.transaction() as session:
        reply_id = session.scalars(sa.select(OutboxItem.message_id)).one()
    assert client.application.extensions[EXTENSION_KEY].dispatcher.flush()
    jobs = Queue(QUEUE_NAME, connection=redis).jobs
    assert [job.args for job in jobs] == [([reply_id],)]


def test_failed_status_keeps_the_error(client, database) -> None:
    message_id = add_sent_message(database, STATUS_WAMID)
    post_webhook(client, payload("status_failed"))
    with database.transaction() as session:
        events = session.scalars(
            sa.select(MessageEvent).where(MessageEvent.message_id == message_id)
        ).all()
    assert [(e.status, e.detail) for e in events] == [
        (Status.FAILED, "131047 Re-engagement message")
    ]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", f"/whatsapp?{HANDSHAKE}"), ("POST", "/whatsapp")]
)
def test_channel_is_off_without_an_app_secret(
    method, path, database, redis_url, clock, instance_path, make_app
) -> None:
    app = make_app(
        {
            "DATABASE": database,
            "REDIS_URL": redis_url,
            "CLOCK": clock,
            "INSTANCE_PATH": str(instance_path),
            "DATABASE_URL": "postgresql+psycopg://nobody@unused.invalid/unused",
            **meta_config(META_APP_SECRET=""),
        }
    )
    body = payload("text")
    response = app.test_client().open(
        path,
        method=method,
        data=body if method == "POST" else None,
        headers={"X-Hub-Signature-256": signature(body, APP_SECRET)},
    )
    assert response.status_code == 404
    assert message_log(database) == []


# --- verify and parse -----------------------------------------------------------------------------


class TestSignature:
    @pytest.mark.parametrize(
        ("secret", "body", "expected"),
        [
            (
                "sesame",
                b"hello world",
                "sha256=f39034b29165ec6a5104d9aef27266484ab26c8caa7bca8bcb2dd02e8be61b17",
            ),
            # GitHub's published example for the same header (secret, payload, signature).
            (
                "It's a Secret to Everybody",
                b"Hello, World!",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
        ],
    )
    def test_published_vectors(self, secret: str, body: bytes, expected: str) -> None:
        assert signature(body, secret) == expected
        assert verify_signature(body, expected, secret)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "f39034b29165ec6a5104d9aef27266484ab26c8caa7bca8bcb2dd02e8be61b17",  # no sha256=
            "sha1=f39034b29165ec6a5104d9aef27266484ab26c8caa7bca8bcb2dd02e8be61b17",
            "sha256=f39034b29165ec6a5104d9aef27266484ab26c8caa7bca8bcb2dd02e8be61b18",
            "sha256=F39034B29165EC6A5104D9AEF27266484AB26C8CAA7BCA8BCB2DD02E8BE61B17",
        ],
    )
    def test_anything_else_is_refused(self, header: str | None) -> None:
        assert not verify_signature(b"hello world", header, "sesame")

    def test_the_body_must_be_the_signed_bytes(self) -> None:
        body = payload("text")
        reserialised = json.dumps(json.loads(body)).encode()
        assert not verify_signature(reserialised, signature(body, APP_SECRET), APP_SECRET)


PARSED = [
    ("text", [(ROSA, "Compra 5 gr", None, TEXT_WAMID)]),
    ("button_reply", [(ROSA, "Sí, confirmo", "confirm:482913", BUTTON_WAMID)]),
    ("list_reply", [(ROSA, "Oro refogado", "material:refogado", LIST_WAMID)]),
    ("image", [(ROSA, "", None, IMAGE_WAMID)]),
    (
        "two_messages",
        [
            (ROSA, "AYUDA", None, ROSA_WAMID),
            (JUAN, "VERIFICAR 1234 5678 9012 3456", None, JUAN_WAMID),
        ],
    ),
]


class TestParse:
    @pytest.mark.parametrize(("name", "expected"), PARSED, ids=[name for name, _ in PARSED])
    def test_messages(self, name: str, expected: list[tuple]) -> None:
        webhook = parse(json.loads(payload(name)), NOW)
        assert [(m.phone, m.text, m.choice_id, m.provider_id) for m in webhook.messages] == expected
        assert all(m.channel is Channel.WHATSAPP for m in webhook.messages)
        assert all(m.received_at == NOW for m in webhook.messages)
        assert webhook.statuses == []

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("sent", StatusUpdate(STATUS_WAMID, Status.SENT, None)),
            ("delivered", StatusUpdate(STATUS_WAMID, Status.DELIVERED, None)),
            ("read", StatusUpdate(STATUS_WAMID, Status.READ, None)),
            (
                "failed",
                StatusUpdate(STATUS_WAMID, Status.FAILED, "131047 Re-engagement message"),
            ),
        ],
    )
    def test_statuses(self, name: str, expected: StatusUpdate) -> None:
        webhook = parse(json.loads(payload(f"status_{name}")), NOW)
        assert webhook.statuses == [expected]
        assert webhook.messages == []

    def test_other_fields_are_ignored(self) -> None:
        data = json.loads(payload("text"))
        data["entry"][0]["changes"][0]["field"] = "message_template_status_update"
        assert parse(data, NOW).messages == []


# --- render and send ------------------------------------------------------------------------------


def outbound(text: str = "¿Confirma la venta 482913?", choices: tuple[Choice, ...] = ()):
    return OutboundMessage(7, Channel.WHATSAPP, ROSA, text, choices)


YES_NO = (Choice("confirm:482913", "Sí"), Choice("dispute:482913", "No"))
MATERIALS = tuple(
    Choice(f"material:{key}", title)
    for key, title in [
        ("mineral", "Mineral aurífero"),
        ("relave", "Relave"),
        ("mercurio", "Mercurio"),
        ("carbon", "Carbón activado"),
        ("refogado", "Oro refogado"),
        ("dore", "Oro doré"),
        ("refinado", "Oro refinado"),
    ]
)
ELEVEN = tuple(Choice(f"n{i}", f"Opción {i}") for i in range(1, 12))
BASE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "51987654321"}


def _text_request(body: str) -> dict[str, Any]:
    return BASE | {"type": "text", "text": {"body": body, "preview_url": False}}


def _buttons_request(body: str, *buttons: tuple[str, str]) -> dict[str, Any]:
    return BASE | {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]
            },
        },
    }


def _list_request(body: str, *rows: tuple[str, str]) -> dict[str, Any]:
    return BASE | {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": translate(DEFAULT_LOCALE, LIST_BUTTON),
                "sections": [{"rows": [{"id": i, "title": t} for i, t in rows]}],
            },
        },
    }


QUESTION = "¿Confirma la venta 482913?"
RENDERED = [
    ("text", outbound("Hola"), _text_request("Hola")),
    (
        "1-3 choices: reply buttons",
        outbound(choices=YES_NO),
        _buttons_request(QUESTION, ("confirm:482913", "Sí"), ("dispute:482913", "No")),
    ),
    (
        "4-10 choices: a list",
        outbound("Material:", MATERIALS),
        _list_request("Material:", *[(c.id, c.title) for c in MATERIALS]),
    ),
    (
        "more than 10 choices: text, one line per choice",
        outbound("Elija:", ELEVEN),
        _text_request("Elija:\n" + "\n".join(f"n{i} Opción {i}" for i in range(1, 12))),
    ),
    (
        "button titles shortened to 20 characters",
        outbound(choices=(Choice("a", "Confirmar la compra de oro"), Choice("b", "No"))),
        _buttons_request(QUESTION, ("a", "Confirmar la compra…"), ("b", "No")),
    ),
    (
        "row titles shortened to 24 characters",
        outbound("Material:", (*MATERIALS[:3], Choice("x", "Oro doré de la planta de Chala"))),
        _list_request(
            "Material:",
            *[(c.id, c.title) for c in MATERIALS[:3]],
            ("x", "Oro doré de la planta d…"),
        ),
    ),
    (
        "titles that shorten alike: numbered text",
        outbound(
            choices=(
                Choice("a", "Confirmar la compra de oro"),
                Choice("b", "Confirmar la compra de relave"),
            )
        ),
        _text_request(f"{QUESTION}\na Confirmar la compra de oro\nb Confirmar la compra de relave"),
    ),
    (
        "repeated ids: numbered text",
        outbound(choices=(Choice("a", "Sí"), Choice("a", "No"))),
        _text_request(f"{QUESTION}\na Sí\na No"),
    ),
    (
        "an empty title: numbered text",
        outbound(choices=(Choice("a", "Sí"), Choice("b", " "))),
        _text_request(f"{QUESTION}\na Sí\nb  "),
    ),
    (
        "a body too long for interactive: numbered text",
        outbound("x" * 1025, YES_NO),
        _text_request("x" * 1025 + "\nconfirm:482913 Sí\ndispute:482913 No"),
    ),
]


class TestSend:
    @pytest.mark.parametrize(
        ("label", "message", "expected"), RENDERED, ids=[label for label, _, _ in RENDERED]
    )
    def test_request_body(self, label, message, expected, sender, graph_api) -> None:
        wamid = sender.send(message)
        [recorded] = graph_api.requests
        assert recorded.body == expected
        assert wamid == graph_api.sent[0]

    def test_the_list_button_speaks_the_phones_language(self, sender, graph_api) -> None:
        message = replace(outbound("Material:", MATERIALS), locale="qu")
        sender.send(message)
        [recorded] = graph_api.requests
        label = recorded.body["interactive"]["action"]["button"]
        assert label == translate("qu", LIST_BUTTON) != translate(DEFAULT_LOCALE, LIST_BUTTON)

    def test_the_outbox_hands_the_sender_that_language(self, database, clock) -> None:
        # A phone that chose Quechua (IDIOMA, 2) is sent a list: its message carries "qu".
        for n, text in enumerate(("IDIOMA", "2")):
            receive(
                database,
                Conversations(),
                Inbound(Channel.WHATSAPP, ROSA, text, f"wamid.lang{n}", clock.now()),
            )
        with database.transaction() as session:
            message = Message(
                channel=Channel.WHATSAPP,
                direction=Direction.OUT,
                phone=ROSA,
                body="Material:",
                status=Status.QUEUED,
                encoding=Encoding.UNICODE,
                segments=1,
                choices=json.dumps([{"id": c.id, "title": c.title} for c in MATERIALS]),
                created_at=clock.now(),
                updated_at=clock.now(),
            )
            session.add(message)
            session.flush()
            session.add(
                OutboxItem(
                    message_id=message.id,
                    state=OutboxState.PENDING,
                    attempts=0,
                    next_attempt_at=clock.now(),
                    created_at=clock.now(),
                )
            )
        claimed = outbox.claim(database, message.id, clock.now())
        assert claimed is not None and claimed.locale == "qu"
        assert claimed.choices == MATERIALS

    def test_request_line_and_token(self, sender, graph_api) -> None:
        sender.send(outbound("Hola"))
        [recorded] = graph_api.requests
        assert recorded.path == f"/{API_VERSION}/{PHONE_NUMBER_ID}/messages"
        assert recorded.authorization == f"Bearer {ACCESS_TOKEN}"

    @pytest.mark.parametrize(
        ("failure", "error_type", "reason"),
        [
            (meta.SERVER_ERROR, RetryableSendError, "HTTP 500"),
            (meta.RATE_LIMITED, RetryableSendError, "error 130429"),
            (meta.PAIR_RATE_LIMITED, RetryableSendError, "error 131056"),
            (meta.SPAM_RATE_LIMITED, RetryableSendError, "error 131048"),
            (meta.ACCOUNT_RATE_LIMITED, RetryableSendError, "error 80007"),
            (meta.APP_RATE_LIMITED, RetryableSendError, "error 4:"),
            (meta.OUTSIDE_WINDOW, WindowClosedError, "24-hour customer-service window"),
            (meta.UNDELIVERABLE, PermanentSendError, "error 131026"),
            (meta.NOT_ALLOWED, PermanentSendError, "error 131030"),
        ],
        ids=lambda value: value.message if isinstance(value, meta.GraphError) else None,
    )
    def test_errors_are_typed(self, failure, error_type, reason, sender, graph_api) -> None:
        graph_api.fail(failure)
        with pytest.raises(SendError) as raised:
            sender.send(outbound())
        assert type(raised.value) is error_type
        assert reason in str(raised.value)
        assert_no_secrets(str(raised.value))

    def test_a_wrong_token_is_permanent(self, graph_api) -> None:
        wrong = MetaSender("EAAG-revoked", PHONE_NUMBER_ID, graph_api.url)
        with pytest.raises(PermanentSendError, match="HTTP 401, error 190"):
            wrong.send(outbound())
        wrong.close()

    def test_a_hang_past_the_timeout_is_retryable(self, sender, graph_api) -> None:
        graph_api.hang(10)
        with pytest.raises(RetryableSendError, match="timeout"):
            sender.send(outbound())

    def test_no_server_is_retryable(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        nobody = MetaSender(ACCESS_TOKEN, PHONE_NUMBER_ID, f"http://127.0.0.1:{port}")
        with pytest.raises(RetryableSendError, match="ConnectionError") as raised:
            nobody.send(outbound())
        assert_no_secrets(str(raised.value))
        nobody.close()

    def test_the_token_is_not_in_the_repr(self, sender) -> None:
        assert ACCESS_TOKEN not in repr(sender)


class TestFromSettings:
    def settings(self, instance_path: Path, **env: str) -> Settings:
        return Settings.from_env({"SECRET_KEY": "s", "RECEIPT_SECRET": "r", **env}, instance_path)

    def test_needs_token_and_phone_number_id(self, instance_path) -> None:
        assert MetaSender.from_settings(self.settings(instance_path)) is None
        only_token = self.settings(instance_path, META_ACCESS_TOKEN=ACCESS_TOKEN)
        assert MetaSender.from_settings(only_token) is None
        only_id = self.settings(instance_path, META_PHONE_NUMBER_ID=PHONE_NUMBER_ID)
        assert MetaSender.from_settings(only_id) is None

    def test_graph_url_by_default_or_from_meta_api_url(self, instance_path) -> None:
        env = {"META_ACCESS_TOKEN": ACCESS_TOKEN, "META_PHONE_NUMBER_ID": PHONE_NUMBER_ID}
        default = MetaSender.from_settings(self.settings(instance_path, **env))
        assert default.url == f"{DEFAULT_API_URL}/{API_VERSION}/{PHONE_NUMBER_ID}/messages"
        local = self.settings(instance_path, META_API_URL="http://127.0.0.1:9/", **env)
        assert MetaSender.from_settings(local).url == (
            f"http://127.0.0.1:9/{API_VERSION}/{PHONE_NUMBER_ID}/messages"
        )


# --- end to end -----------------------------------------------------------------------------------


def outbound_row(database: Database) -> Message:
    """The one WhatsApp reply in the log."""
    with database.transaction() as session:
        return session.scalars(
            sa.select(Message).where(
                Message.direction == Direction.OUT, Message.channel == Channel.WHATSAPP
            )
        ).one()


def events_of(database: Database, message_id: int) -> list[tuple[Status, str | None]]:
    with database.transaction() as session:
        return [
            (e.status, e.detail)
            for e in session.scalars(
                sa.select(MessageEvent)
                .where(MessageEvent.message_id == message_id)
                .order_by(MessageEvent.id)
            )
        ]


class TestEndToEnd:
    def test_reply_is_sent_through_meta_and_statuses_only_move_forward(
        self, client, database, clock, sender, graph_api
    ) -> None:
        assert post_webhook(client, payload("text")).status_code == 200
        reply = outbound_row(database)

        result = send_item(database, {Channel.WHATSAPP: sender}, reply.id, clock)

        assert result.outcome == "sent"
        [recorded] = graph_api.requests
        assert recorded.body == _text_request(reply.body)
        [wamid] = graph_api.sent
        assert outbound_row(database).provider_id == wamid
        for name, expected in [
            ("delivered", Status.DELIVERED),
            ("read", Status.READ),
            ("sent", Status.READ),  # late: recorded, but the message does not move back
        ]:
            clock.advance(dt.timedelta(seconds=2))
            assert post_webhook(client, status_payload(name, wamid)).status_code == 200
            assert outbound_row(database).status is expected
        assert events_of(database, reply.id) == [
            (Status.QUEUED, None),
            (Status.SENT, "meta"),
            (Status.DELIVERED, None),
            (Status.READ, None),
            (Status.SENT, None),
        ]

    def test_rate_limit_is_retried_then_sent(self, client, database, clock, sender, graph_api):
        post_webhook(client, payload("button_reply"))
        reply = outbound_row(database)
        graph_api.fail(meta.RATE_LIMITED)

        first = send_item(database, {Channel.WHATSAPP: sender}, reply.id, clock)
        assert first.outcome == "retry"
        clock.set(first.retry_at)
        second = send_item(database, {Channel.WHATSAPP: sender}, reply.id, clock)

        assert second.outcome == "sent"
        assert len(graph_api.requests) == 2
        assert outbound_row(database).provider_id == graph_api.sent[0]

    def test_outside_the_window_falls_back_to_sms(
        self, client, database, clock, sender, graph_api
    ) -> None:
        post_webhook(client, payload("image"))
        reply = outbound_row(database)
        graph_api.fail(meta.OUTSIDE_WINDOW)

        result = send_item(database, {Channel.WHATSAPP: sender}, reply.id, clock)

        assert result.outcome == "fallback"
        assert outbound_row(database).status is Status.FAILED
        with database.transaction() as session:
            last_error = session.get(OutboxItem, reply.id).last_error
            sms = session.get(Message, result.fallback_id)
            assert (sms.channel, sms.phone, sms.status) == (Channel.SMS, ROSA, Status.QUEUED)
        assert "24-hour customer-service window (error 131047)" in last_error


def assert_no_secrets(text: str) -> None:
    for secret in (ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, "51987654321", "987654321"):
        assert secret not in text


def test_logs_carry_no_secrets_or_full_phone_numbers(
    client, database, clock, sender, graph_api, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    client.get(f"/whatsapp?{HANDSHAKE}")
    client.get(f"/whatsapp?{HANDSHAKE.replace(VERIFY_TOKEN, 'guess')}")
    post_webhook(client, payload("text"), signed="wrong")
    post_webhook(client, payload("text"))
    reply = outbound_row(database)
    graph_api.fail(meta.UNDELIVERABLE)
    send_item(database, {Channel.WHATSAPP: sender}, reply.id, clock)
    assert "inbound whatsapp message" in caplog.text  # the path did log
    assert "giving up" in caplog.text
    assert_no_secrets(caplog.text)
