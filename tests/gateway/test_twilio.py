"""Twilio SMS and WhatsApp: a table of webhooks and what each must leave behind, status callbacks,
and the sender speaking to a local fake of Twilio's REST API with the real `twilio` client."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
import sqlalchemy as sa
from rq import Queue
from twilio.request_validator import RequestValidator

from flows.messages import Channel
from gateway import service
from gateway.channels.twilio import TwilioSender, verify
from gateway.dispatch import QUEUE_NAME
from gateway.models import Direction, Encoding, Message, MessageEvent, OutboxItem, Status
from gateway.outbox import send_item
from gateway.senders import (
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    build_senders,
)
from recpo.app import MAX_REQUEST_BYTES
from recpo.config import Settings
from tests.fakes.twilio_api import FakeTwilioAPI

TESTDATA = Path(__file__).parent / "testdata"

ACCOUNT_SID = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
AUTH_TOKEN = "9d4c2f0e8b7a61534d2e1f0a9b8c7d6e"
BASE = "https://recpo.example"
SMS_FROM = "+51923000111"
WHATSAPP_FROM = "whatsapp:+14155238886"
PHONE = "+51987654321"
STRANGER = "+14155550123"
SMS_SID = "SM5f0c1e8b2a9d4c7e8f1a2b3c4d5e6f70"  # in twilio_sms_inbound.txt
WHATSAPP_SID = "SM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"  # in twilio_whatsapp_inbound.txt
OUT_SID = "SM3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f"  # in twilio_status_callback.txt
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def captured(name: str, **overrides: str | None) -> dict[str, str]:
    """The fields of a captured request in testdata; `overrides` replace (None removes) fields."""
    fields = dict(parse_qsl((TESTDATA / name).read_text(), keep_blank_values=True))
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


SMS = captured("twilio_sms_inbound.txt")
WHATSAPP = captured("twilio_whatsapp_inbound.txt")


@dataclass(frozen=True)
class Webhook:
    """One request as it reaches us: path with query, body, headers, and the Host it came to."""

    path: str
    body: bytes
    content_type: str = "application/x-www-form-urlencoded"
    headers: dict[str, str] = field(default_factory=dict)
    base_url: str = "http://10.0.0.7:8000"  # behind a proxy: never the public host

    def post(self, client):
        return client.post(
            self.path,
            data=self.body,
            content_type=self.content_type,
            headers=self.headers,
            base_url=self.base_url,
        )


def signed(
    path: str,
    form: dict[str, str],
    url: str | None = None,
    token: str = AUTH_TOKEN,
    **changes: str,
) -> Webhook:
    """A form webhook signed as Twilio signs it: over `url` (default: our public URL) and `form`.

    `changes` alter fields after signing (a tampered request).
    """
    signature = RequestValidator(token).compute_signature(url or BASE + path, form)
    sent = {**form, **changes}
    return Webhook(path, urlencode(sent).encode(), headers={"X-Twilio-Signature": signature})


def unsigned(path: str, form: dict[str, str]) -> Webhook:
    return Webhook(path, urlencode(form).encode())


def signed_json(path: str, fields: dict[str, str], tamper: bool = False) -> Webhook:
    """A JSON webhook: the body's SHA-256 in the `bodySHA256` query, the URL signed alone."""
    body = json.dumps(fields)
    digest = hashlib.sha256(body.encode()).hexdigest()
    full = f"{path}?bodySHA256={digest}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + full, {})
    if tamper:
        body = body.replace("COMPRA", "VENTA")
    return Webhook(
        full, body.encode(), "application/json", headers={"X-Twilio-Signature": signature}
    )


def spoofed_host(path: str, form: dict[str, str]) -> Webhook:
    """Signed for the Host header it is sent with, as an attacker pointing it at us would."""
    hook = signed(path, form, url="https://evil.example" + path)
    return Webhook(hook.path, hook.body, headers=hook.headers, base_url="https://evil.example")


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    request: Webhook
    status: int
    body: str  # the whole body for 200 and 403; its start otherwise
    inbound: tuple[tuple[Channel, str, str, str], ...] = ()  # (channel, phone, text, sid) logged
    outbox: tuple[tuple[Channel, str], ...] = ()  # (channel, phone) of outbox rows, in order
    before: tuple[Webhook, ...] = ()  # earlier requests of the same test


HELLO = "Hola, quiero registrar una COMPRA"  # normalised from `Hola,  quiero ...`
SMS_LOGGED = (Channel.SMS, PHONE, HELLO, SMS_SID)
SMS_REPLY = (Channel.SMS, PHONE)
FORBIDDEN = "invalid signature\n"

CASES = [
    Case(
        "SMS as Twilio sends it",
        signed("/twilio/sms", SMS),
        200,
        TWIML,
        inbound=(SMS_LOGGED,),
        outbox=(SMS_REPLY,),
    ),
    Case(
        "WhatsApp as Twilio sends it: the whatsapp: prefix is stripped",
        signed("/twilio/whatsapp", WHATSAPP),
        200,
        TWIML,
        inbound=((Channel.WHATSAPP, PHONE, "Allin p'unchay, VENTA", WHATSAPP_SID),),
        outbox=((Channel.WHATSAPP, PHONE),),
    ),
    Case(
        "unknown sender gets the help reply",
        signed("/twilio/sms", {**SMS, "From": STRANGER, "Body": "hola"}),
        200,
        TWIML,
        inbound=((Channel.SMS, STRANGER, "hola", SMS_SID),),
        outbox=((Channel.SMS, STRANGER),),
    ),
    Case(
        "a media-only message has empty text",
        signed("/twilio/sms", {**SMS, "Body": "", "NumMedia": "1"}),
        200,
        TWIML,
        inbound=((Channel.SMS, PHONE, "", SMS_SID),),
        outbox=(SMS_REPLY,),
    ),
    Case(
        "the query string is part of the signed URL",
        signed("/twilio/sms?region=madre-de-dios", SMS),
        200,
        TWIML,
        inbound=(SMS_LOGGED,),
        outbox=(SMS_REPLY,),
    ),
    Case(
        "signed with the explicit default port :443",
        signed("/twilio/sms", SMS, url="https://recpo.example:443/twilio/sms"),
        200,
        TWIML,
        inbound=(SMS_LOGGED,),
        outbox=(SMS_REPLY,),
    ),
    Case(
        "JSON body signed through bodySHA256",
        signed_json("/twilio/sms", SMS),
        200,
        TWIML,
        inbound=(SMS_LOGGED,),
        outbox=(SMS_REPLY,),
    ),
    Case(
        "a retried webhook (same MessageSid) is answered and not processed again",
        signed("/twilio/sms", SMS),
        200,
        TWIML,
        before=(signed("/twilio/sms", SMS),),
        inbound=(SMS_LOGGED,),
        outbox=(SMS_REPLY,),
    ),
    Case("missing signature", unsigned("/twilio/sms", SMS), 403, FORBIDDEN),
    Case(
        "signature made with another token",
        signed("/twilio/sms", SMS, token="0" * 32),
        403,
        FORBIDDEN,
    ),
    Case(
        "a field changed after signing",
        signed("/twilio/sms", SMS, Body="VENTA 20000000001 oro 1kg - 1"),
        403,
        FORBIDDEN,
    ),
    Case(
        "signed for the Host header instead of our public URL",
        spoofed_host("/twilio/sms", SMS),
        403,
        FORBIDDEN,
    ),
    Case(
        "signed without the query string it was sent with",
        signed("/twilio/sms?region=puno", SMS, url=BASE + "/twilio/sms"),
        403,
        FORBIDDEN,
    ),
    Case(
        "signed for the SMS endpoint, sent to the WhatsApp one",
        replace(signed("/twilio/sms", WHATSAPP), path="/twilio/whatsapp"),
        403,
        FORBIDDEN,
    ),
    Case(
        "JSON body changed after signing",
        signed_json("/twilio/sms", SMS, tamper=True),
        403,
        FORBIDDEN,
    ),
    Case(
        "missing From",
        signed("/twilio/sms", captured("twilio_sms_inbound.txt", From=None)),
        400,
        "missing From",
    ),
    Case(
        "missing MessageSid",
        signed("/twilio/sms", captured("twilio_sms_inbound.txt", MessageSid=None)),
        400,
        "missing MessageSid",
    ),
    Case(
        "From is not a phone number",
        signed("/twilio/sms", {**SMS, "From": "RECPO"}),
        400,
        "From is not a mobile number",
    ),
    Case(
        "From is a landline",
        signed("/twilio/sms", {**SMS, "From": "+5114567890"}),
        400,
        "From is not a mobile number",
    ),
    Case(
        "a WhatsApp address on the SMS endpoint",
        signed("/twilio/sms", WHATSAPP),
        400,
        "From is not a mobile number",
    ),
    Case(
        "a phone number without whatsapp: on the WhatsApp endpoint",
        signed("/twilio/whatsapp", SMS),
        400,
        "From is not a WhatsApp address",
    ),
    Case(
        "a MessageSid that is not a Twilio SID",
        signed("/twilio/sms", {**SMS, "MessageSid": "SM 1; DROP"}),
        400,
        "MessageSid must",
    ),
    Case(
        "body over the size limit",
        signed("/twilio/sms", {**SMS, "Body": "x" * MAX_REQUEST_BYTES}),
        413,
        "",
    ),
]


@pytest.fixture
def fake():
    """Twilio's REST API, faked on 127.0.0.1."""
    with FakeTwilioAPI(ACCOUNT_SID, AUTH_TOKEN) as api:
        yield api


def twilio_config(database, redis_url, clock, instance_path, **overrides: str) -> dict:
    """The conftest app's configuration, with the Twilio channel switched on."""
    return {
        "DATABASE": database,
        "REDIS_URL": redis_url,
        "CLOCK": clock,
        "INSTANCE_PATH": str(instance_path),
        "DATABASE_URL": "postgresql+psycopg://nobody@unused.invalid/unused",
        "PUBLIC_BASE_URL": BASE,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "TWILIO_API_URL": "",
        "META_APP_SECRET": "",
        "META_ACCESS_TOKEN": "",
        **overrides,
    }


@pytest.fixture
def twilio_app(make_app, database, redis, redis_url, clock, instance_path, fake):
    """The app with Twilio configured; replies are enqueued on the test Redis, never sent."""
    return make_app(
        twilio_config(database, redis_url, clock, instance_path, TWILIO_API_URL=fake.url)
    )


@pytest.fixture
def twilio(twilio_app):
    return twilio_app.test_client()


def _messages(database, direction: Direction) -> list[Message]:
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(Message).where(Message.direction == direction).order_by(Message.id)
            )
        )


def _outbox(database) -> list[Message]:
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                sa.select(Message).join(OutboxItem, OutboxItem.message_id == Message.id)
            )
        )


def _jobs(client, redis) -> list:
    """The send jobs in Redis, once the app's relay has enqueued every row it was given."""
    assert client.application.extensions[service.EXTENSION_KEY].dispatcher.flush()
    return Queue(QUEUE_NAME, connection=redis).jobs


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_webhook(twilio, database, redis, case: Case):
    earlier = [hook.post(twilio) for hook in case.before]
    assert [r.status_code for r in earlier] == [200] * len(earlier)

    response = case.request.post(twilio)

    assert response.status_code == case.status
    text = response.get_data(as_text=True)
    if case.status in (200, 403):
        assert text == case.body
    else:
        assert text.startswith(case.body)
    if case.status == 200:
        assert response.mimetype == "text/xml"
    elif case.status in (400, 403):
        assert response.mimetype == "text/plain"

    inbound = _messages(database, Direction.IN)
    assert [(m.channel, m.phone, m.body, m.provider_id) for m in inbound] == list(case.inbound)
    assert all(m.status is Status.RECEIVED for m in inbound)
    replies = _outbox(database)
    assert [(m.channel, m.phone) for m in replies] == list(case.outbox)
    assert all("COMPRA" in m.body and m.status is Status.QUEUED for m in replies)
    assert [m.in_reply_to for m in replies] == [m.id for m in inbound]
    # Every reply is handed to RQ, once.
    assert [i for job in _jobs(twilio, redis) for i in job.args[0]] == [m.id for m in replies]


class TestChannelOff:
    def test_without_an_auth_token_every_endpoint_is_404(
        self, database, redis, redis_url, clock, instance_path, make_app
    ):
        config = twilio_config(database, redis_url, clock, instance_path, TWILIO_AUTH_TOKEN="")
        client = make_app(config).test_client()
        for path, form in [
            ("/twilio/sms", SMS),
            ("/twilio/whatsapp", WHATSAPP),
            ("/twilio/status", captured("twilio_status_callback.txt")),
        ]:
            response = signed(path, form).post(client)
            assert response.status_code == 404
            assert "not configured" in response.get_data(as_text=True)
        assert _messages(database, Direction.IN) == []


class TestVerify:
    """`verify` against the signature Twilio publishes in its webhook security documentation."""

    URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
    PARAMS = {  # noqa: RUF012 - read only
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

    def test_published_vector(self):
        assert verify("12345", self.URL, self.PARAMS, self.SIGNATURE)

    def test_published_vector_with_the_default_port(self):
        url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
        assert verify("12345", url, self.PARAMS, self.SIGNATURE)

    def test_signed_with_the_default_port_that_the_configured_url_leaves_out(self):
        signed = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
        signature = RequestValidator("12345").compute_signature(signed, self.PARAMS)
        assert signature != self.SIGNATURE
        assert verify("12345", self.URL, self.PARAMS, signature)

    @pytest.mark.parametrize(
        ("token", "url", "params", "signature"),
        [
            ("12346", URL, PARAMS, SIGNATURE),
            ("12345", URL.replace("foo=1", "foo=2"), PARAMS, SIGNATURE),
            ("12345", "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, SIGNATURE),
            ("12345", URL, {**PARAMS, "Digits": "1235"}, SIGNATURE),
            ("12345", URL, PARAMS, ""),
            ("12345", URL, PARAMS, None),
            ("12345", URL, PARAMS, SIGNATURE[:-1] + "é"),
            ("12345", URL, json.dumps(PARAMS), SIGNATURE),  # a raw body without bodySHA256
        ],
        ids=["token", "query", "scheme", "field", "empty", "none", "not ascii", "raw body"],
    )
    def test_anything_changed_fails(self, token, url, params, signature):
        assert not verify(token, url, params, signature)


# --- status callbacks -----------------------------------------------------------------------------


def _sent(database, clock, channel: Channel = Channel.SMS, sid: str = OUT_SID) -> int:
    """An outbound message the provider accepted as `sid`; return its id."""
    now = clock.now()
    with database.transaction() as session:
        message = Message(
            channel=channel,
            direction=Direction.OUT,
            phone=PHONE,
            body="RECPO: ...",
            provider_id=sid,
            status=Status.SENT,
            encoding=Encoding.GSM7,
            segments=1,
            created_at=now,
            updated_at=now,
        )
        session.add(message)
        session.flush()
        return message.id


def _status_of(database, message_id: int) -> tuple[Status, list[tuple[Status, str | None]]]:
    with database.sessionmaker() as session:
        message = session.get(Message, message_id)
        events = session.scalars(
            sa.select(MessageEvent)
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        )
        return message.status, [(e.status, e.detail) for e in events]


def callback(status: str, error: str | None = None, **fields: str) -> Webhook:
    form = captured(
        "twilio_status_callback.txt", MessageStatus=status, SmsStatus=status, ErrorCode=error
    )
    return signed("/twilio/status", {**form, **fields})


@dataclass(frozen=True)
class StatusCase:
    label: str
    callbacks: tuple[Webhook, ...]
    status: Status
    events: tuple[tuple[Status, str | None], ...]


D, S, F, U = Status.DELIVERED, Status.SENT, Status.FAILED, Status.UNDELIVERED

STATUS_CASES = [
    StatusCase("delivered", (callback("delivered"),), D, ((D, None),)),
    StatusCase(
        "sent, delivered, read",
        (callback("sent"), callback("delivered"), callback("read")),
        Status.READ,
        ((S, None), (D, None), (Status.READ, None)),
    ),
    StatusCase(
        "a late sent after delivered stays delivered",
        (callback("delivered"), callback("sent")),
        D,
        ((D, None), (S, None)),
    ),
    StatusCase(
        "queued, accepted and sending after sent change nothing",
        (callback("accepted"), callback("queued"), callback("sending")),
        S,
        ((Status.QUEUED, None), (Status.QUEUED, None), (S, None)),
    ),
    StatusCase(
        "failed is final",
        (callback("failed", "30008"), callback("delivered")),
        F,
        ((F, "30008"), (D, None)),
    ),
    StatusCase(
        "undelivered keeps its error code",
        (callback("undelivered", "30003"),),
        U,
        ((U, "30003"),),
    ),
    StatusCase("canceled counts as failed", (callback("canceled"),), F, ((F, None),)),
    StatusCase("a status that is not ours is ignored", (callback("receiving"),), S, ()),
    StatusCase("an unsigned callback changes nothing", (unsigned("/twilio/status", {}),), S, ()),
    StatusCase(
        "another message's callback changes nothing",
        (callback("delivered", MessageSid="SM" + "0" * 32),),
        S,
        (),
    ),
]


@pytest.mark.parametrize("case", STATUS_CASES, ids=[case.label for case in STATUS_CASES])
def test_status_callback(twilio, database, clock, case: StatusCase):
    message_id = _sent(database, clock)

    for hook in case.callbacks:
        clock.advance(dt.timedelta(seconds=5))
        response = hook.post(twilio)
        assert response.status_code in (200, 403)

    assert _status_of(database, message_id) == (case.status, list(case.events))


class TestStatusCallbacks:
    def test_answered_with_empty_twiml(self, twilio, database, clock):
        _sent(database, clock)
        response = callback("delivered").post(twilio)
        assert (response.status_code, response.get_data(as_text=True)) == (200, TWIML)

    def test_unsigned_is_403(self, twilio, database, clock):
        message_id = _sent(database, clock)
        form = captured("twilio_status_callback.txt")
        assert unsigned("/twilio/status", form).post(twilio).status_code == 403
        assert _status_of(database, message_id) == (Status.SENT, [])

    def test_missing_message_status_is_400(self, twilio, database, clock):
        _sent(database, clock)
        form = captured("twilio_status_callback.txt", MessageStatus=None)
        response = signed("/twilio/status", form).post(twilio)
        assert response.status_code == 400
        assert "missing MessageStatus" in response.get_data(as_text=True)

    def test_whatsapp_callback_updates_the_whatsapp_message(self, twilio, database, clock):
        message_id = _sent(database, clock, Channel.WHATSAPP)
        hook = callback("read", To="whatsapp:" + PHONE, From=WHATSAPP_FROM)
        assert hook.post(twilio).status_code == 200
        assert _status_of(database, message_id)[0] is Status.READ

    def test_notice_to_a_ussd_user_sent_as_sms(self, twilio, database, clock):
        message_id = _sent(database, clock, Channel.USSD)
        assert callback("delivered").post(twilio).status_code == 200
        assert _status_of(database, message_id)[0] is Status.DELIVERED


# --- the sender -----------------------------------------------------------------------------------


def _sender(fake: FakeTwilioAPI, token: str = AUTH_TOKEN, timeout: float = 0.5) -> TwilioSender:
    return TwilioSender(
        ACCOUNT_SID,
        token,
        status_callback=BASE + "/twilio/status",
        sms_from=SMS_FROM,
        whatsapp_from=WHATSAPP_FROM,
        api_url=fake.url,
        timeout=timeout,
    )


@pytest.fixture
def sender(fake):
    twilio_sender = _sender(fake)
    yield twilio_sender
    twilio_sender.close()


def outbound(
    channel: Channel = Channel.SMS, text: str = "Compra registrada: código 482913"
) -> OutboundMessage:
    return OutboundMessage(7, channel, PHONE, text)


class TestTwilioSender:
    def test_sms_as_twilio_expects_it(self, sender, fake):
        sid = sender.send(outbound())

        (request,) = fake.requests
        assert request.method == "POST"
        assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.field("To") == PHONE
        assert request.field("From") == SMS_FROM
        assert request.field("Body") == "Compra registrada: código 482913"
        assert request.field("StatusCallback") == "https://recpo.example/twilio/status"
        assert sid == fake.created[0]["sid"]
        assert sid.startswith("SM") and len(sid) == 34

    def test_whatsapp_goes_between_whatsapp_addresses(self, sender, fake):
        sender.send(outbound(Channel.WHATSAPP))
        (request,) = fake.requests
        assert request.field("To") == "whatsapp:" + PHONE
        assert request.field("From") == WHATSAPP_FROM

    def test_a_notice_to_a_ussd_user_goes_as_sms(self, sender, fake):
        sender.send(outbound(Channel.USSD))
        assert fake.requests[0].field("From") == SMS_FROM

    @pytest.mark.parametrize(
        ("status", "code", "error"),
        [
            (500, 20500, RetryableSendError),
            (503, None, RetryableSendError),  # an edge proxy's page, no Twilio body
            (429, 20429, RetryableSendError),
            (429, None, RetryableSendError),
            (400, 14107, RetryableSendError),
            (400, 30022, RetryableSendError),
            (400, 30001, RetryableSendError),
            (400, 21211, PermanentSendError),
            (400, 21614, PermanentSendError),
            (400, 21217, PermanentSendError),
            (400, 21610, PermanentSendError),
            (404, 20404, PermanentSendError),
        ],
    )
    def test_error_answers(self, sender, fake, status, code, error):
        fake.fail_next(status, code, f"The 'To' number {PHONE} is not valid")
        with pytest.raises(error) as raised:
            sender.send(outbound())
        reason = str(raised.value)
        assert str(code or status) in reason
        assert PHONE not in reason and PHONE[3:] not in reason
        assert AUTH_TOKEN not in reason

    def test_wrong_credentials_are_permanent(self, fake):
        wrong = _sender(fake, token="0" * 32)
        try:
            with pytest.raises(PermanentSendError, match="20003"):
                wrong.send(outbound())
        finally:
            wrong.close()
        assert fake.requests[0].auth == (ACCOUNT_SID, "0" * 32)

    def test_timeout_is_retryable(self, sender, fake):
        fake.hang_next(3.0)
        started = time.monotonic()
        with pytest.raises(RetryableSendError, match="no answer in time"):
            sender.send(outbound())
        assert time.monotonic() - started < 2.0
        assert sender.send(outbound()).startswith("SM")  # the next one goes through

    def test_unreachable_api_is_retryable(self, fake):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        unreachable = TwilioSender(
            ACCOUNT_SID,
            AUTH_TOKEN,
            status_callback=BASE + "/twilio/status",
            sms_from=SMS_FROM,
            api_url=f"http://127.0.0.1:{port}",
            timeout=0.5,
        )
        try:
            with pytest.raises(RetryableSendError, match="ConnectionError"):
                unreachable.send(outbound())
        finally:
            unreachable.close()

    def test_library_edge_variables_do_not_redirect_it(self, fake, monkeypatch):
        monkeypatch.setenv("TWILIO_EDGE", "sydney")
        monkeypatch.setenv("TWILIO_REGION", "au1")
        regional = _sender(fake)
        try:
            assert regional.send(outbound()).startswith("SM")
        finally:
            regional.close()

    def test_no_whatsapp_sender_configured_is_permanent(self, fake):
        sms_only = TwilioSender(
            ACCOUNT_SID,
            AUTH_TOKEN,
            status_callback=BASE + "/twilio/status",
            sms_from=SMS_FROM,
            api_url=fake.url,
        )
        with pytest.raises(PermanentSendError, match="no sender number"):
            sms_only.send(outbound(Channel.WHATSAPP))
        sms_only.close()
        assert fake.requests == []


class TestFromSettings:
    def _settings(self, instance_path, **env: str) -> Settings:
        base = {"SECRET_KEY": "s", "RECEIPT_SECRET": "r", "PUBLIC_BASE_URL": BASE + "/"}
        return Settings.from_env({**base, **env}, instance_path)

    def test_off_without_credentials(self, instance_path):
        assert TwilioSender.from_settings(self._settings(instance_path)) is None
        only_sid = self._settings(instance_path, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
        assert TwilioSender.from_settings(only_sid) is None
        only_token = self._settings(instance_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN)
        assert TwilioSender.from_settings(only_token) is None

    def test_configured_sender_reaches_the_api_url(self, instance_path, fake):
        settings = self._settings(
            instance_path,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_SMS_FROM=SMS_FROM,
            TWILIO_WHATSAPP_FROM=WHATSAPP_FROM,
            TWILIO_API_URL=fake.url + "/",
        )
        senders = build_senders(settings)
        twilio_sender = senders[Channel.SMS]
        assert isinstance(twilio_sender, TwilioSender)
        assert senders[Channel.WHATSAPP] is twilio_sender
        assert senders[Channel.USSD] is twilio_sender
        try:
            twilio_sender.send(outbound())
        finally:
            twilio_sender.close()
        assert fake.requests[0].field("StatusCallback") == "https://recpo.example/twilio/status"


# --- end to end -----------------------------------------------------------------------------------


def test_webhook_to_outbox_to_twilio_and_back(twilio, twilio_app, database, redis, clock, fake):
    assert signed("/twilio/sms", SMS).post(twilio).status_code == 200
    (job,) = _jobs(twilio, redis)
    (message_id,) = job.args[0]

    settings = twilio_app.extensions[service.EXTENSION_KEY].settings
    twilio_sender = TwilioSender.from_settings(settings)
    assert twilio_sender is not None
    senders = {channel: twilio_sender for channel in Channel}
    try:
        fake.fail_next(500, 20500)
        first = send_item(database, senders, message_id, clock)
        assert first.outcome == "retry"
        clock.set(first.retry_at)
        assert send_item(database, senders, message_id, clock).outcome == "sent"
    finally:
        twilio_sender.close()

    (reply,) = _outbox(database)
    request = fake.requests[-1]
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert (request.field("To"), request.field("From")) == (PHONE, SMS_FROM)
    assert request.field("Body") == reply.body
    assert request.field("StatusCallback") == "https://recpo.example/twilio/status"
    assert reply.status is Status.SENT
    assert reply.provider_id == fake.created[-1]["sid"]

    clock.advance(dt.timedelta(seconds=3))
    delivered = callback("delivered", MessageSid=reply.provider_id, SmsSid=reply.provider_id)
    assert delivered.post(twilio).status_code == 200
    status, events = _status_of(database, message_id)
    assert status is Status.DELIVERED
    assert events == [(Status.QUEUED, None), (Status.SENT, "twilio"), (Status.DELIVERED, None)]


def test_no_secret_or_phone_number_in_the_logs(twilio, database, clock, fake, caplog):
    caplog.set_level(logging.DEBUG)
    signed("/twilio/sms", SMS).post(twilio)
    signed("/twilio/sms", SMS, token="0" * 32).post(twilio)
    (reply,) = _outbox(database)
    twilio_sender = _sender(fake)
    try:
        send_item(database, dict.fromkeys(Channel, twilio_sender), reply.id, clock)
        fake.fail_next(400, 21211, f"Invalid 'To' Phone Number: {PHONE}")
        with pytest.raises(PermanentSendError):
            twilio_sender.send(outbound())
    finally:
        twilio_sender.close()

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "twilio" in text  # the channel did log
    assert AUTH_TOKEN not in text
    assert PHONE[3:] not in text  # not even without the country code
