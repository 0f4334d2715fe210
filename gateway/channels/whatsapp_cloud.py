"""WhatsApp through Meta's Cloud API: verify, parse, render, send.

Meta verifies the webhook once with `GET /whatsapp?hub.mode=subscribe&hub.verify_token=...&
hub.challenge=...` and expects the challenge back. Every later `POST /whatsapp` carries JSON signed
with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the app secret>`;
one POST may hold several messages and delivery statuses (`entry[].changes[].value.messages[]`
and `.statuses[]`). Unsigned or wrongly signed requests change nothing.

Meta retries a webhook that is not answered with 200, so an error on our side (a database outage)
answers 500 and the whole POST comes again; messages already handled are recognised by their
`wamid` and not handled twice.

Interactive replies are routed by the id we gave the option (`Inbound.choice_id`), never by its
title. Replies with 1-3 choices go out as reply buttons, 4-10 as a list; more, or options that do
not fit Meta's limits, go as text with the options numbered. Meta refuses free-form messages to a
user who has not written in 24 hours (error 131047): that raises `WindowClosedError`, and the
outbox sends the message by SMS instead.

The channel is off (404) unless META_APP_SECRET is set; sending needs META_ACCESS_TOKEN and
META_PHONE_NUMBER_ID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from flask import Blueprint, Response, abort, request

from flows.messages import Channel, Choice, Inbound
from gateway import outbox
from gateway import text as wire
from gateway.models import Status
from gateway.senders import (
    OutboundMessage,
    PermanentSendError,
    RetryableSendError,
    WindowClosedError,
    read_environment_once,
)
from gateway.service import current_gateway
from gateway.text import normalise_inbound
from recpo.config import Settings
from recpo.i18n import N_, translate
from registry.identifiers import mask_phone

log = logging.getLogger(__name__)

bp = Blueprint("whatsapp_cloud", __name__)

DEFAULT_API_URL = "https://graph.facebook.com"
# Pinned so that a Graph API release never changes our requests; v25.0 is served until 2028-07-29.
API_VERSION = "v25.0"
TIMEOUT = (5.0, 20.0)  # seconds: connect, read

SIGNATURE_HEADER = "X-Hub-Signature-256"

# Meta's limits for interactive messages (characters).
MAX_BUTTONS = 3
MAX_LIST_ROWS = 10
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
ROW_TITLE_LIMIT = 24
ROW_ID_LIMIT = 200
INTERACTIVE_BODY_LIMIT = 1024
LIST_BUTTON = N_("Options")  # the label that opens a list

# Graph API error codes (`error.code`), which Meta asks clients to act on rather than HTTP status.
OUTSIDE_WINDOW = 131047  # more than 24 hours since the user last wrote: free-form text refused
RETRYABLE_CODES = frozenset(
    {
        2,  # API service: temporary downtime or overload
        4,  # app-level API call rate limit
        80007,  # WhatsApp Business Account rate limit
        130429,  # Cloud API throughput reached
        131000,  # something went wrong (server side)
        131016,  # service unavailable
        131048,  # spam rate limit: too many messages flagged from this number
        131056,  # too many messages to the same recipient in a short time
        133004,  # server temporarily unavailable
    }
)

_STATUSES = {
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.READ,
    "failed": Status.FAILED,
}
_WA_ID = re.compile(r"[1-9][0-9]{3,14}")


class MalformedPayload(ValueError):
    """A signed webhook whose JSON is not the Cloud API's shape."""


# --- verify ---------------------------------------------------------------------------------------


def signature(body: bytes, app_secret: str) -> str:
    """Return the `X-Hub-Signature-256` value Meta sends with `body`."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    """Return whether `header` is Meta's signature of `body` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), signature(body, app_secret).encode())


def verify_subscription(args: Mapping[str, str], verify_token: str | None) -> str | None:
    """Return the challenge to echo if this is Meta's subscription handshake with our token."""
    challenge = args.get("hub.challenge")
    given = args.get("hub.verify_token")
    if args.get("hub.mode") != "subscribe" or not challenge or not given or not verify_token:
        return None
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return challenge


# --- parse ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status Meta reports for one of our outbound messages."""

    provider_id: str
    status: Status
    detail: str | None  # "<code> <title>" of the first error, for failures


@dataclass(frozen=True)
class Webhook:
    """What one webhook POST carries."""

    messages: list[Inbound]
    statuses: list[StatusUpdate]


def parse(payload: Any, now: dt.datetime) -> Webhook:
    """Read a Cloud API webhook into inbound messages and statuses; raise MalformedPayload."""
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        raise MalformedPayload("not a whatsapp_business_account webhook")
    messages: list[Inbound] = []
    statuses: list[StatusUpdate] = []
    for entry in _list(payload, "entry"):
        for change in _list(_dict(entry, "entry"), "changes"):
            change = _dict(change, "change")
            if change.get("field") != "messages":
                continue  # account and template updates: nothing for the conversations
            value = change.get("value")
            value = _dict(value, "change value")
            for message in _list(value, "messages"):
                messages.append(_inbound(_dict(message, "message"), now))
            for status in _list(value, "statuses"):
                update = _status(_dict(status, "status"))
                if update is not None:
                    statuses.append(update)
            for error in _list(value, "errors"):
                log.warning("whatsapp webhook reports an error: %s", _error_detail(error))
    return Webhook(messages, statuses)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} is not an object")
    return value


def _list(parent: dict[str, Any], key: str) -> list[Any]:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise MalformedPayload(f"'{key}' is not a list")
    return value


def _str(parent: dict[str, Any], key: str, what: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{what} has no '{key}'")
    return value


def _inbound(message: dict[str, Any], now: dt.datetime) -> Inbound:
    wa_id = _str(message, "from", "message")
    if not _WA_ID.fullmatch(wa_id):
        raise MalformedPayload("message 'from' is not a phone number")
    kind = _str(message, "type", "message")
    text, choice_id = "", None
    if kind == "text":
        text = _str(_dict(message.get("text"), "text"), "body", "text")
    elif kind == "interactive":
        interactive = _dict(message.get("interactive"), "interactive")
        reply_type = interactive.get("type")
        if reply_type in ("button_reply", "list_reply"):
            reply = _dict(interactive.get(reply_type), reply_type)
            choice_id = _str(reply, "id", reply_type)
            text = reply.get("title") or ""
    # Anything else (image, audio, location, a reaction...) arrives as an empty text.
    return Inbound(
        channel=Channel.WHATSAPP,
        phone=f"+{wa_id}",
        text=normalise_inbound(str(text)),
        provider_id=_str(message, "id", "message"),
        received_at=now,
        choice_id=choice_id,
    )


def _status(status: dict[str, Any]) -> StatusUpdate | None:
    provider_id = _str(status, "id", "status")
    name = _str(status, "status", "status")
    mapped = _STATUSES.get(name)
    if mapped is None:
        log.info("whatsapp status %r is not one we track; ignored", name)
        return None
    detail = None
    if mapped is Status.FAILED:
        errors = _list(status, "errors")
        detail = _error_detail(errors[0]) if errors else None
    return StatusUpdate(provider_id, mapped, detail)


def _error_detail(error: Any) -> str:
    if not isinstance(error, dict):
        return "unknown error"
    return f"{error.get('code', '?')} {error.get('title') or error.get('message') or ''}".strip()[
        :200
    ]


# --- the webhook ----------------------------------------------------------------------------------


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.get("/whatsapp")
def subscribe() -> Response:
    """Answer Meta's webhook verification handshake."""
    settings = current_gateway().settings
    if not settings.meta_app_secret:
        abort(404)
    challenge = verify_subscription(request.args, settings.meta_verify_token)
    if challenge is None:
        log.warning("whatsapp webhook verification refused: wrong mode or verify token")
        return _text("verification failed", 403)
    log.info("whatsapp webhook verified")
    return _text(challenge, 200)


@bp.post("/whatsapp")
def webhook() -> Response:
    """Verify, parse and handle one Cloud API webhook: messages, then statuses."""
    gateway = current_gateway()
    secret = gateway.settings.meta_app_secret
    if not secret:
        abort(404)
    body = request.get_data()
    if not verify_signature(body, request.headers.get(SIGNATURE_HEADER), secret):
        log.warning("whatsapp webhook refused: missing or wrong %s", SIGNATURE_HEADER)
        return _text("invalid signature", 403)
    now = gateway.clock.now()
    try:
        parsed = parse(json.loads(body), now)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and MalformedPayload
        reason = str(exc) if isinstance(exc, MalformedPayload) else "body is not JSON"
        log.warning("whatsapp webhook refused: %s", reason)
        return _text(f"malformed payload: {reason}", 400)
    for inbound in parsed.messages:
        gateway.receive(inbound)
    for update in parsed.statuses:
        outbox.apply_status(
            gateway.database,
            Channel.WHATSAPP,
            update.provider_id,
            update.status,
            update.detail,
            now,
        )
    return _text("", 200)


# --- render ---------------------------------------------------------------------------------------


def render(message: OutboundMessage) -> dict[str, Any]:
    """Return the Graph API request body for `message`: text, reply buttons or a list."""
    request_body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.phone.removeprefix("+"),
    }
    choices = message.choices
    if choices and 0 < len(message.text) <= INTERACTIVE_BODY_LIMIT and _well_formed(choices):
        if len(choices) <= MAX_BUTTONS:
            buttons = _buttons(choices)
            if buttons is not None:
                return request_body | _interactive("button", message.text, {"buttons": buttons})
        elif len(choices) <= MAX_LIST_ROWS and all(len(c.id) <= ROW_ID_LIMIT for c in choices):
            rows = [{"id": c.id, "title": _shorten(c.title, ROW_TITLE_LIMIT)} for c in choices]
            label = _shorten(translate(message.locale, LIST_BUTTON), BUTTON_TITLE_LIMIT)
            action = {"button": label, "sections": [{"rows": rows}]}
            return request_body | _interactive("list", message.text, action)
    return request_body | {
        "type": "text",
        "text": {"body": wire.with_choices(message.text, choices), "preview_url": False},
    }


def _well_formed(choices: tuple[Choice, ...]) -> bool:
    ids = [c.id for c in choices]
    return all(ids) and len(set(ids)) == len(ids) and all(c.title.strip() for c in choices)


def _buttons(choices: tuple[Choice, ...]) -> list[dict[str, Any]] | None:
    titles = [_shorten(c.title, BUTTON_TITLE_LIMIT) for c in choices]
    if len(set(titles)) != len(titles) or any(len(c.id) > BUTTON_ID_LIMIT for c in choices):
        return None  # WhatsApp needs distinct button titles; shortening may have merged two
    return [
        {"type": "reply", "reply": {"id": c.id, "title": title}}
        for c, title in zip(choices, titles, strict=True)
    ]


def _interactive(kind: str, body: str, action: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": body}, "action": action},
    }


def _shorten(title: str, limit: int) -> str:
    title = title.strip()
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


# --- send -----------------------------------------------------------------------------------------


class MetaSender:
    """Sends WhatsApp messages through the Cloud API (`POST /{version}/{phone id}/messages`)."""

    name = "meta"

    def __init__(
        self,
        access_token: str,
        phone_number_id: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float | tuple[float, float] = TIMEOUT,
    ) -> None:
        self._access_token = access_token
        self.phone_number_id = phone_number_id
        self.url = f"{api_url.rstrip('/')}/{API_VERSION}/{phone_number_id}/messages"
        self.timeout = timeout
        self._session = requests.Session()
        read_environment_once(self._session, self.url)

    def __repr__(self) -> str:
        return f"MetaSender(phone_number_id={self.phone_number_id!r}, url={self.url!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> MetaSender | None:
        """Return a sender when META_ACCESS_TOKEN and META_PHONE_NUMBER_ID are set, else None."""
        if not (settings.meta_access_token and settings.meta_phone_number_id):
            return None
        return cls(
            settings.meta_access_token,
            settings.meta_phone_number_id,
            settings.meta_api_url or DEFAULT_API_URL,
        )

    def send(self, message: OutboundMessage) -> str:
        """Send `message`; return its wamid.

        Raises RetryableSendError (timeouts, 429/5xx, Meta's rate limits), WindowClosedError (no
        message from the user in 24 hours: the outbox falls back to SMS) or PermanentSendError.
        """
        try:
            response = self._session.post(
                self.url,
                json=render(message),
                headers={"Authorization": f"Bearer {self._access_token}"},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise RetryableSendError("meta: no answer within the timeout") from None
        except requests.RequestException as exc:
            raise RetryableSendError(f"meta: request failed ({type(exc).__name__})") from None
        if response.ok:
            wamid = _wamid(response)
            log.info(
                "meta: whatsapp message %s to %s accepted", message.id, mask_phone(message.phone)
            )
            return wamid
        raise _send_error(response)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


def _wamid(response: requests.Response) -> str:
    try:
        wamid = response.json()["messages"][0]["id"]
    except (ValueError, LookupError, TypeError):
        wamid = None
    if not isinstance(wamid, str) or not wamid:
        # Not the Graph API's answer (a proxy's page?): assume nothing was sent.
        raise RetryableSendError(f"meta: HTTP {response.status_code} without a message id")
    return wamid


def _send_error(response: requests.Response) -> RetryableSendError | PermanentSendError:
    code, title = None, ""
    try:
        error = response.json()["error"]
        code = error.get("code")
        title = str(error.get("message") or "")[:120]
    except (ValueError, LookupError, TypeError, AttributeError):
        pass
    reason = f"meta: HTTP {response.status_code}"
    if code is not None:
        reason += f", error {code}: {title}" if title else f", error {code}"
    if code == OUTSIDE_WINDOW:
        return WindowClosedError(
            f"meta: outside the 24-hour customer-service window (error {OUTSIDE_WINDOW}): "
            "the user has not written in the last 24 hours"
        )
    if code in RETRYABLE_CODES or response.status_code == 429 or response.status_code >= 500:
        return RetryableSendError(reason)
    return PermanentSendError(reason)
