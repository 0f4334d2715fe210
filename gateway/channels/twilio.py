"""SMS and WhatsApp through Twilio Programmable Messaging (DESIGN.md §3, §4).

Twilio POSTs every inbound message to `/twilio/sms` or `/twilio/whatsapp` (form-encoded):

    MessageSid=SM0a1b...&AccountSid=AC...&From=%2B51987654321&To=%2B51...&Body=COMPRA&NumMedia=0

WhatsApp addresses carry a prefix (`From=whatsapp:+51987654321`). Answers never travel in the
webhook response: it is always empty TwiML, and the replies go through the outbox, which sends them
with the REST API (`TwilioSender`) and asks for status callbacks on `/twilio/status`.

Verbs: `verify` (the `X-Twilio-Signature` over the configured public URL, never the Host header),
`parse` (an `Inbound`), `render` (empty TwiML), `send` (`TwilioSender`). A retried webhook has the
same MessageSid, so the message log recognises it and it is answered without being processed again.

Without TWILIO_AUTH_TOKEN there is nothing to check signatures with: the channel is off and its
endpoints answer 404.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import requests
import sqlalchemy as sa
from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator
from twilio.rest import Client

from flows.messages import Channel, Inbound
from gateway import outbox
from gateway import text as wire
from gateway.models import Message, Status
from gateway.senders import (
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    SendError,
    read_environment_once,
)
from gateway.service import current_gateway
from recpo.config import Settings
from recpo.db import Database
from registry.identifiers import InvalidIdentifier, mask_phone, parse_phone

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__)

PLAIN = "text/plain; charset=utf-8"
TWIML = "text/xml; charset=utf-8"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
WHATSAPP_PREFIX = "whatsapp:"
STATUS_PATH = "/twilio/status"
SEND_TIMEOUT = 10.0  # seconds for one REST call; the outbox lease is far longer
_PROVIDER_ID_LENGTH = 80  # Message.provider_id


class Rejected(Exception):
    """A request refused before it reaches the gateway: HTTP status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- verify ---------------------------------------------------------------------------------------


def verify(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | str,
    signature: str | None,
) -> bool:
    """Return whether `signature` is Twilio's signature of a request to `url` with `params`.

    `url` is the full URL Twilio called, query string included; the library also tries it with
    and without the default port. `params` are the form fields, or the raw body (a string) when
    the URL carries `bodySHA256` (JSON webhooks sign the body's hash instead of its fields).
    """
    if not signature:
        return False
    validator = RequestValidator(auth_token)
    if isinstance(params, str):
        if "bodySHA256" not in parse_qs(urlsplit(url).query):
            return False  # a raw body is only signed through its hash
    elif hmac.compare_digest(
        validator.compute_signature(url, params).encode(), signature.encode("utf-8", "replace")
    ):
        # Twilio signs the URL it called, which is `url` as configured: one signature to
        # compute, where `validate` always computes both port variants (8% of a webhook's Python).
        return True
    return validator.validate(url, params, signature)


def public_url(settings: Settings) -> str:
    """Return the URL Twilio called for this request: the configured public base, path, query."""
    url = settings.public_base_url + request.path
    query = request.query_string.decode("utf-8", "replace")
    return f"{url}?{query}" if query else url


def verified_fields(settings: Settings) -> Mapping[str, str]:
    """Check the current request's signature and return its fields; raise `Rejected` (403)."""
    assert settings.twilio_auth_token is not None
    signature = request.headers.get(SIGNATURE_HEADER)
    # With bodySHA256 the raw body is what is signed. Read it before the form: Werkzeug then
    # parses the form from the cached bytes.
    body = request.get_data(cache=True, as_text=True) if "bodySHA256" in request.args else None
    params = body if body is not None else request.form
    if not verify(settings.twilio_auth_token, public_url(settings), params, signature):
        log.warning(
            "twilio: %s signature on %s; refused", "wrong" if signature else "no", request.path
        )
        raise Rejected(403, "invalid signature")
    if body is not None and request.mimetype == "application/json":
        return _json_fields(body)
    return request.form


def _json_fields(body: str) -> dict[str, str]:
    try:
        data = json.loads(body)
    except ValueError:
        raise Rejected(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, "body is not a JSON object")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


# --- parse ----------------------------------------------------------------------------------------


def _required(fields: Mapping[str, str], name: str) -> str:
    value = (fields.get(name) or "").strip()
    if not value:
        raise Rejected(400, f"missing {name}")
    return value


def _message_sid(fields: Mapping[str, str]) -> str:
    sid = _required(fields, "MessageSid")
    if len(sid) > _PROVIDER_ID_LENGTH or not sid.isascii() or not sid.isalnum():
        raise Rejected(400, "MessageSid must be letters and digits")
    return sid


def parse_address(address: str, channel: Channel) -> str:
    """Return the E.164 phone of a Twilio address (`+51...`, or `whatsapp:+51...` on WhatsApp)."""
    if channel is Channel.WHATSAPP:
        if not address.startswith(WHATSAPP_PREFIX):
            raise Rejected(400, "From is not a WhatsApp address")
        address = address.removeprefix(WHATSAPP_PREFIX)
    try:
        return parse_phone(address, region=None)
    except InvalidIdentifier:
        raise Rejected(400, "From is not a mobile number in international form") from None


def parse(fields: Mapping[str, str], channel: Channel, now: dt.datetime) -> Inbound:
    """Turn a verified webhook into an `Inbound`; raise `Rejected` (400) if it is malformed."""
    phone = parse_address(_required(fields, "From"), channel)
    return Inbound(
        channel=channel,
        phone=phone,
        text=wire.normalise_inbound(fields.get("Body") or ""),
        provider_id=_message_sid(fields),
        received_at=now,
    )


# Twilio's MessageStatus values and where each leaves our message. `receiving` and `received`
# describe inbound messages, `partially_delivered` multi-recipient RCS: none applies to ours.
STATUSES = {
    "accepted": Status.QUEUED,
    "scheduled": Status.QUEUED,
    "queued": Status.QUEUED,
    "sending": Status.SENT,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}


# --- render ---------------------------------------------------------------------------------------


def render() -> Response:
    """Return the webhook's answer: empty TwiML (replies travel through the outbox)."""
    return Response(EMPTY_TWIML, status=200, content_type=TWIML)


def _refusal(exc: Rejected) -> Response:
    return Response(exc.reason + "\n", status=exc.status, content_type=PLAIN)


# --- the webhooks ---------------------------------------------------------------------------------


@bp.before_request
def channel_configured() -> ResponseReturnValue | None:
    """Answer 404 while the channel is off (no TWILIO_AUTH_TOKEN to check signatures with)."""
    if not current_gateway().settings.twilio_auth_token:
        return Response("twilio channel is not configured\n", status=404, content_type=PLAIN)
    return None


def _inbound(channel: Channel) -> Response:
    gateway = current_gateway()
    try:
        fields = verified_fields(gateway.settings)
        inbound = parse(fields, channel, gateway.clock.now())
    except Rejected as exc:
        return _refusal(exc)
    gateway.receive(inbound)
    return render()


@bp.post("/twilio/sms")
def sms() -> ResponseReturnValue:
    """Receive one SMS."""
    return _inbound(Channel.SMS)


@bp.post("/twilio/whatsapp")
def whatsapp() -> ResponseReturnValue:
    """Receive one WhatsApp message."""
    return _inbound(Channel.WHATSAPP)


@bp.post(STATUS_PATH)
def status() -> ResponseReturnValue:
    """Record a status callback for a message we sent; statuses only move forward."""
    gateway = current_gateway()
    try:
        fields = verified_fields(gateway.settings)
        sid = _message_sid(fields)
        reported = _required(fields, "MessageStatus").lower()
    except Rejected as exc:
        return _refusal(exc)
    new = STATUSES.get(reported)
    if new is None:
        log.info("twilio: status %r for message %s ignored", reported[:20], sid)
        return render()
    channel = _sent_on(gateway.database, sid, fields.get("To") or "")
    error_code = (fields.get("ErrorCode") or "").strip()[:20] or None
    outbox.apply_status(gateway.database, channel, sid, new, error_code, gateway.clock.now())
    return render()


def _sent_on(database: Database, sid: str, to: str) -> Channel:
    """Return the channel of the message Twilio sent as `sid`.

    WhatsApp addresses say so. An SMS may also be a notice to a USSD user (logged on the USSD
    channel, sent as SMS): the message log tells which.
    """
    if to.startswith(WHATSAPP_PREFIX):
        return Channel.WHATSAPP
    with database.transaction() as session:
        found = session.scalar(
            sa.select(Message.channel)
            .where(
                Message.provider_id == sid,
                Message.channel.in_([Channel.SMS, Channel.USSD]),
            )
            .limit(1)
        )
    return found or Channel.SMS


# --- send -----------------------------------------------------------------------------------------


# Twilio error codes that mean "not now" rather than "never": rate limits and queue overflow.
RETRYABLE_CODES = {
    20429: "too many requests",
    14107: "send rate limit exceeded",
    30001: "queue overflow",
    30022: "A2P 10DLC rate limit exceeded",
    63018: "WhatsApp rate limit exceeded",
    20500: "Twilio internal error",
    20503: "Twilio service unavailable",
}
# The usual permanent ones, named in the outbox's last_error (never with the number itself).
PERMANENT_CODES = {
    20003: "authentication failed (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)",
    21211: "invalid To number",
    21217: "To number does not appear valid",
    21408: "no permission to send to this region",
    21606: "From number cannot send to this destination",
    21610: "recipient unsubscribed (replied STOP)",
    21612: "cannot route to this number",
    21614: "To number is not a mobile number",
    63016: "WhatsApp: outside the 24-hour session window",
}

# The library logs each request at INFO (URL and headers, without credentials); keep it quieter.
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)


def send_error(status: int, code: int | None) -> SendError:
    """Return the send error for a Twilio API error answer: HTTP `status`, Twilio `code`."""
    if code is not None and code in RETRYABLE_CODES:
        return RetryableSendError(f"twilio: HTTP {status}, error {code} ({RETRYABLE_CODES[code]})")
    if status == 429 or status >= 500:
        return RetryableSendError(f"twilio: HTTP {status}, error {code}")
    described = PERMANENT_CODES.get(code) if code is not None else None
    suffix = f" ({described})" if described else ""
    return PermanentSendError(f"twilio: HTTP {status}, error {code}{suffix}")


class TwilioSender:
    """Sends SMS and WhatsApp messages with Twilio's REST API (the official `twilio` client)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        status_callback: str,
        sms_from: str | None = None,
        whatsapp_from: str | None = None,
        api_url: str | None = None,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.sms_from = sms_from
        self.whatsapp_from = whatsapp_from
        self.status_callback = status_callback
        self._http = TwilioHttpClient(timeout=timeout, logger=_http_log)
        self.client = Client(account_sid, auth_token, http_client=self._http)
        # Our settings are the only configuration: regional edges are chosen with
        # TWILIO_API_URL, so the library's own TWILIO_EDGE / TWILIO_REGION variables must not
        # rewrite the host it calls.
        self.client.edge = None
        self.client.region = None
        if api_url:
            # The 2010 API domain (`api.twilio.com`) builds every URL from its base_url.
            self.client.api.base_url = api_url.rstrip("/").removesuffix("/2010-04-01")
        assert self._http.session is not None  # pool_connections, the default
        read_environment_once(self._http.session, self.client.api.base_url)

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSender | None:
        """Return a sender for the configured account, or None without TWILIO credentials."""
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            return None
        if not settings.twilio_sms_from:
            log.warning("twilio: TWILIO_SMS_FROM is not set; SMS sends will fail")
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            status_callback=settings.public_base_url + STATUS_PATH,
            sms_from=settings.twilio_sms_from,
            whatsapp_from=settings.twilio_whatsapp_from,
            api_url=settings.twilio_api_url,
        )

    def send(self, message: OutboundMessage) -> str:
        """Send `message`; return Twilio's message SID.

        WhatsApp goes from TWILIO_WHATSAPP_FROM to `whatsapp:<phone>`; SMS (and notices to USSD
        users) from TWILIO_SMS_FROM. Interactive choices need Twilio content templates and are
        not sent as buttons: they are listed in the text, to be answered by their ids.
        """
        if message.channel is Channel.WHATSAPP:
            sender, to = self.whatsapp_from, WHATSAPP_PREFIX + message.phone
        else:
            sender, to = self.sms_from, message.phone
        if not sender:
            raise PermanentSendError(f"twilio: no sender number configured for {message.channel}")
        try:
            sent = self.client.messages.create(
                to=to,
                from_=sender,
                body=wire.with_choices(message.text, message.choices),
                status_callback=self.status_callback,
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            code = exc.code if isinstance(exc.code, int) else None
            raise send_error(exc.status, code) from None
        except requests.Timeout:
            # Twilio may have accepted the message before the answer was lost; sending again
            # risks a duplicate, but losing the message is worse.
            raise RetryableSendError("twilio: no answer in time") from None
        except requests.RequestException as exc:
            raise RetryableSendError(f"twilio: {type(exc).__name__}") from None
        log.info(
            "twilio: %s message %s to %s accepted as %s",
            message.channel.value,
            message.id,
            mask_phone(message.phone),
            sent.sid,
        )
        return sent.sid

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        if self._http.session is not None:
            self._http.session.close()
