"""Transactions between buyers and sellers: who may propose, who must confirm, and the ledger.

A buyer proposes a purchase (COMPRA) and the seller confirms it from their own phone; or a miner
declares a sale (VENTA) and the buyer claims it with its code and confirms. Every rule about who
may trade lives here: the conversations ask, and get either a transaction or a `Refusal` with a
reason for the user (translated by the caller) and, where DGFM should know, a red flag.

The seller also declares the mining right (REINFO código único) the gold comes from: a miner
when declaring a sale, the seller of a purchase before confirming it (`declare_right`). The
transaction's place is that right's registration when the seller holds it; red flag R2 says when
the seller does not (or not VIGENTE).

On confirmation the record is appended to the ledger in the same database transaction and both
parties get the receipt code.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from recpo.i18n import N_
from registry.identifiers import Document, DocumentType, dni_from_ruc, natural_person_ruc
from registry.lookup import (
    Standing,
    registration_of,
    rights_naming_no_person,
    seller_standing,
)
from registry.models import (
    Initiator,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    RegistrantStatus,
    ReinfoRegistration,
    Role,
    Transaction,
    TransactionStatus,
)
from registry.phones import active_registrant
from registry.redflags import evaluate_proposal

DEFAULT_TTL = dt.timedelta(hours=48)
LEDGER_KIND = "recpo.transaction"


class Ledger(Protocol):
    """What the registry needs from the ledger: append a record, get its receipt code."""

    def append(self, session: Session, kind: str, body: dict) -> object: ...

    def commit(self, label: str, value: str) -> str: ...


@dataclass(frozen=True)
class Refusal:
    """Why a request cannot go ahead: an untranslated reason and its parameters."""

    reason: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.reason % self.params if self.params else self.reason


@dataclass(frozen=True)
class Goods:
    """What changes hands, already parsed and checked for plausibility."""

    material: str
    quantity: Decimal
    unit: str
    grade: Decimal | None
    fine_gold_g: Decimal | None
    price_pen: Decimal


NOT_A_BUYER = N_("This phone is not registered to an active buyer. Send ALTA <RUC> to ask for it.")
NOT_A_SELLER = N_("This phone is not registered to a miner. Send ALTA <DNI or RUC> to ask for it.")
REGISTRANT_SUSPENDED = N_("Your registration is suspended. Contact DGFM.")
SELLER_NO_PHONE = N_(
    "The seller %(document)s has no registered phone to confirm. "
    "They can send ALTA %(document)s from their phone."
)
BUYER_UNKNOWN = N_("RUC %(ruc)s is not a registered buyer.")
SAME_PARTY = N_("Buyer and seller cannot be the same registrant.")
NO_SUCH_CODE = N_("There is no pending transaction with code %(code)s.")
NOT_YOURS = N_("Transaction %(code)s is not waiting for this phone.")
EXPIRED = N_("Transaction %(code)s has expired.")

STANDING_REASONS = {
    Standing.NOT_IN_REINFO: N_("The seller (RUC %(ruc)s) is not in REINFO: the sale is refused."),
    Standing.SUSPENDED: N_("The seller (RUC %(ruc)s) is SUSPENDED in REINFO: the sale is refused."),
    Standing.EXCLUDED: N_("The seller (RUC %(ruc)s) is EXCLUDED from REINFO: the sale is refused."),
    Standing.NO_RUC: N_(
        "A carné de extranjería cannot be checked in REINFO: give the seller's RUC."
    ),
}


def flag(
    session: Session,
    rule: str,
    reason: str,
    now: dt.datetime,
    *,
    transaction: Transaction | None = None,
    phone: str | None = None,
    document: str | None = None,
    evidence: dict | None = None,
) -> RedFlag:
    """Record something DGFM should review."""
    red_flag = RedFlag(
        rule=rule,
        reason=reason[:300],
        transaction_id=transaction.id if transaction is not None else None,
        phone=phone,
        document=document,
        evidence=json.dumps(evidence or {}, sort_keys=True, default=str),
        created_at=now,
        updated_at=now,
    )
    session.add(red_flag)
    return red_flag


def _as_buyer(registrant: Registrant | None) -> Registrant | Refusal:
    """The phone's registrant if it may buy, else why not."""
    if registrant is None or not registrant.role.is_buyer:
        return Refusal(NOT_A_BUYER)
    if registrant.status is not RegistrantStatus.ACTIVE:
        return Refusal(REGISTRANT_SUSPENDED)
    return registrant


def _seller_registrant(session: Session, document: Document) -> Registrant | None:
    """Find the seller by the document given, or by its natural-person RUC / DNI twin."""
    candidates = [(document.type, document.number)]
    if document.type is DocumentType.DNI:
        candidates.append((DocumentType.RUC, natural_person_ruc(document.number)))
    elif document.type is DocumentType.RUC:
        dni = dni_from_ruc(document.number)
        if dni:
            candidates.append((DocumentType.DNI, dni))
    return session.scalars(
        sa.select(Registrant).where(
            sa.tuple_(Registrant.document_type, Registrant.document_number).in_(candidates)
        )
    ).first()


def has_active_phone(session: Session, registrant: Registrant) -> str | None:
    """Return one active phone of the registrant (the newest), if any."""
    return session.scalar(
        sa.select(PhoneLink.phone)
        .where(PhoneLink.registrant_id == registrant.id, PhoneLink.state == PhoneLinkState.ACTIVE)
        .order_by(PhoneLink.id.desc())
        .limit(1)
    )


def check_seller(
    session: Session, document: Document, now: dt.datetime, phone: str | None
) -> tuple[Registrant, object] | Refusal:
    """May this document sell today, and can they confirm from a phone? Refusals are flagged."""
    standing = seller_standing(session, document)
    if not standing.may_sell:
        reason = STANDING_REASONS[standing.standing]
        rule = "R1"
        flag(
            session,
            rule,
            f"refused: {standing}",
            now,
            phone=phone,
            document=document.display,
            evidence={"standing": standing.standing.value, "ruc": standing.ruc},
        )
        return Refusal(reason, {"ruc": standing.ruc or document.number})
    seller = _seller_registrant(session, document)
    if seller is None or has_active_phone(session, seller) is None:
        return Refusal(SELLER_NO_PHONE, {"document": document.number})
    if seller.status is not RegistrantStatus.ACTIVE:
        return Refusal(REGISTRANT_SUSPENDED)
    return seller, standing


def _new_code(session: Session) -> str:
    while True:
        code = f"{secrets.randbelow(1_000_000):06d}"
        taken = session.scalar(
            sa.select(Transaction.id).where(
                Transaction.code == code, Transaction.status == TransactionStatus.PROPOSED
            )
        )
        if taken is None:
            return code


def _create(
    session: Session,
    initiator: str,
    buyer: Registrant,
    seller: Registrant,
    standing: object,
    goods: Goods,
    now: dt.datetime,
    ttl: dt.timedelta,
    codigo_unico: str | None = None,
) -> Transaction:
    registration = standing.registrations[0] if standing.registrations else None
    if codigo_unico is not None:
        registration = registration_of(session, standing.ruc, codigo_unico) or registration
    transaction = Transaction(
        code=_new_code(session),
        initiator=initiator,
        buyer_id=buyer.id,
        seller_id=seller.id,
        seller_ruc=standing.ruc,
        codigo_unico=codigo_unico,
        material=goods.material,
        quantity=goods.quantity,
        unit=goods.unit,
        grade=goods.grade,
        fine_gold_g=goods.fine_gold_g,
        price_pen=goods.price_pen,
        status=TransactionStatus.PROPOSED,
        created_at=now,
        expires_at=now + ttl,
    )
    _place_at(transaction, registration)
    session.add(transaction)
    session.flush()
    if goods.material == "mercury":
        flag(
            session,
            "R7",
            "mercury transaction (controlled input, Minamata Convention)",
            now,
            transaction=transaction,
            evidence={"quantity": str(goods.quantity), "unit": goods.unit},
        )
    evaluate_proposal(session, transaction, now)
    return transaction


def _place_at(transaction: Transaction, registration: ReinfoRegistration | None) -> None:
    """Copy the place of a REINFO registration onto the transaction."""
    transaction.department = registration.department if registration else None
    transaction.province = registration.province if registration else None
    transaction.district = registration.district if registration else None
    transaction.ubigeo = registration.ubigeo if registration else None


def propose_purchase(
    session: Session,
    buyer_phone: str,
    seller_document: Document,
    goods: Goods,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
) -> Transaction | Refusal:
    """A buyer registers a purchase; the seller must confirm it."""
    buyer = _as_buyer(active_registrant(session, buyer_phone))
    if isinstance(buyer, Refusal):
        return buyer
    checked = check_seller(session, seller_document, now, buyer_phone)
    if isinstance(checked, Refusal):
        return checked
    seller, standing = checked
    if seller.id == buyer.id:
        return Refusal(SAME_PARTY)
    return _create(session, "buyer", buyer, seller, standing, goods, now, ttl)


def find_buyer(session: Session, ruc: str) -> Registrant | Refusal:
    """Return the active buyer registered with `ruc`."""
    buyer = session.scalars(
        sa.select(Registrant).where(
            Registrant.document_type == DocumentType.RUC, Registrant.document_number == ruc
        )
    ).one_or_none()
    if buyer is None or not buyer.role.is_buyer:
        return Refusal(BUYER_UNKNOWN, {"ruc": ruc})
    if buyer.status is not RegistrantStatus.ACTIVE:
        return Refusal(BUYER_UNKNOWN, {"ruc": ruc})
    return buyer


def propose_sale(
    session: Session,
    seller_phone: str,
    buyer_ruc: str,
    goods: Goods,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    codigo_unico: str | None = None,
) -> Transaction | Refusal:
    """A miner declares a sale from the mining right `codigo_unico`; the buyer confirms it."""
    seller = active_registrant(session, seller_phone)
    if seller is None or seller.role is not Role.MINER:
        return Refusal(NOT_A_SELLER)
    document = Document(seller.document_type, seller.document_number)
    checked = check_seller(session, document, now, seller_phone)
    if isinstance(checked, Refusal):
        return checked
    _, standing = checked
    buyer = find_buyer(session, buyer_ruc)
    if isinstance(buyer, Refusal):
        return buyer
    return _create(session, "seller", buyer, seller, standing, goods, now, ttl, codigo_unico)


def needs_right(transaction: Transaction) -> bool:
    """Whether the seller must still declare the mining right (a purchase awaiting the seller)."""
    return transaction.initiator == Initiator.BUYER and transaction.codigo_unico is None


def declare_right(
    session: Session, transaction: Transaction, codigo_unico: str, now: dt.datetime
) -> None:
    """The seller of a purchase names the mining right the gold comes from (before confirming).

    The place becomes that right's registration when the seller holds it, and the rules run
    again for the transaction (R2 first among them; a flag already raised is not raised again).
    """
    transaction.codigo_unico = codigo_unico
    registration = registration_of(session, transaction.seller_ruc, codigo_unico)
    if registration is not None:
        _place_at(transaction, registration)
    session.flush()
    evaluate_proposal(session, transaction, now)


def may_declare(registrant: Registrant | None, sale: bool) -> Refusal | None:
    """Check at once that a phone's registrant (`active_registrant`, None if the phone has none)
    may declare a purchase (a buyer) or a sale (a miner)."""
    if not sale:
        buyer = _as_buyer(registrant)
        return buyer if isinstance(buyer, Refusal) else None
    if registrant is None or registrant.role is not Role.MINER:
        return Refusal(NOT_A_SELLER)
    if registrant.status is not RegistrantStatus.ACTIVE:
        return Refusal(REGISTRANT_SUSPENDED)
    return None


def awaiting(session: Session, phone: str, now: dt.datetime) -> list[Transaction]:
    """Return the open transactions this phone may confirm (the party who did not propose)."""
    registrant = active_registrant(session, phone)
    if registrant is None:
        return []
    return list(
        session.scalars(
            sa.select(Transaction)
            .where(
                Transaction.status == TransactionStatus.PROPOSED,
                Transaction.expires_at > now,
                sa.or_(
                    sa.and_(
                        Transaction.initiator == "buyer", Transaction.seller_id == registrant.id
                    ),
                    sa.and_(
                        Transaction.initiator == "seller", Transaction.buyer_id == registrant.id
                    ),
                ),
            )
            .order_by(Transaction.id)
        )
    )


def find_open(session: Session, code: str, phone: str, now: dt.datetime) -> Transaction | Refusal:
    """Return the open transaction `code` if this phone is the party who must answer it."""
    transaction = session.scalars(
        sa.select(Transaction)
        .where(Transaction.code == code, Transaction.status == TransactionStatus.PROPOSED)
        .with_for_update()
    ).one_or_none()
    if transaction is None:
        return Refusal(NO_SUCH_CODE, {"code": code})
    if transaction.expires_at <= now:
        return Refusal(EXPIRED, {"code": code})
    if transaction not in awaiting(session, phone, now):
        return Refusal(NOT_YOURS, {"code": code})
    return transaction


def ledger_body(transaction: Transaction, ledger: Ledger, right_is_public: bool = False) -> dict:
    """Return the public ledger record: goods, place, time; parties only as commitments.

    The mining right is written as it is when `right_is_public` (REINFO lists it only under
    companies), else as a commitment: the code of a natural person's right names that person.
    """
    buyer, seller = transaction.buyer, transaction.seller
    code = transaction.codigo_unico
    return {
        "transaction": transaction.id,
        "material": transaction.material,
        "quantity": f"{transaction.quantity.normalize():f}",
        "unit": transaction.unit,
        "grade": f"{transaction.grade.normalize():f}" if transaction.grade is not None else None,
        "fine_gold_g": (
            f"{transaction.fine_gold_g.normalize():f}"
            if transaction.fine_gold_g is not None
            else None
        ),
        "price_pen": f"{transaction.price_pen:.2f}",
        "department": transaction.department,
        "province": transaction.province,
        "district": transaction.district,
        "ubigeo": transaction.ubigeo,
        "declared_by": transaction.initiator,
        "buyer": ledger.commit("buyer", f"{buyer.document_type.value}:{buyer.document_number}"),
        "seller": ledger.commit("seller", f"{seller.document_type.value}:{seller.document_number}"),
        "seller_reinfo_ruc": ledger.commit("ruc", transaction.seller_ruc),
        "codigo_unico": code if code and right_is_public else None,
        "codigo_unico_commitment": (
            ledger.commit("codigo_unico", code) if code and not right_is_public else None
        ),
        "proposed_at": transaction.created_at.isoformat(),
        "confirmed_at": transaction.decided_at.isoformat() if transaction.decided_at else None,
    }


def confirm(session: Session, transaction: Transaction, ledger: Ledger, now: dt.datetime) -> str:
    """Confirm and append to the ledger in this database transaction; return the receipt code."""
    transaction.status = TransactionStatus.CONFIRMED
    transaction.decided_at = now
    code = transaction.codigo_unico
    public = code is not None and code in rights_naming_no_person(session, {code})
    pending = ledger.append(session, LEDGER_KIND, ledger_body(transaction, ledger, public))
    transaction.receipt_code = pending.receipt_code
    return pending.receipt_code


def dispute(session: Session, transaction: Transaction, phone: str, now: dt.datetime) -> None:
    """The other party said NO: the transaction is disputed and DGFM is told."""
    transaction.status = TransactionStatus.DISPUTED
    transaction.decided_at = now
    flag(
        session,
        "DISPUTE",
        f"transaction {transaction.id} rejected by the other party",
        now,
        transaction=transaction,
        phone=phone,
    )


def expire_due(session: Session, now: dt.datetime, limit: int = 500) -> list[Transaction]:
    """Expire open transactions whose time ran out; return them (to notify the parties)."""
    due = list(
        session.scalars(
            sa.select(Transaction)
            .where(Transaction.status == TransactionStatus.PROPOSED, Transaction.expires_at <= now)
            .order_by(Transaction.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for transaction in due:
        transaction.status = TransactionStatus.EXPIRED
        transaction.decided_at = now
    return due
