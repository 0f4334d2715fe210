"""A local fake of the Graph API's WhatsApp send endpoint, on 127.0.0.1 in a background thread.

It serves `POST /{version}/{phone_number_id}/messages` the way the Cloud API does: checks the bearer
token, checks the request against Meta's limits for text and interactive messages, records every
request, and answers with a `wamid`. Failures are scripted per request (`fail`, `hang`) and
answered with Graph API error bodies (`{"error": {"message", "type", "code", "error_data",
"fbtrace_id"}}`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"/(v\d+\.\d+)/([0-9]+)/messages")


@dataclass(frozen=True)
class GraphError:
    """A Graph API error answer: HTTP status, error code, title and details."""

    status: int
    code: int
    message: str
    details: str


# Errors as the Cloud API words them.
SERVER_ERROR = GraphError(500, 131000, "Something went wrong", "Something went wrong.")
RATE_LIMITED = GraphError(
    429,
    130429,
    "Rate limit hit",
    "Cloud API message throughput has been reached.",
)
PAIR_RATE_LIMITED = GraphError(
    400,
    131056,
    "(Business Account, Consumer Account) pair rate limit hit",
    "Too many messages sent from the sender phone number to the same recipient phone number "
    "in a short period of time.",
)
SPAM_RATE_LIMITED = GraphError(
    400,
    131048,
    "Spam rate limit hit",
    "Message failed to send because there are restrictions on how many messages can be sent "
    "from this phone number.",
)
ACCOUNT_RATE_LIMITED = GraphError(
    400, 80007, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."
)
APP_RATE_LIMITED = GraphError(
    400, 4, "Application request limit reached", "The app has reached its API call rate limit."
)
OUTSIDE_WINDOW = GraphError(
    400,
    131047,
    "Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number.",
)
UNDELIVERABLE = GraphError(
    400,
    131026,
    "Message undeliverable",
    "Unable to deliver message. Reasons can include: the recipient phone number is not a "
    "WhatsApp phone number.",
)
NOT_ALLOWED = GraphError(
    400,
    131030,
    "Recipient phone number not in allowed list",
    "Recipient phone number not in allowed list: Add recipient phone number to recipient list "
    "and try again.",
)
BAD_TOKEN = GraphError(
    401, 190, "Invalid OAuth access token - Cannot parse access token", "Invalid access token."
)


@dataclass(frozen=True)
class Hang:
    """Answer nothing for `seconds` (longer than the client's timeout)."""

    seconds: float


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received."""

    path: str
    version: str
    phone_number_id: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeGraphAPI:
    """The fake's state: what it accepts, what it was sent, what it will do next."""

    access_token: str
    phone_number_id: str
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # wamids handed out, in order
    url: str = ""
    _script: list[GraphError | Hang] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def fail(self, *errors: GraphError) -> None:
        """Answer the next requests with these errors, one each."""
        with self._lock:
            self._script.extend(errors)

    def hang(self, seconds: float) -> None:
        """Hold the next request for `seconds` before answering."""
        with self._lock:
            self._script.append(Hang(seconds))

    def _next_script(self) -> GraphError | Hang | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _handle(self, path: str, authorization: str | None, raw: bytes) -> tuple[int, dict]:
        match = _PATH.fullmatch(path)
        if match is None or match.group(2) != self.phone_number_id:
            return _error(GraphError(400, 100, "Unsupported post request", "Unknown object."))
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(GraphError(400, 100, "Invalid parameter", "Body is not JSON."))
        with self._lock:
            self.requests.append(
                RecordedRequest(path, match.group(1), match.group(2), authorization, body)
            )
        if authorization != f"Bearer {self.access_token}":
            return _error(BAD_TOKEN)
        script = self._next_script()
        if isinstance(script, Hang):
            self._stopping.wait(script.seconds)
        elif script is not None:
            return _error(script)
        problem = _invalid(body)
        if problem:
            return _error(GraphError(400, 100, "Invalid parameter", problem))
        wamid = "wamid." + base64.b64encode(b"HBgL" + secrets.token_bytes(27)).decode()
        with self._lock:
            self.sent.append(wamid)
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid}],
        }

    @classmethod
    @contextmanager
    def running(cls, access_token: str, phone_number_id: str) -> Iterator[FakeGraphAPI]:
        """Serve a fake on a free port of 127.0.0.1 until the block ends."""
        fake = cls(access_token, phone_number_id)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
        server.daemon_threads = True
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-graph-api", daemon=True
        )
        thread.start()
        try:
            yield fake
        finally:
            fake._stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _error(error: GraphError) -> tuple[int, dict]:
    return error.status, {
        "error": {
            "message": f"(#{error.code}) {error.message}",
            "type": "OAuthException",
            "code": error.code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
    }


def _invalid(body: dict[str, Any]) -> str | None:
    """Return why Meta would refuse this request body, or None."""
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not re.fullmatch(r"[0-9]{5,15}", str(body.get("to", ""))):
        return "to is not a phone number"
    kind = body.get("type")
    if kind == "text":
        text = body.get("text", {}).get("body", "")
        return None if 0 < len(text) <= 4096 else "text body must be 1-4096 characters"
    if kind != "interactive":
        return f"unsupported type {kind!r}"
    interactive = body.get("interactive", {})
    if not 0 < len(interactive.get("body", {}).get("text", "")) <= 1024:
        return "interactive body must be 1-1024 characters"
    action = interactive.get("action", {})
    if interactive.get("type") == "button":
        buttons = action.get("buttons", [])
        titles = [b["reply"]["title"] for b in buttons]
        if not 1 <= len(buttons) <= 3:
            return "1-3 buttons"
        if any(not 0 < len(t) <= 20 for t in titles) or len(set(titles)) != len(titles):
            return "button titles must be unique and 1-20 characters"
        if any(not 0 < len(b["reply"]["id"]) <= 256 for b in buttons):
            return "button ids must be 1-256 characters"
        return None
    if interactive.get("type") == "list":
        rows = [row for section in action.get("sections", []) for row in section["rows"]]
        if not 0 < len(action.get("button", "")) <= 20:
            return "list button must be 1-20 characters"
        if not 1 <= len(rows) <= 10:
            return "1-10 rows"
        if any(not 0 < len(r["title"]) <= 24 for r in rows):
            return "row titles must be 1-24 characters"
        ids = [r["id"] for r in rows]
        if any(not 0 < len(i) <= 200 for i in ids) or len(set(ids)) != len(ids):
            return "row ids must be unique and 1-200 characters"
        return None
    return "unsupported interactive type"


def _handler_for(fake: FakeGraphAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            status, body = fake._handle(self.path, self.headers.get("Authorization"), raw)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a scripted hang)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
