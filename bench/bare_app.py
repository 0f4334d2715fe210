"""Baselines for bench/webhook.py: a bare Flask endpoint under gunicorn, and a no-op RQ job.

    .venv/bin/python bench/bare_app.py --port N --workers W --threads T

serves one endpoint, `POST /twilio/sms`, that parses the same form as the real webhook (reading the
fields the gateway reads) and returns the same empty TwiML, with nothing else: no signature check,
no database, no Redis. Gunicorn is configured exactly as `recpo serve` configures it (the same
`recpo.cli.gunicorn_settings`: threaded workers, access log on stdout, same timeouts), so the
difference from the real service is the gateway's own work. `noop` is the job RQ's own
throughput is measured with.
"""

from __future__ import annotations

import argparse

from flask import Flask, Response, request

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWIML = "text/xml; charset=utf-8"

app = Flask("bare")


@app.post("/twilio/sms")
def sms() -> Response:
    """Parse the form as the webhook does and answer empty TwiML."""
    form = request.form
    for name in ("MessageSid", "From", "Body"):
        form.get(name)
    request.headers.get("X-Twilio-Signature")
    return Response(EMPTY_TWIML, status=200, content_type=TWIML)


def noop() -> None:
    """A job that does nothing (RQ's own per-job cost)."""


def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve `app` with gunicorn, configured as `recpo serve` does."""
    from gunicorn.app.base import BaseApplication

    from recpo.cli import gunicorn_settings

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in gunicorn_settings(host, port, workers, threads).items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return app

    Server().run()


if __name__ == "__main__":
    from recpo.cli import SERVE_THREADS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=SERVE_THREADS)
    args = parser.parse_args()
    serve(args.host, args.port, args.workers, args.threads)
