"""Transactions: the filtered list, and one transaction with its ledger entry checked live.

The detail page looks the entry up by receipt code, fetches its inclusion proof for the newest
signed checkpoint, checks the checkpoint's signature with the log's key and the proof against the
checkpoint's root, and says "verified" only when both hold. It shows the messages that produced
the transaction: those the gateway linked to it (`gateway.models.TransactionMessage`: both
parties' messages and our replies, in the conversations that proposed, claimed, confirmed or
rejected it); for a transaction from before those links, the parties' messages around it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from admin.views.common import (
    audited_view,
    bp,
    choice_arg,
    date_arg,
    date_range,
    enum_arg,
    int_arg,
    keyset_page,
)
from admin.views.registrants import documents_for
from gateway.ledger_api import current_log
from gateway.models import Message, TransactionMessage
from ledger import log as ledger_log
from ledger import merkle
from ledger.log import LedgerError, NotFound
from ledger.models import Entry, QueuedEntry
from ledger.note import NoteError, open_checkpoint
from recpo.runtime import request_session
from registry.materials import MATERIALS
from registry.models import PhoneLink, RedFlag, Registrant, Transaction, TransactionStatus

# The pilot regions first; any department can be typed.
DEPARTMENTS = ("MADRE DE DIOS", "AREQUIPA", "PUNO")
# Messages of the parties around a transaction: from a while before it was proposed until
# shortly after it was decided.
MESSAGES_BEFORE = dt.timedelta(hours=1)
MESSAGES_AFTER = dt.timedelta(minutes=10)
MAX_MESSAGES = 60


def _party_ids(document: str) -> list[int] | None:
    """The registrants a typed document may be (None when nothing was typed)."""
    digits = "".join(ch for ch in document if ch.isdigit())
    if not document.strip():
        return None
    documents = documents_for(digits)
    if not documents:
        return []
    return list(
        request_session().scalars(
            sa.select(Registrant.id).where(
                sa.tuple_(Registrant.document_type, Registrant.document_number).in_(documents)
            )
        )
    )


def list_statement(filters: dict) -> sa.Select:
    """The transaction list's query for these filters (ordered and limited by the pager)."""
    statement = sa.select(Transaction)
    if filters.get("status") is not None:
        statement = statement.where(Transaction.status == filters["status"])
    if filters.get("material"):
        statement = statement.where(Transaction.material == filters["material"])
    if filters.get("department"):
        statement = statement.where(Transaction.department == filters["department"])
    for party, column in (("buyer", Transaction.buyer_id), ("seller", Transaction.seller_id)):
        ids = _party_ids(filters.get(party) or "")
        if ids is not None:
            statement = statement.where(column.in_(ids) if ids else sa.false())
    statement = statement.where(
        *date_range(Transaction.created_at, filters.get("date_from"), filters.get("date_to"))
    )
    if filters.get("flagged"):
        statement = statement.where(sa.exists().where(RedFlag.transaction_id == Transaction.id))
    return statement


def filters_from_args() -> dict:
    """The transaction list's filters from the query string."""
    return {
        "status": enum_arg("status", TransactionStatus),
        "material": choice_arg("material", [m.value for m in MATERIALS]),
        "department": request.args.get("department", "").strip().upper()[:100] or None,
        "buyer": request.args.get("buyer", "").strip()[:20],
        "seller": request.args.get("seller", "").strip()[:20],
        "date_from": date_arg("date_from"),
        "date_to": date_arg("date_to"),
        "flagged": request.args.get("flagged") == "1",
    }


@bp.get("/transactions")
def transactions() -> ResponseReturnValue:
    """Transactions, newest first, by status, material, region, parties, dates and flags."""
    filters = filters_from_args()
    statement = list_statement(filters)
    db = request_session()
    page = keyset_page(db, statement, Transaction.id, int_arg("before"), int_arg("after"))
    ids = [t.id for t in page.rows]
    flagged = set(
        db.scalars(sa.select(RedFlag.transaction_id).where(RedFlag.transaction_id.in_(ids)))
    )
    names = names_of(db, {t.buyer_id for t in page.rows} | {t.seller_id for t in page.rows})
    return render_template(
        "admin/transactions.html",
        page=page,
        filters=filters,
        statuses=list(TransactionStatus),
        materials=MATERIALS,
        departments=DEPARTMENTS,
        flagged=flagged,
        names=names,
    )


def names_of(db, ids: set[int]) -> dict[int, Registrant]:
    if not ids:
        return {}
    return {r.id: r for r in db.scalars(sa.select(Registrant).where(Registrant.id.in_(ids)))}


@dataclass(frozen=True)
class LedgerCheck:
    """What the ledger says about a transaction's receipt."""

    state: str  # "verified", "unverified", "queued", "missing", "none"
    index: int | None = None
    leaf_hash: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None
    signed_at: dt.datetime | None = None
    proof_length: int | None = None
    reason: str | None = None


def check_in_ledger(db, receipt_code: str | None) -> LedgerCheck:
    """Find the entry with `receipt_code` and verify its inclusion in the newest checkpoint."""
    if not receipt_code:
        return LedgerCheck("none")
    entry = db.scalars(sa.select(Entry).where(Entry.receipt_code == receipt_code)).one_or_none()
    if entry is None:
        queued = db.scalar(
            sa.select(QueuedEntry.id).where(QueuedEntry.receipt_code == receipt_code)
        )
        return LedgerCheck("queued" if queued is not None else "missing")
    leaf = bytes(entry.leaf_hash)
    found = {"index": entry.idx, "leaf_hash": leaf.hex()}
    try:
        head = ledger_log.latest_checkpoint(db)
    except NotFound:
        return LedgerCheck("unverified", **found, reason="no signed checkpoint yet")
    log = current_log()
    try:
        checkpoint, _note = open_checkpoint(head.note, [log.signer.verifier()], log.origin)
    except NoteError as exc:
        return LedgerCheck("unverified", **found, reason=f"checkpoint signature: {exc}")
    signed = {
        "checkpoint_size": checkpoint.size,
        "checkpoint_root": checkpoint.root.hex(),
        "signed_at": head.signed_at,
    }
    if entry.idx >= checkpoint.size:
        return LedgerCheck("unverified", **found, **signed, reason="entry is newer than it")
    try:
        path = ledger_log.inclusion_proof(db, entry.idx, checkpoint.size)
    except LedgerError as exc:
        return LedgerCheck("unverified", **found, **signed, reason=str(exc))
    ok = merkle.verify_inclusion(leaf, entry.idx, checkpoint.size, path, checkpoint.root)
    return LedgerCheck(
        "verified" if ok else "unverified",
        **found,
        **signed,
        proof_length=len(path),
        reason=None if ok else "the proof does not lead to the signed root",
    )


@dataclass(frozen=True)
class LinkedMessage:
    """A message that produced a transaction, with the step it was part of and who it is."""

    message: Message
    step: str
    party: str | None  # "buyer", "seller", or None (a phone linked to neither)
    thread_before: int  # `before=` of the conversation view ending at its phone's last one here


def produced_by(db, transaction: Transaction, parties: dict[str, str]) -> list[LinkedMessage]:
    """The messages linked to `transaction`, oldest first (`parties`: phone -> buyer/seller)."""
    rows = db.execute(
        sa.select(Message, TransactionMessage.step)
        .join(TransactionMessage, TransactionMessage.message_id == Message.id)
        .where(TransactionMessage.transaction_id == transaction.id)
        .order_by(Message.id)
        .limit(MAX_MESSAGES)
    ).all()
    last = {message.phone: message.id for message, _ in rows}
    return [
        LinkedMessage(message, step.value, parties.get(message.phone), last[message.phone] + 1)
        for message, step in rows
    ]


@bp.get("/transactions/<int:transaction_id>")
def transaction(transaction_id: int) -> ResponseReturnValue:
    """One transaction: parties, goods, place, ledger entry and proof, flags and messages."""
    db = request_session()
    found = db.get(Transaction, transaction_id)
    if found is None:
        abort(404)
    audited_view("transaction.view", "transaction", found.id)
    links = db.execute(
        sa.select(PhoneLink.phone, PhoneLink.registrant_id).where(
            PhoneLink.registrant_id.in_([found.buyer_id, found.seller_id])
        )
    ).all()
    parties = {
        phone: "buyer" if registrant_id == found.buyer_id else "seller"
        for phone, registrant_id in links
    }
    ledger = check_in_ledger(db, found.receipt_code)
    flags = db.scalars(
        sa.select(RedFlag).where(RedFlag.transaction_id == found.id).order_by(RedFlag.id)
    ).all()
    linked = produced_by(db, found, parties)
    return render_template(
        "admin/transaction.html",
        transaction=found,
        ledger=ledger,
        flags=flags,
        linked=linked,
        messages=[] if linked else around(db, found, list(parties)),
        max_messages=MAX_MESSAGES,
    )


def around(db, found: Transaction, phones: list[str]) -> list[Message]:
    """The parties' messages from a while before the transaction until shortly after its decision
    (for transactions older than the links between messages and transactions)."""
    # Ids grow with time: start at the first message of the window (found on the created_at
    # index), then walk the parties' phones on their (phone, id) index.
    first_id = db.scalar(
        sa.select(Message.id)
        .where(Message.created_at >= found.created_at - MESSAGES_BEFORE)
        .order_by(Message.created_at)
        .limit(1)
    )
    until = (found.decided_at or found.created_at) + MESSAGES_AFTER
    messages = (
        list(
            db.scalars(
                sa.select(Message)
                .where(
                    Message.phone.in_(phones),
                    Message.id >= first_id,
                    Message.created_at <= until,
                )
                .order_by(Message.id)
                .limit(MAX_MESSAGES)
            )
        )
        if first_id is not None and phones
        else []
    )
    return messages
