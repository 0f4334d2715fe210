"""A local fake of Twilio's REST Messages API, for the real `twilio` client to talk to.

It serves `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` on 127.0.0.1 (a free port) from a
background thread, the way Twilio does: HTTP basic auth with the account SID and auth token,
form-encoded fields (`To`, `From`, `Body`, `StatusCallback`), `201 Created` with the message
resource as JSON (shaped like `tests/gateway/testdata/twilio_message_created.json`), and errors as
Twilio's JSON error bodies (`twilio_error.json`). Every request is recorded.

Failures are scripted for the next requests:

    with FakeTwilioAPI(SID, TOKEN) as fake:
        fake.fail_next(500, code=20500)          # Twilio's own 5xx
        fake.fail_next(503)                       # an edge proxy's HTML 503, no Twilio code
        fake.fail_next(429, code=20429, times=2)  # rate limited twice
        fake.fail_next(400, code=21211)           # invalid To number
        fake.hang_next(2.0)                       # answer only after 2 s (past a client timeout)
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import email.utils
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

TESTDATA = Path(__file__).resolve().parents[1] / "gateway" / "testdata"
_MESSAGES = re.compile(r"/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    auth: tuple[str, str] | None  # basic-auth user and password as received

    def field(self, name: str) -> str:
        """Return the single value of form field `name`."""
        (value,) = self.form[name]
        return value


@dataclass(frozen=True)
class Answer:
    """What the fake does with one scripted request."""

    status: int = 201
    code: int | None = None  # Twilio error code; None gives a non-JSON body (a proxy's page)
    message: str | None = None
    delay: float = 0.0  # seconds to wait before answering


class FakeTwilioAPI:
    """Twilio's Messages endpoint on 127.0.0.1, in a background thread."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[RecordedRequest] = []
        self.created: list[dict[str, Any]] = []  # message resources answered with 201
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._template = json.loads((TESTDATA / "twilio_message_created.json").read_text())
        self._error = json.loads((TESTDATA / "twilio_error.json").read_text())
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to give the client (what TWILIO_API_URL would be)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTwilioAPI:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release any hanging answer, stop serving and close the socket."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeTwilioAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(
        self, status: int, code: int | None = None, message: str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests with HTTP `status` and Twilio error `code`."""
        with self._lock:
            self._script.extend(Answer(status, code, message) for _ in range(times))

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Answer the next `times` requests (successfully) only after `seconds`."""
        with self._lock:
            self._script.extend(Answer(delay=seconds) for _ in range(times))

    # The server side, called from the handler threads.

    def _record(self, request: RecordedRequest) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else Answer()

    def _error_body(self, status: int, code: int, message: str) -> dict[str, Any]:
        body = copy.deepcopy(self._error)
        body.update(
            code=code,
            message=message,
            more_info=f"https://www.twilio.com/docs/errors/{code}",
            status=status,
        )
        return body

    def _created(self, form: dict[str, list[str]]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = email.utils.format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0))
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        resource = copy.deepcopy(self._template)
        resource.update(
            account_sid=self.account_sid,
            sid=sid,
            body=form["Body"][0],
            to=form["To"][0],
            date_created=now,
            date_updated=now,
            uri=f"{base}.json",
            subresource_uris={"media": f"{base}/Media.json"},
            messaging_service_sid=form.get("MessagingServiceSid", [None])[0],
            status="queued",
        )
        resource["from"] = form["From"][0]
        with self._lock:
            self.created.append(resource)
        return resource

    def answer(self, handler: _Handler) -> tuple[int, str, bytes]:
        """Return status, content type and body for the request `handler` has read."""
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8")
        form = parse_qs(raw, keep_blank_values=True)
        request = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers=dict(handler.headers.items()),
            form=form,
            auth=_basic_auth(handler.headers.get("Authorization")),
        )
        scripted = self._record(request)

        def error(status: int, code: int, message: str) -> tuple[int, str, bytes]:
            body = json.dumps(self._error_body(status, code, message)).encode()
            return status, "application/json; charset=utf-8", body

        match = _MESSAGES.fullmatch(handler.path)
        if handler.command != "POST" or match is None:
            return error(404, 20404, f"The requested resource {handler.path} was not found")
        if request.auth != (self.account_sid, self.auth_token) or (
            match["sid"] != self.account_sid
        ):
            return error(401, 20003, "Authenticate")
        if scripted.delay and self._stopping.wait(scripted.delay):
            return error(503, 20503, "Service Unavailable")
        if scripted.status >= 400:
            if scripted.code is None:
                page = f"<html><body><h1>{scripted.status}</h1></body></html>".encode()
                return scripted.status, "text/html", page
            return error(scripted.status, scripted.code, scripted.message or "Scripted failure")
        if not form.get("To"):
            return error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return error(400, 21602, "Message body is required.")
        return 201, "application/json; charset=utf-8", json.dumps(self._created(form)).encode()


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except ValueError:
        return None
    return user, password


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeTwilio/1.0"

    def do_POST(self) -> None:
        self._respond()

    def do_GET(self) -> None:
        self._respond()

    def _respond(self) -> None:
        fake: FakeTwilioAPI = self.server.fake  # type: ignore[attr-defined]
        status, content_type, body = fake.answer(self)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""
