"""The HTTP face of a witness (`recpo witness serve`): a small app of its own.

A partner institution runs it on its own machine, with its own key and database; it shares
nothing with the registry's application (no settings, no database, no Redis).

- `POST /add-checkpoint` — c2sp.org/tlog-witness (see `ledger.witness.Witness`);
- `GET /` — the witness's verifier key, the log keys it follows, and for each log the size it
  last cosigned and an ALARM line once it refused a checkpoint the log signed (text, for
  operators).
"""

from __future__ import annotations

from flask import Flask, Response, request

from ledger.witness import MAX_REQUEST_BYTES, Witness

EXTENSION_KEY = "recpo.witness"


def create_witness_app(witness: Witness) -> Flask:
    """Return the WSGI app serving `witness`."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions[EXTENSION_KEY] = witness

    @app.post("/add-checkpoint")
    def add_checkpoint() -> Response:
        answer = witness.add_checkpoint(request.get_data(cache=False))
        return Response(answer.body, status=answer.status, content_type=answer.content_type)

    @app.get("/")
    def about() -> Response:
        lines = [
            "C2SP tlog-witness: POST /add-checkpoint",
            f"witness key: {witness.signer.verifier_text()}",
            *(f"log key: {key.text()}" for keys in witness.logs.values() for key in keys),
            *(
                line
                for origin in sorted(witness.logs)
                for line in witness.store.status(origin).lines()
            ),
        ]
        return Response("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")

    return app
