"""Public HTTP face of the ledger: checkpoints, entries, proofs, tiles and receipt pages.

Paths and JSON shapes are fixed by DESIGN.md §4. Everything here only reads; the log signs and
sequences elsewhere. Proofs are served for any size up to the tree's, and are to be trusted only
against a signed checkpoint (which `/ledger/checkpoint` serves).
"""

from __future__ import annotations

import base64
import json

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from ledger import log as ledger_log
from ledger import merkle
from ledger.entries import parse_entry
from ledger.log import LedgerError, Log, NotFound
from ledger.models import Entry
from ledger.note import NoteError, open_checkpoint
from ledger.proofs import build_proof
from ledger.receipts import CodeStatus, check_code, format_code
from ledger.witnesses import cosigned_note
from recpo.runtime import current_runtime, request_session

bp = Blueprint("ledger_api", __name__, template_folder="templates")
EXTENSION_KEY = "recpo.ledger"
WITNESSES_KEY = "recpo.ledger.witnesses"


def current_log() -> Log:
    """Return the app's ledger."""
    return current_app.extensions[EXTENSION_KEY]


def _problem(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _int_arg(name: str) -> int:
    raw = request.args.get(name)
    if raw is None:
        abort(_problem(400, f"parameter {name!r} is required"))
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        abort(_problem(400, f"parameter {name!r} must be a non-negative whole number"))
    return int(raw)


def _head() -> ledger_log.TreeHead:
    try:
        return ledger_log.latest_checkpoint(request_session())
    except NotFound:
        # A new log has no checkpoint until its first append: sign the empty tree.
        return current_log().checkpoint_now(current_runtime().database)


@bp.get("/ledger/checkpoint")
def checkpoint() -> ResponseReturnValue:
    """Serve the newest signed checkpoint (C2SP tlog-checkpoint), with witnesses' cosignatures."""
    head = _head()
    return Response(
        cosigned_note(request_session(), head),
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


@bp.get("/ledger/key")
def key() -> ResponseReturnValue:
    """Serve the log's verifier key, one line."""
    return Response(current_log().signer.verifier_text() + "\n", mimetype="text/plain")


@bp.get("/ledger/entries/<int:index>")
def entry(index: int) -> ResponseReturnValue:
    """Serve one entry's exact bytes (base64) and leaf hash."""
    try:
        row = ledger_log.get_entry(request_session(), index)
    except NotFound as exc:
        return _problem(404, str(exc))
    return jsonify(
        {
            "index": row.idx,
            "entry": base64.b64encode(row.entry).decode(),
            "leaf_hash": bytes(row.leaf_hash).hex(),
        }
    )


@bp.get("/ledger/proof/inclusion")
def inclusion() -> ResponseReturnValue:
    """Serve the inclusion proof of entry `index` in the tree of `size` entries."""
    index, size = _int_arg("index"), _int_arg("size")
    session = request_session()
    if index >= size:
        return _problem(400, f"index {index} must be below size {size}")
    try:
        path = ledger_log.inclusion_proof(session, index, size)
        row = ledger_log.get_entry(session, index)
    except NotFound as exc:
        return _problem(404, str(exc))
    except LedgerError as exc:
        return _problem(400, str(exc))
    return jsonify(
        {
            "index": index,
            "size": size,
            "leaf_hash": bytes(row.leaf_hash).hex(),
            "path": [h.hex() for h in path],
        }
    )


@bp.get("/ledger/proof/consistency")
def consistency() -> ResponseReturnValue:
    """Serve the consistency proof from tree size `old` to `new`."""
    old, new = _int_arg("old"), _int_arg("new")
    if old > new:
        return _problem(400, f"old size {old} must not exceed new size {new}")
    try:
        path = ledger_log.consistency_proof(request_session(), old, new)
    except NotFound as exc:
        return _problem(404, str(exc))
    except LedgerError as exc:
        return _problem(400, str(exc))
    return jsonify({"old": old, "new": new, "path": [h.hex() for h in path]})


@bp.get("/ledger/tile/<path:path>")
def tile(path: str) -> ResponseReturnValue:
    """Serve a C2SP tlog-tiles hash tile or entry bundle, within the newest checkpoint."""
    try:
        wanted = merkle.parse_tile_path("tile/" + path)
    except ValueError as exc:
        return _problem(400, str(exc))
    size = _head().size
    published = merkle.tile_for(wanted.level, wanted.index, size, wanted.entries)
    # A partial tile may be asked for after it has filled up: serve the smaller width then too.
    if published is None or published.width < wanted.width:
        return _problem(404, f"tile {path} is beyond the newest checkpoint (size {size})")
    session = request_session()
    if wanted.entries:
        body = merkle.encode_entry_bundle(
            ledger_log.entry_bundle(session, wanted.index, wanted.width)
        )
    else:
        body = ledger_log.tile(session, wanted.level, wanted.index, wanted.width)
    cache = "public, max-age=31536000, immutable" if not wanted.is_partial else "no-cache"
    return Response(body, mimetype="application/octet-stream", headers={"Cache-Control": cache})


@bp.get("/r/<code>")
def receipt(code: str) -> ResponseReturnValue:
    """Show a receipt: the entry's public content, its index and a live inclusion check."""
    result = _receipt_result(code)
    wants_json = request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )
    status = _RECEIPT_STATUS[result["status"]]
    if wants_json:
        return jsonify(result), status
    return render_template("receipt.html", receipt=result), status


@bp.get("/r/<code>/proof")
def receipt_proof(code: str) -> ResponseReturnValue:
    """Serve the offline proof bundle (C2SP tlog-proof) of a receipt."""
    checked = check_code(code)
    if not checked.ok:
        return _problem(400, "not a valid receipt code")
    session = request_session()
    found = ledger_log.find_receipt(session, checked.code)
    if not isinstance(found, Entry):
        return _problem(404, "no such receipt in the ledger yet")
    head = _head()
    if found.idx >= head.size:
        return _problem(404, "the receipt is not in a signed checkpoint yet; try again shortly")
    path = ledger_log.inclusion_proof(session, found.idx, head.size)
    bundle = build_proof(
        bytes(found.entry), found.idx, path, cosigned_note(request_session(), head)
    )
    filename = f"receipt-{checked.code}.tlog-proof"
    return Response(
        bundle,
        content_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_RECEIPT_STATUS = {
    "verified": 200,
    "unverified": 200,
    "pending": 200,
    "not_found": 404,
    "malformed": 400,
    "typo": 400,
}


def _receipt_result(text: str) -> dict:
    checked = check_code(text)
    if checked.status is CodeStatus.MALFORMED:
        return {"status": "malformed", "code": checked.code}
    shown = format_code(checked.code)
    if checked.status is CodeStatus.TYPO:
        return {"status": "typo", "code": shown}
    session = request_session()
    found = ledger_log.find_receipt(session, checked.code)
    if found is None:
        return {"status": "not_found", "code": shown}
    if not isinstance(found, Entry):
        return {
            "status": "pending",
            "code": shown,
            "kind": found.kind,
            "record": json.loads(found.body),
        }
    head = _head()
    log = current_log()
    try:
        body, _ = open_checkpoint(head.note, [log.signer.verifier()], log.origin)
        signed = True
    except NoteError:
        body, signed = None, False
    verified = False
    path: list[bytes] = []
    if signed and body is not None and found.idx < body.size:
        path = ledger_log.inclusion_proof(session, found.idx, body.size)
        verified = merkle.verify_inclusion(
            bytes(found.leaf_hash), found.idx, body.size, path, body.root
        )
    parsed = parse_entry(bytes(found.entry))
    return {
        "status": "verified" if verified else "unverified",
        "code": shown,
        "index": found.idx,
        "kind": found.kind,
        "record": parsed["body"],
        "leaf_hash": bytes(found.leaf_hash).hex(),
        "checkpoint": {"size": head.size, "root": head.root.hex(), "note": head.note},
        "inclusion_path": [h.hex() for h in path],
        "sequenced_at": found.sequenced_at.isoformat(),
    }
