"""Tests for registry.redflags: each rule flags what it must and not what it must not (at the edge
of its thresholds), flags are never raised twice, and the evaluation on proposal agrees with the
nightly run — on PostgreSQL and on SQLite (the embedded default).

Transactions are written directly (as `add_transaction` in the console tests does) unless a test
is about the proposal path, which goes through `registry.transactions.propose_purchase`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from registry import redflags
from registry.identifiers import Document, DocumentType, natural_person_ruc
from registry.models import (
    Initiator,
    PhoneLink,
    PhoneLinkState,
    RedFlag,
    Registrant,
    ReinfoRegistration,
    ReinfoStatus,
    Role,
    Transaction,
    TransactionStatus,
)
from registry.prices import ReferencePrice, pen_per_fine_gram
from registry.redflags import Scope, Thresholds, evaluate, evaluate_proposal, record, run_nightly
from registry.transactions import (
    Goods,
    declare_right,
    needs_right,
    propose_purchase,
    propose_sale,
)

NOW = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)  # 10:00 in Lima
TH = Thresholds()

JUANA_DNI = "45678912"
JUANA_RUC = natural_person_ruc(JUANA_DNI)  # 10456789124
PEDRO_DNI = "41234567"
PEDRO_RUC = natural_person_ruc(PEDRO_DNI)
COMPANY_RUC = "20295613620"
BUYER_RUC = "20131312955"
BUYER_PHONE = "+51987000001"
JUANA_PHONE = "+51987000011"

ANANEA = ("PUNO", "SAN ANTONIO DE PUTINA", "ANANEA", "211002")
PUTINA = ("PUNO", "SAN ANTONIO DE PUTINA", "PUTINA", "211001")  # same province as Ananea
JULIACA = ("PUNO", "SAN ROMAN", "JULIACA", "211101")  # same department, another province
HUEPETUHE = ("MADRE DE DIOS", "MANU", "HUEPETUHE", "170204")
CHALA = ("AREQUIPA", "CARAVELI", "CHALA", "040307")

# LBMA 3,300 USD/oz at 3.75 PEN/USD: S/ 397.8655 per fine gram.
LBMA, RATE = Decimal("3300"), Decimal("3.75")
REFERENCE = pen_per_fine_gram(LBMA, RATE)
FAIR = Decimal("380")  # soles per fine gram a buyer pays: 4.5 % under the reference


# --- the world ------------------------------------------------------------------------------------


def registrant(session: Session, role: Role, doc_type: DocumentType, number: str) -> Registrant:
    person = Registrant(
        role=role,
        document_type=doc_type,
        document_number=number,
        name=f"{role.value} {number}",
        created_at=NOW - dt.timedelta(days=400),
        updated_at=NOW - dt.timedelta(days=400),
    )
    session.add(person)
    session.flush()
    return person


def link(
    session: Session, person: Registrant, phone: str, state: PhoneLinkState = PhoneLinkState.ACTIVE
) -> None:
    session.add(
        PhoneLink(
            registrant_id=person.id,
            phone=phone,
            state=state,
            requested_at=NOW - dt.timedelta(days=300),
            decided_by="test",
            decided_at=NOW - dt.timedelta(days=300),
        )
    )
    session.flush()


def registration(
    session: Session,
    ruc: str,
    codigo: str,
    place: tuple[str, str, str, str | None],
    status: ReinfoStatus = ReinfoStatus.VIGENTE,
) -> ReinfoRegistration:
    department, province, district, ubigeo = place
    row = ReinfoRegistration(
        ruc=ruc,
        codigo_unico=codigo,
        holder_name="HOLDER",
        mining_right=f"RIGHT {codigo}",
        department=department,
        province=province,
        district=district,
        ubigeo=ubigeo,
        status=status,
        snapshot_date=NOW.date(),
        updated_at=NOW,
    )
    session.add(row)
    session.flush()
    return row


def price(session: Session, day: dt.date, lbma: Decimal = LBMA, rate: Decimal = RATE) -> None:
    session.add(
        ReferencePrice(price_date=day, lbma_usd_per_oz=lbma, pen_per_usd=rate, updated_at=NOW)
    )
    session.flush()


class World:
    """Two buyers, two miners and a company seller with their REINFO registrations and phones."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.buyer = registrant(session, Role.PLANT, DocumentType.RUC, BUYER_RUC)
        self.buyer2 = registrant(session, Role.STOCKPILER, DocumentType.RUC, "20100079501")
        self.juana = registrant(session, Role.MINER, DocumentType.DNI, JUANA_DNI)
        self.pedro = registrant(session, Role.MINER, DocumentType.DNI, PEDRO_DNI)
        self.company = registrant(session, Role.TRADER, DocumentType.RUC, COMPANY_RUC)
        link(session, self.buyer, BUYER_PHONE)
        link(session, self.juana, JUANA_PHONE)
        link(session, self.pedro, "+51987000012")
        registration(session, JUANA_RUC, "010149108", ANANEA)
        registration(session, PEDRO_RUC, "070012317", HUEPETUHE)
        registration(session, COMPANY_RUC, "040155607", CHALA)
        self.rucs = {self.juana.id: JUANA_RUC, self.pedro.id: PEDRO_RUC}
        self.rucs[self.company.id] = COMPANY_RUC

    def trade(
        self,
        at: dt.datetime,
        *,
        seller: Registrant | None = None,
        seller_ruc: str | None = None,
        buyer: Registrant | None = None,
        fine: str | Decimal | None = "20",
        price_pen: str | Decimal | None = None,
        material: str = "dore",
        place: tuple[str, str, str, str | None] | None = ANANEA,
        status: TransactionStatus = TransactionStatus.CONFIRMED,
        codigo_unico: str | None = None,
    ) -> Transaction:
        seller = seller or self.juana
        fine_g = Decimal(fine) if fine is not None else None
        if price_pen is None:
            price_pen = (fine_g or Decimal(1)) * FAIR
        department, province, district, ubigeo = place or (None, None, None, None)
        transaction = Transaction(
            code="123456",
            initiator=Initiator.BUYER,
            buyer_id=(buyer or self.buyer).id,
            seller_id=seller.id,
            seller_ruc=seller_ruc or self.rucs[seller.id],
            codigo_unico=codigo_unico,
            material=material,
            quantity=fine_g or Decimal(2),
            unit="g" if fine_g is not None else "kg",
            grade=Decimal("999.9") if fine_g is not None else None,
            fine_gold_g=fine_g,
            price_pen=Decimal(price_pen).quantize(Decimal("0.01")),
            department=department,
            province=province,
            district=district,
            ubigeo=ubigeo,
            status=status,
            created_at=at,
            expires_at=at + dt.timedelta(hours=48),
            decided_at=at if status is not TransactionStatus.PROPOSED else None,
        )
        self.session.add(transaction)
        self.session.flush()
        return transaction


@pytest.fixture
def world(db_session: Session) -> World:
    return World(db_session)


def window(days: int = 30, until: dt.datetime = NOW) -> Scope:
    return Scope.window(until - dt.timedelta(days=days), until)


def flagged(
    session: Session, rule: str, thresholds: Thresholds = TH, scope: Scope | None = None
) -> dict[int, redflags.Finding]:
    """The nightly findings of one rule over the last 30 days, by transaction id."""
    found = evaluate(session, scope or window(), thresholds, [rule])[rule]
    assert len({f.transaction_id for f in found}) == len(found), "one finding per transaction"
    return {f.transaction_id: f for f in found}


def stored_flags(session: Session) -> set[tuple[int, str]]:
    rows = session.execute(
        sa.select(RedFlag.transaction_id, RedFlag.rule).where(RedFlag.transaction_id.is_not(None))
    )
    return {(transaction_id, rule) for transaction_id, rule in rows}


def days_ago(days: float, *, hours: float = 0) -> dt.datetime:
    return NOW - dt.timedelta(days=days, hours=hours)


# --- thresholds -----------------------------------------------------------------------------------


class TestThresholds:
    def test_defaults_are_documented_values(self):
        assert (TH.r4_window_days, TH.r4_artisanal_g, TH.r4_small_scale_g) == (30, 3000, 42000)
        assert (TH.r8_below_pct, TH.r8_above_pct, TH.r9_threshold_pen) == (25, 10, 35000)

    def test_overrides_from_text_and_environment(self):
        changed = TH.with_overrides({"r4_artisanal_g": "1500.5", "r9_min_count": "4"})
        assert changed.r4_artisanal_g == Decimal("1500.5") and changed.r9_min_count == 4
        env = {
            "RECPO_REDFLAG_R8_MATERIALS": "dore, refined",
            "RECPO_REDFLAG_R10_LEVEL": "department",
        }
        from_env = Thresholds.from_env(env)
        assert from_env.r8_materials == ("dore", "refined")
        assert from_env.r10_level == "department"

    @pytest.mark.parametrize(
        "overrides",
        [{"r4_artisanal_g": "lots"}, {"no_such_threshold": "1"}, {"r10_level": "planet"}],
    )
    def test_bad_overrides_are_refused(self, overrides):
        with pytest.raises(ValueError):
            TH.with_overrides(overrides)


# --- R1 -------------------------------------------------------------------------------------------


def forget_juana(session: Session) -> None:
    session.execute(sa.delete(ReinfoRegistration).where(ReinfoRegistration.ruc == JUANA_RUC))


class TestR1SellerNotVigente:
    def test_vigente_seller_is_not_flagged(self, world):
        world.trade(days_ago(2))
        assert flagged(world.session, "R1") == {}

    def test_registration_suspended_after_the_sale_flags_it(self, world):
        sold = world.trade(days_ago(2))
        world.session.execute(
            sa.update(ReinfoRegistration)
            .where(ReinfoRegistration.ruc == JUANA_RUC)
            .values(status=ReinfoStatus.SUSPENDIDO)
        )
        finding = flagged(world.session, "R1")[sold.id]
        assert "no VIGENTE REINFO registration" in finding.reason
        assert finding.evidence["standing"] == "suspended"
        assert finding.evidence["suspendido"] == 1

    def test_one_vigente_registration_among_others_is_enough(self, world):
        registration(world.session, JUANA_RUC, "010149109", HUEPETUHE, ReinfoStatus.EXCLUIDO)
        world.trade(days_ago(2))
        assert flagged(world.session, "R1") == {}

    def test_seller_no_longer_in_reinfo(self, world):
        sold = world.trade(days_ago(2))
        world.session.execute(
            sa.delete(ReinfoRegistration).where(ReinfoRegistration.ruc == JUANA_RUC)
        )
        finding = flagged(world.session, "R1")[sold.id]
        assert "is not in REINFO" in finding.reason

    def test_only_live_transactions_in_the_window(self, world):
        world.trade(days_ago(2), status=TransactionStatus.DISPUTED)
        world.trade(days_ago(31))
        world.session.execute(
            sa.delete(ReinfoRegistration).where(ReinfoRegistration.ruc == JUANA_RUC)
        )
        assert flagged(world.session, "R1") == {}


# --- R2 -------------------------------------------------------------------------------------------


class TestR2MiningRight:
    def test_the_sellers_own_vigente_right_is_not_flagged(self, world):
        world.trade(days_ago(1), codigo_unico="010149108")
        world.trade(days_ago(1), seller=world.pedro, place=HUEPETUHE, codigo_unico="070012317")
        assert flagged(world.session, "R2") == {}

    def test_no_declared_right_is_not_judged(self, world):
        world.trade(days_ago(1), codigo_unico=None)
        assert flagged(world.session, "R2") == {}
        report = run_nightly(world.session, NOW, 30, TH, ["R2"])
        assert [(run.rule, run.evaluable, run.new) for run in report.runs] == [("R2", True, 0)]
        assert redflags.NOT_EVALUABLE == {}

    def test_another_holders_right_is_flagged_naming_the_holder(self, world):
        sold = world.trade(days_ago(1), codigo_unico="070012317")  # Pedro's right
        finding = flagged(world.session, "R2")[sold.id]
        assert finding.reason == (
            f"declared mining right 070012317 is not registered in REINFO to seller RUC "
            f"{JUANA_RUC}; REINFO lists it under RUC {PEDRO_RUC} (VIGENTE)"
        )
        assert finding.evidence == {
            "ruc": JUANA_RUC,
            "codigo_unico": "070012317",
            "standing": "not_linked",
            "declared_status": None,
            "seller_vigente_rights": ["010149108"],
            "other_holders": [{"ruc": PEDRO_RUC, "status": "VIGENTE"}],
            "reinfo_as_of": None,
        }

    def test_a_right_reinfo_does_not_list_is_flagged(self, world):
        sold = world.trade(days_ago(1), codigo_unico="099999999")
        finding = flagged(world.session, "R2")[sold.id]
        assert finding.reason.endswith("; REINFO lists no registration of that right")
        assert finding.evidence["other_holders"] == []

    @pytest.mark.parametrize(
        ("status", "standing"),
        [(ReinfoStatus.SUSPENDIDO, "suspended"), (ReinfoStatus.EXCLUIDO, "excluded")],
    )
    def test_the_sellers_right_not_vigente_is_flagged(self, world, status, standing):
        registration(world.session, JUANA_RUC, "010149109", PUTINA, status)
        sold = world.trade(days_ago(1), place=PUTINA, codigo_unico="010149109")
        finding = flagged(world.session, "R2")[sold.id]
        assert finding.reason == (
            f"declared mining right 010149109 (RIGHT 010149109) is {status.value} in REINFO "
            f"for seller RUC {JUANA_RUC}"
        )
        assert finding.evidence["standing"] == standing
        assert finding.evidence["declared_status"] == status.value
        assert finding.evidence["seller_vigente_rights"] == ["010149108"]
        assert finding.evidence["reinfo_as_of"] == NOW.date().isoformat()
        assert flagged(world.session, "R1") == {}  # the seller still holds a VIGENTE right

    def test_only_live_transactions_in_the_window(self, world):
        world.trade(days_ago(1), codigo_unico="099999999", status=TransactionStatus.EXPIRED)
        world.trade(days_ago(31), codigo_unico="099999999")
        assert flagged(world.session, "R2") == {}

    def test_a_sale_declared_from_anothers_right_is_flagged_at_proposal(self, world):
        registration(world.session, JUANA_RUC, "010149109", PUTINA)
        link(world.session, world.buyer2, "+51987000002")
        lot = goods("20", "7600")
        own = propose_sale(
            world.session, JUANA_PHONE, BUYER_RUC, lot, NOW, codigo_unico="010149109"
        )
        assert isinstance(own, Transaction), str(own)
        assert (own.codigo_unico, own.district) == ("010149109", "PUTINA")  # the right's place
        other = propose_sale(
            world.session, JUANA_PHONE, BUYER_RUC, lot, NOW, codigo_unico="070012317"
        )
        assert isinstance(other, Transaction), str(other)
        assert other.district == "ANANEA"  # not the seller's: the place of its first right
        raised = stored_flags(world.session)
        assert (other.id, "R2") in raised and (own.id, "R2") not in raised

    def test_the_seller_of_a_purchase_declares_it_before_confirming(self, world):
        registration(world.session, JUANA_RUC, "010149109", PUTINA)
        made = propose_purchase(
            world.session,
            BUYER_PHONE,
            Document(DocumentType.DNI, JUANA_DNI),
            goods("20", "7600"),
            NOW,
        )
        assert isinstance(made, Transaction), str(made)
        assert needs_right(made) and made.district == "ANANEA"
        declare_right(world.session, made, "010149109", NOW + dt.timedelta(minutes=5))
        assert not needs_right(made)
        assert (made.codigo_unico, made.district, made.ubigeo) == ("010149109", "PUTINA", "211001")
        assert (made.id, "R2") not in stored_flags(world.session)

        again = propose_purchase(
            world.session,
            BUYER_PHONE,
            Document(DocumentType.DNI, JUANA_DNI),
            goods("20", "7600"),
            NOW,
        )
        declare_right(world.session, again, "070012317", NOW + dt.timedelta(minutes=5))
        assert again.district == "ANANEA"  # unchanged: the right is not hers
        [flag] = world.session.scalars(
            sa.select(RedFlag).where(RedFlag.transaction_id == again.id, RedFlag.rule == "R2")
        )
        assert json.loads(flag.evidence)["other_holders"] == [
            {"ruc": PEDRO_RUC, "status": "VIGENTE"}
        ]
        assert run_nightly(world.session, NOW + dt.timedelta(hours=1), 30, TH, ["R2"]).new == 0


# --- R3 -------------------------------------------------------------------------------------------


class TestR3DistrictMismatch:
    def test_place_of_a_registration_is_not_flagged(self, world):
        world.trade(days_ago(1), place=ANANEA)
        world.trade(days_ago(1), place=(" puno", "San Antonio de Putina ", "ananea", None))
        world.trade(days_ago(1), place=("PUNO", "S.A. PUTINA", "ANANEA (RINCONADA)", "211002"))
        world.trade(days_ago(1), place=None)  # no place declared: nothing to compare
        assert flagged(world.session, "R3") == {}

    def test_place_matching_no_registration_is_flagged(self, world):
        sold = world.trade(days_ago(1), place=HUEPETUHE)
        finding = flagged(world.session, "R3")[sold.id]
        assert "HUEPETUHE, MANU, MADRE DE DIOS (170204)" in finding.reason
        assert finding.evidence["registered_places"] == ["ANANEA, SAN ANTONIO DE PUTINA, PUNO"]

    def test_same_district_name_in_another_province_is_flagged(self, world):
        sold = world.trade(days_ago(1), place=("PUNO", "SAN ROMAN", "ANANEA", None))
        assert sold.id in flagged(world.session, "R3")

    def test_seller_without_registrations_is_left_to_r1(self, world):
        world.trade(days_ago(1), seller_ruc="10999999990", place=HUEPETUHE)
        assert flagged(world.session, "R3") == {}


# --- R4 -------------------------------------------------------------------------------------------


class TestR4OverCapacity:
    def test_exactly_at_capacity_is_not_flagged(self, world):
        for days in (20, 10, 0):
            world.trade(days_ago(days), fine="1000")
        assert flagged(world.session, "R4") == {}

    def test_above_capacity_flags_the_transaction_that_crosses_it_and_later_ones(self, world):
        for days in (20, 10):
            world.trade(days_ago(days), fine="1000")
        crossing = world.trade(days_ago(1), fine="1000.01")
        later = world.trade(days_ago(0, hours=1), fine="5")
        found = flagged(world.session, "R4")
        assert set(found) == {crossing.id, later.id}
        evidence = found[crossing.id].evidence
        assert evidence["fine_gold_g_in_window"] == "3000.01"
        assert evidence["category"] == "artisanal" and evidence["transactions_in_window"] == 3
        assert "above the artisanal capacity of 3,000.00 g" in found[crossing.id].reason

    def test_the_window_rolls(self, world):
        world.trade(days_ago(30, hours=1), fine="2000")  # 30 days and an hour before
        today = world.trade(days_ago(0), fine="1500")
        assert flagged(world.session, "R4") == {}
        inside = world.trade(days_ago(29), fine="2000")  # 23 hours after the first
        assert set(flagged(world.session, "R4")) == {inside.id, today.id}

    def test_history_before_the_nightly_window_counts(self, world):
        world.trade(days_ago(40), fine="2999")  # 34 days before `late`: out of its window
        world.trade(days_ago(35), fine="1")  # before the 7-day run, within `late`'s 30 days
        late = world.trade(days_ago(6), fine="2999.5")
        assert set(flagged(world.session, "R4", scope=window(7))) == {late.id}

    def test_companies_have_the_small_scale_capacity(self, world):
        world.trade(days_ago(1), seller=world.company, fine="41000")
        assert flagged(world.session, "R4") == {}
        sold = world.trade(days_ago(0), seller=world.company, fine="1000.01")
        assert flagged(world.session, "R4")[sold.id].evidence["category"] == "small_scale"

    def test_disputed_and_gold_less_transactions_do_not_count(self, world):
        world.trade(days_ago(2), fine="2000", status=TransactionStatus.DISPUTED)
        world.trade(days_ago(2), fine=None, material="mercury")
        world.trade(days_ago(1), fine="1500")
        assert flagged(world.session, "R4") == {}

    def test_capacity_is_configurable(self, world):
        sold = world.trade(days_ago(1), fine="40")
        assert flagged(world.session, "R4") == {}
        subsistence = dataclasses.replace(TH, r4_artisanal_g=Decimal("34.5"))
        assert set(flagged(world.session, "R4", subsistence)) == {sold.id}


# --- R5 -------------------------------------------------------------------------------------------


class TestR5NewOrJump:
    def test_new_supplier_with_a_large_first_volume(self, world):
        first = world.trade(days_ago(3), fine="250")
        finding = flagged(world.session, "R5")[first.id]
        assert finding.evidence["pattern"] == "new_supplier_large_volume"
        assert "new supplier" in finding.reason

    def test_new_supplier_just_under_large_is_not_flagged(self, world):
        world.trade(days_ago(3), fine="249.99")
        assert flagged(world.session, "R5") == {}

    def test_three_earlier_transactions_make_a_known_supplier(self, world):
        for days in (40, 30, 20):
            world.trade(days_ago(days), fine="10")
        world.trade(days_ago(1), fine="260")  # 26 x, but only 3 earlier: not enough history
        assert flagged(world.session, "R5") == {}

    def test_a_long_pause_makes_a_new_supplier_again(self, world):
        for days in (400, 390, 380):
            world.trade(days_ago(days), fine="300")
        back = world.trade(days_ago(1), fine="300")
        assert set(flagged(world.session, "R5")) == {back.id}

    def test_sudden_jump_above_five_times_the_average(self, world):
        for days in range(50, 0, -10):  # five earlier sales of 20 g
            world.trade(days_ago(days), fine="20")
        world.trade(days_ago(0, hours=2), fine="100")  # exactly 5 x: not flagged
        assert flagged(world.session, "R5") == {}
        jump = world.trade(days_ago(0), fine="125")  # the average is now 33.33 g: 3.75 x
        assert flagged(world.session, "R5") == {}
        jump.fine_gold_g = Decimal("166.67")  # 5.0001 x
        world.session.flush()
        finding = flagged(world.session, "R5")[jump.id]
        assert finding.evidence["pattern"] == "sudden_jump"
        assert finding.evidence["earlier_average_g"] == "33.33"
        assert "5.0 times" in finding.reason

    def test_small_jumps_are_not_flagged(self, world):
        for days in range(50, 0, -10):
            world.trade(days_ago(days), fine="2")
        world.trade(days_ago(0), fine="49.99")  # 25 x, under the 50 g minimum
        assert flagged(world.session, "R5") == {}


# --- R6 -------------------------------------------------------------------------------------------


class TestR6SharedPhone:
    SHARED = "+51987000099"

    def test_phone_of_three_people_flags_their_sales(self, world):
        link(world.session, world.juana, self.SHARED, PhoneLinkState.REVOKED)
        link(world.session, world.pedro, self.SHARED, PhoneLinkState.REVOKED)
        third = registrant(world.session, Role.MINER, DocumentType.DNI, "40000001")
        link(world.session, third, self.SHARED)
        sold = world.trade(days_ago(1))
        finding = flagged(world.session, "R6")[sold.id]
        assert finding.phone == self.SHARED
        assert finding.evidence["phones"][self.SHARED] == {
            "people": 3,
            "documents": ["DNI 40000001", "DNI 41234567", "DNI 45678912"],
        }
        assert "linked to 3 different people" in finding.reason

    def test_two_people_are_not_enough(self, world):
        link(world.session, world.juana, self.SHARED, PhoneLinkState.REVOKED)
        link(world.session, world.pedro, self.SHARED)
        world.trade(days_ago(1))
        assert flagged(world.session, "R6") == {}

    def test_a_dni_and_its_ruc_are_one_person(self, world):
        juana_ruc = registrant(world.session, Role.MINER, DocumentType.RUC, JUANA_RUC)
        link(world.session, world.juana, self.SHARED, PhoneLinkState.REVOKED)
        link(world.session, juana_ruc, self.SHARED, PhoneLinkState.REVOKED)
        link(world.session, world.pedro, self.SHARED)
        world.trade(days_ago(1))
        assert flagged(world.session, "R6") == {}

    def test_pending_requests_do_not_count(self, world):
        link(world.session, world.juana, self.SHARED, PhoneLinkState.REVOKED)
        link(world.session, world.pedro, self.SHARED)
        third = registrant(world.session, Role.MINER, DocumentType.DNI, "40000001")
        link(world.session, third, self.SHARED, PhoneLinkState.PENDING)
        world.trade(days_ago(1))
        assert flagged(world.session, "R6") == {}


# --- R7 -------------------------------------------------------------------------------------------


class TestR7Mercury:
    def test_mercury_is_flagged_and_gold_is_not(self, world):
        mercury = world.trade(days_ago(1), fine=None, material="mercury", price_pen="900")
        world.trade(days_ago(1))
        world.trade(days_ago(1), fine=None, material="mercury", status=TransactionStatus.EXPIRED)
        found = flagged(world.session, "R7")
        assert set(found) == {mercury.id}
        assert found[mercury.id].evidence == {"quantity": "2", "unit": "kg"}


# --- R8 -------------------------------------------------------------------------------------------


def edge_price(fine: Decimal, pct: int, rounding: str) -> Decimal:
    """The total price at `pct` % of the reference for `fine` grams, rounded to céntimos."""
    exact = fine * LBMA / Decimal("31.1034768") * RATE * Decimal(100 + pct) / 100
    return exact.quantize(Decimal("0.01"), rounding=rounding)


class TestR8PriceOffReference:
    FINE = Decimal("100")

    @pytest.fixture(autouse=True)
    def prices(self, world):
        for back in range(0, 40):
            price(world.session, NOW.date() - dt.timedelta(days=back))

    def test_at_the_edges_it_is_not_flagged(self, world):
        world.trade(
            days_ago(1), fine=self.FINE, price_pen=edge_price(self.FINE, -25, ROUND_CEILING)
        )
        world.trade(days_ago(1), fine=self.FINE, price_pen=edge_price(self.FINE, 10, ROUND_FLOOR))
        world.trade(days_ago(1), fine=self.FINE, price_pen=self.FINE * REFERENCE)
        assert flagged(world.session, "R8") == {}

    def test_beyond_the_edges_it_is_flagged(self, world):
        low = world.trade(
            days_ago(1), fine=self.FINE, price_pen=edge_price(self.FINE, -25, ROUND_FLOOR) - 1
        )
        high = world.trade(
            days_ago(1), fine=self.FINE, price_pen=edge_price(self.FINE, 10, ROUND_CEILING) + 1
        )
        found = flagged(world.session, "R8")
        assert set(found) == {low.id, high.id}
        assert "25.0 % below the reference of S/ 397.87" in found[low.id].reason
        assert "10.0 % above" in found[high.id].reason
        assert found[low.id].evidence["reference_pen_per_fine_gram"] == "397.87"

    def test_exactly_on_the_edges(self, world):
        # 31,103.4768 USD/oz at 0.4 PEN/USD is S/ 400 per fine gram exactly (not a real price).
        world.session.execute(
            sa.update(ReferencePrice)
            .where(ReferencePrice.price_date == NOW.date())
            .values(lbma_usd_per_oz=Decimal("31103.4768"), pen_per_usd=Decimal("0.4"))
        )
        on_edges = [world.trade(NOW, fine=self.FINE, price_pen=p) for p in ("30000", "44000")]
        beyond = [world.trade(NOW, fine=self.FINE, price_pen=p) for p in ("29999.99", "44000.01")]
        found = flagged(world.session, "R8")
        assert set(found) == {t.id for t in beyond}
        assert not {t.id for t in on_edges} & set(found)

    def test_ore_is_not_compared(self, world):
        world.trade(days_ago(1), fine=self.FINE, material="ore", price_pen="1000")
        assert flagged(world.session, "R8") == {}

    def test_the_lima_date_picks_the_reference(self, world):
        # 03:00 UTC on 1 December is 22:00 on 30 November in Lima: that day's price applies.
        day = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
        price(world.session, dt.date(2026, 12, 1), lbma=Decimal("6600"))
        sold = world.trade(day, fine=self.FINE)
        assert flagged(world.session, "R8", scope=window(30, until=day)) == {}
        world.session.execute(
            sa.update(ReferencePrice)
            .where(ReferencePrice.price_date == dt.date(2026, 11, 30))
            .values(lbma_usd_per_oz=Decimal("6600"))
        )
        found = flagged(world.session, "R8", scope=window(30, until=day))
        assert found[sold.id].evidence["reference_date"] == "2026-11-30"
        assert found[sold.id].evidence["transaction_date_lima"] == "2026-11-30"

    def test_weekend_uses_the_last_price_and_stale_prices_none(self, world):
        world.session.execute(
            sa.delete(ReferencePrice).where(ReferencePrice.price_date > dt.date(2026, 11, 23))
        )
        week_old = world.trade(days_ago(0), fine=self.FINE, price_pen="10000")  # 7 days: used
        assert week_old.id in flagged(world.session, "R8")
        world.session.execute(
            sa.delete(ReferencePrice).where(ReferencePrice.price_date == dt.date(2026, 11, 23))
        )
        assert flagged(world.session, "R8") == {}  # 8 days old: no reference, no flag


# --- R9 -------------------------------------------------------------------------------------------


class TestR9Structuring:
    def test_third_just_below_in_a_week_is_flagged(self, world):
        world.trade(days_ago(6), fine="100", price_pen="34999.99")
        world.trade(days_ago(3), fine="100", price_pen="31500.00")
        assert flagged(world.session, "R9") == {}
        third = world.trade(days_ago(0), fine="100", price_pen="34000", buyer=world.buyer2)
        finding = flagged(world.session, "R9")[third.id]
        assert finding.evidence["just_below_by_seller"] == 3
        assert "3 by seller RUC 10456789124" in finding.reason

    @pytest.mark.parametrize("edge", ["35000.00", "31499.99"])
    def test_outside_the_band_does_not_count(self, world, edge):
        world.trade(days_ago(6), fine="100", price_pen="34000")
        world.trade(days_ago(3), fine="100", price_pen="34000")
        world.trade(days_ago(0), fine="100", price_pen=edge)
        assert flagged(world.session, "R9") == {}

    def test_spread_over_more_than_the_window_is_not_flagged(self, world):
        world.trade(days_ago(7, hours=1), fine="100", price_pen="34000")
        world.trade(days_ago(3), fine="100", price_pen="34000")
        world.trade(days_ago(0), fine="100", price_pen="34000")
        assert flagged(world.session, "R9") == {}

    def test_a_buyer_splitting_purchases_among_sellers(self, world):
        rucs = [natural_person_ruc(f"4{n:07d}") for n in range(6)]
        made = [
            world.trade(days_ago(6 - n), seller_ruc=ruc, fine="100", price_pen="33000")
            for n, ruc in enumerate(rucs)
        ]
        found = flagged(world.session, "R9")
        assert set(found) == {made[-1].id}
        assert found[made[-1].id].evidence["just_below_by_buyer"] == 6


# --- R10 ------------------------------------------------------------------------------------------


class TestR10DistantSameDay:
    def test_two_provinces_the_same_lima_day_flags_both(self, world):
        morning = world.trade(dt.datetime(2026, 11, 29, 14, 0, tzinfo=dt.UTC), place=ANANEA)
        evening = world.trade(dt.datetime(2026, 11, 30, 4, 0, tzinfo=dt.UTC), place=HUEPETUHE)
        found = flagged(world.session, "R10")
        assert set(found) == {morning.id, evening.id}  # 09:00 and 23:00 on 29 Nov in Lima
        evidence = found[morning.id].evidence
        assert evidence["date_lima"] == "2026-11-29"
        assert evidence["other_transactions"] == [
            {"transaction": evening.id, "place": "MADRE DE DIOS / MANU", "district": "HUEPETUHE"}
        ]

    def test_different_lima_days_are_not_flagged(self, world):
        world.trade(dt.datetime(2026, 11, 29, 4, 0, tzinfo=dt.UTC), place=ANANEA)  # 28 Nov Lima
        world.trade(dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC), place=HUEPETUHE)
        assert flagged(world.session, "R10") == {}

    def test_same_province_is_not_distant(self, world):
        world.trade(days_ago(1), place=ANANEA)
        world.trade(days_ago(1, hours=-2), place=PUTINA)
        assert flagged(world.session, "R10") == {}

    def test_the_level_is_configurable(self, world):
        world.trade(days_ago(1), place=ANANEA)
        world.trade(days_ago(1, hours=-2), place=JULIACA)
        assert len(flagged(world.session, "R10")) == 2
        by_department = dataclasses.replace(TH, r10_level="department")
        assert flagged(world.session, "R10", by_department) == {}


# --- recording: idempotence, proposal and nightly -----------------------------------------------


def busy_month(world: World) -> None:
    """A month of trades that trips every evaluable rule at least once."""
    for back in range(0, 40):
        price(world.session, NOW.date() - dt.timedelta(days=back))
    world.trade(days_ago(25), fine="1000")
    world.trade(days_ago(20), fine="1000")
    world.trade(days_ago(15), fine="1500", place=HUEPETUHE)  # R3, R4
    world.trade(days_ago(10), fine="100", price_pen="34000")
    world.trade(days_ago(9), fine="100", price_pen="34000")
    world.trade(days_ago(8), fine="100", price_pen="34000")  # R9
    world.trade(days_ago(5), seller=world.pedro, fine="300")  # R5
    world.trade(days_ago(5, hours=-3), seller=world.pedro, place=CHALA)  # R3, R10
    world.trade(days_ago(3), seller=world.pedro, fine="10", price_pen="1000")  # R8
    world.trade(days_ago(2), fine=None, material="mercury", price_pen="900")  # R7
    world.trade(days_ago(1), seller=world.company, fine="10")
    world.trade(days_ago(1, hours=1), codigo_unico="040155607")  # R2: the company's right
    world.session.execute(
        sa.update(ReinfoRegistration)
        .where(ReinfoRegistration.ruc == COMPANY_RUC)
        .values(status=ReinfoStatus.EXCLUIDO)
    )  # R1
    shared = "+51987000099"
    for person in (world.juana, world.pedro):
        link(world.session, person, shared, PhoneLinkState.REVOKED)
    link(world.session, registrant(world.session, Role.MINER, DocumentType.DNI, "40000001"), shared)


class TestRecording:
    def test_nightly_run_twice_adds_nothing(self, world):
        busy_month(world)
        first = run_nightly(world.session, NOW, 30, TH)
        rules = {rule for _, rule in stored_flags(world.session)}
        assert rules == {"R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10"}
        assert first.new == len(stored_flags(world.session))
        assert first.transactions == 12
        again = run_nightly(world.session, NOW, 30, TH)
        assert again.new == 0
        assert sum(run.found for run in again.runs) == first.new
        count = world.session.scalar(sa.select(sa.func.count()).select_from(RedFlag))
        assert count == first.new

    def test_flags_carry_reason_and_json_evidence(self, world):
        busy_month(world)
        run_nightly(world.session, NOW, 30, TH)
        for flag in world.session.scalars(sa.select(RedFlag)):
            assert flag.reason and len(flag.reason) <= 300
            assert isinstance(json.loads(flag.evidence), dict)
            assert flag.created_at == NOW and flag.status.value == "open"

    def test_an_existing_flag_is_not_raised_again(self, world):
        mercury = world.trade(days_ago(1), fine=None, material="mercury", price_pen="900")
        world.session.add(
            RedFlag(
                rule="R7",
                reason="mercury",
                transaction_id=mercury.id,
                evidence="{}",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        world.session.flush()
        assert run_nightly(world.session, NOW, 30, TH).new == 0

    def test_the_unique_index_holds_against_a_racing_insert(self, world):
        mercury = world.trade(days_ago(1), fine=None, material="mercury", price_pen="900")
        finding = redflags.Finding(mercury.id, "R7", "mercury")
        assert record(world.session, [finding, finding], NOW) == [finding]
        with pytest.raises(sa.exc.IntegrityError), world.session.begin_nested():
            world.session.add(
                RedFlag(
                    rule="R7",
                    reason="again",
                    transaction_id=mercury.id,
                    evidence="{}",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            world.session.flush()

    def test_the_window_limits_what_is_flagged(self, world):
        old = world.trade(days_ago(31), fine=None, material="mercury", price_pen="900")
        run_nightly(world.session, NOW, 30, TH)
        assert (old.id, "R7") not in stored_flags(world.session)
        run_nightly(world.session, NOW, 32, TH)
        assert (old.id, "R7") in stored_flags(world.session)


def goods(fine: str, price_pen: str, material: str = "dore") -> Goods:
    if material == "mercury":
        return Goods("mercury", Decimal(fine), "kg", None, None, Decimal(price_pen))
    return Goods(material, Decimal(fine), "g", Decimal("999.9"), Decimal(fine), Decimal(price_pen))


def propose(world: World, at: dt.datetime, lot: Goods, seller: str = JUANA_DNI) -> Transaction:
    made = propose_purchase(world.session, BUYER_PHONE, Document(DocumentType.DNI, seller), lot, at)
    assert isinstance(made, Transaction), str(made)
    made.status = TransactionStatus.CONFIRMED
    world.session.flush()
    return made


def proposals(world: World) -> None:
    """Proposals through `propose_purchase`, each evaluated as it is made."""
    for back in range(0, 40):
        price(world.session, NOW.date() - dt.timedelta(days=back))
    propose(world, days_ago(20), goods("300", "114000"))  # R5 (new, large)
    propose(world, days_ago(12), goods("1000", "380000"))
    propose(world, days_ago(11), goods("1000", "380000"))
    propose(world, days_ago(10), goods("800", "304000"))  # R4
    for hours in (0, 1, 2):
        propose(world, days_ago(5, hours=-hours), goods("90", "34000"))  # R9 on the third
    propose(world, days_ago(4), goods("10", "1000"))  # R8
    propose(world, days_ago(3), goods("2", "900", "mercury"))  # R7 (and _create's own)
    # A sale declared elsewhere earlier that day (written directly, evaluated as when proposed),
    # then a proposal in Ananea: R10 flags both.
    elsewhere = world.trade(days_ago(2, hours=2), place=HUEPETUHE)  # R3
    evaluate_proposal(world.session, elsewhere, elsewhere.created_at, TH)
    propose(world, days_ago(2), goods("20", "7600"))
    mixed = propose(world, days_ago(6), goods("20", "7600"), seller=PEDRO_DNI)
    declare_right(world.session, mixed, "010149108", days_ago(6))  # R2: Juana's right
    propose(world, days_ago(1), goods("20", "7600"), seller=PEDRO_DNI)  # nothing


class TestProposalAndNightlyAgree:
    def test_proposal_flags_equal_nightly_flags(self, world):
        proposals(world)
        on_proposal = stored_flags(world.session)
        assert {rule for _, rule in on_proposal} == {
            "R2",
            "R3",
            "R4",
            "R5",
            "R7",
            "R8",
            "R9",
            "R10",
        }
        world.session.execute(sa.delete(RedFlag))
        report = run_nightly(world.session, NOW, 30, TH)
        assert stored_flags(world.session) == on_proposal
        assert report.new == len(on_proposal)

    def test_proposal_then_nightly_adds_nothing(self, world):
        proposals(world)
        assert run_nightly(world.session, NOW, 30, TH).new == 0

    def test_mercury_is_flagged_once(self, world):
        for back in range(0, 3):
            price(world.session, NOW.date() - dt.timedelta(days=back))
        made = propose(world, NOW, goods("2", "900", "mercury"))
        rules = world.session.scalars(
            sa.select(RedFlag.rule).where(RedFlag.transaction_id == made.id)
        ).all()
        assert rules == ["R7"]

    def test_a_clean_proposal_raises_nothing(self, world):
        price(world.session, NOW.date())
        made = propose(world, NOW, goods("20", "7600"))
        assert stored_flags(world.session) == set()
        assert made.status is TransactionStatus.CONFIRMED

    def test_proposal_scope_is_the_new_transaction(self, world):
        proposals(world)
        made = propose(world, NOW, goods("20", "7600"), seller=PEDRO_DNI)
        scope = Scope.proposal(made)
        assert (scope.seller_ruc, scope.buyer_id, scope.since) == (PEDRO_RUC, world.buyer.id, NOW)
        assert evaluate(world.session, scope, TH) == {rule: [] for rule in redflags.RULES}


class TestSqlite:
    """The embedded default runs the same rules: on proposal, nightly, idempotent."""

    def test_proposal_and_nightly_agree(self, sqlite_database):
        with sqlite_database.transaction() as session:
            proposals(World(session))
            on_proposal = stored_flags(session)
            rules = {rule for _, rule in on_proposal}
            assert rules == {"R2", "R3", "R4", "R5", "R7", "R8", "R9", "R10"}
            session.execute(sa.delete(RedFlag))
            assert run_nightly(session, NOW, 30, TH).new == len(on_proposal)
            assert stored_flags(session) == on_proposal

    def test_nightly_twice(self, sqlite_database):
        with sqlite_database.transaction() as session:
            busy_month(World(session))
            first = run_nightly(session, NOW, 30, TH)
            rules = {rule for _, rule in stored_flags(session)}
            assert rules == {"R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10"}
            assert run_nightly(session, NOW, 30, TH).new == 0
        with sqlite_database.transaction() as session:
            count = session.scalar(sa.select(sa.func.count()).select_from(RedFlag))
            assert count == first.new


# --- the command ----------------------------------------------------------------------------------


class TestCommand:
    def test_flags_run_reports_each_rule_and_is_idempotent(self, runner, database, clock):
        with database.transaction() as session:
            world = World(session)
            world.trade(clock.now() - dt.timedelta(days=1), fine=None, material="mercury")
        result = runner.invoke(args=["registry", "flags", "run", "--since", "30"])
        assert result.exit_code == 0, result.output
        assert "R7: 1 new flag(s), 1 found" in result.output
        assert "R2: 0 new flag(s), 0 found" in result.output
        assert result.output.rstrip().splitlines()[-1].startswith("1 new flag(s)")
        again = runner.invoke(args=["registry", "flags", "run"])
        assert "R7: 0 new flag(s), 1 found" in again.output

    def test_bad_threshold_in_the_environment(self, runner, monkeypatch):
        monkeypatch.setenv("RECPO_REDFLAG_R9_MIN_COUNT", "many")
        result = runner.invoke(args=["registry", "flags", "run"])
        assert result.exit_code == 1
        assert "r9_min_count: 'many' is not a valid value" in result.output
