"""The partner API (/api/v1): tokens and scopes, every endpoint's filters, pagination, personal
data, RFC 9457 errors, the audit log, rate limits and the `recpo api` commands."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

from gateway.ratelimit import Rate
from recpo.clock import LIMA
from registry.demo import seed_demo
from registry.identifiers import natural_person_ruc
from registry.models import (
    FlagStatus,
    Initiator,
    RedFlag,
    Registrant,
    ReinfoRegistration,
    Transaction,
    TransactionStatus,
)
from registry.partners import ApiCall, PartnerToken, create_token, hash_token

PLANT = "20131312955"  # Planta de Beneficio Oro Sur (RECPO-0001)
STOCKPILER = "20100079501"  # Acopio Huepetuhe (RECPO-0002)
JUANA = "45678912"  # miner in Ananea, Puno: VIGENTE
PEDRO = "41234567"  # miner in Huepetuhe, Madre de Dios: one VIGENTE, one EXCLUIDO
ROSA = "40000001"  # miner in Chala, Arequipa: SUSPENDIDO
ALL_READ = "transactions:read,registrants:read,flags:read,aggregates:read"
PERSONAL_KEYS = {"document_type", "document_number", "name", "reinfo_ruc"}
PROBLEM = "application/problem+json"
PUNO_WEEK = "from=2026-11-23&to=2026-11-29"


def lima(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """An instant given in Lima wall time, November 2026."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=LIMA).astimezone(dt.UTC)


@dataclass
class Market:
    """Registrants by document number and transactions / flags by label."""

    registrants: dict[str, int]
    transactions: dict[str, int]
    flags: dict[str, int]

    def ids(self, *labels: str) -> set[int]:
        return {self.transactions[label] for label in labels}


def _add(session, registrants, at, label, found, **fields):
    seller = fields.pop("seller", JUANA)
    values = {
        "code": "123456",
        "initiator": Initiator.BUYER,
        "buyer_id": registrants[fields.pop("buyer", PLANT)],
        "seller_id": registrants[seller],
        "seller_ruc": natural_person_ruc(seller),
        "material": "dore",
        "quantity": Decimal("25.5"),
        "unit": "g",
        "grade": Decimal("850"),
        "fine_gold_g": Decimal("21.68"),
        "price_pen": Decimal("5400.00"),
        "department": "PUNO",
        "province": "SAN ANTONIO DE PUTINA",
        "district": "ANANEA",
        "ubigeo": "211002",
        "status": TransactionStatus.CONFIRMED,
        "created_at": at,
        "expires_at": at + dt.timedelta(hours=48),
        "decided_at": at + dt.timedelta(minutes=5),
        **fields,
    }
    transaction = Transaction(**values)
    session.add(transaction)
    session.flush()
    found[label] = transaction.id
    return transaction


def _flag(session, rule, at, found, label, **fields):
    flag = RedFlag(rule=rule, created_at=at, updated_at=at, **fields)
    session.add(flag)
    session.flush()
    found[label] = flag.id


@pytest.fixture
def market(database, clock) -> Market:
    """A week of Puno trades (Mon 23 to Sun 29 November 2026, ISO week 48), one the Sunday
    before and one the Monday after, a Madre de Dios trade, and red flags."""
    transactions: dict[str, int] = {}
    flags: dict[str, int] = {}
    with database.transaction() as session:
        seed_demo(session, clock.now())
        registrants = dict(
            session.execute(sa.select(Registrant.document_number, Registrant.id)).all()
        )
        _add(session, registrants, lima(22, 23, 59), "before", transactions)
        for day in range(23, 30):
            _add(session, registrants, lima(day, 9), f"dore-{day}", transactions)
            _add(
                session,
                registrants,
                lima(day, 23, 30),  # already the next day in UTC
                f"native-{day}",
                transactions,
                buyer=STOCKPILER,
                material="native",
                quantity=Decimal("10"),
                grade=Decimal("900"),
                fine_gold_g=Decimal("9.00"),
                price_pen=Decimal("2500.00"),
                province="PUNO",
                district="PUNO",
                ubigeo="210101",
                status=TransactionStatus.DISPUTED if day == 25 else TransactionStatus.CONFIRMED,
            )
        mercury = _add(
            session,
            registrants,
            lima(26, 12),
            "mercury",
            transactions,
            material="mercury",
            quantity=Decimal("2"),
            unit="kg",
            grade=None,
            fine_gold_g=None,
            price_pen=Decimal("3000.00"),
        )
        mdd = _add(
            session,
            registrants,
            lima(24, 10),
            "mdd",
            transactions,
            seller=PEDRO,
            buyer=STOCKPILER,
            department="MADRE DE DIOS",
            province="MANU",
            district="HUEPETUHE",
            ubigeo="170204",
        )
        _add(session, registrants, lima(30, 0, 1), "after", transactions)
        _flag(
            session,
            "R7",
            lima(26, 12),
            flags,
            "r7",
            reason=f"mercury sold by DNI {JUANA} from +51987000011",
            transaction_id=mercury.id,
            phone="+51987000011",
            document=JUANA,
            evidence=json.dumps({"material": "mercury", "seller": JUANA}),
        )
        _flag(
            session,
            "R3",
            lima(24, 10),
            flags,
            "r3",
            reason="district differs from the REINFO registration",
            transaction_id=mdd.id,
            status=FlagStatus.IN_REVIEW,
        )
        _flag(
            session,
            "R1",
            lima(27, 8),
            flags,
            "r1",
            reason=f"RUC {natural_person_ruc(ROSA)} is SUSPENDED in REINFO",
            document=ROSA,
        )
    return Market(registrants, transactions, flags)


@pytest.fixture
def token(database, clock):
    """`token("scope,scope")` creates a token and returns the Authorization header."""

    def make(scopes: str = ALL_READ, institution: str = "SUNAT") -> dict[str, str]:
        with database.transaction() as session:
            new = create_token(session, institution, scopes, clock.now())
        return {"Authorization": f"Bearer {new.secret}"}

    return make


def problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["type"].endswith(f"/api/v1/problems/{slug}")
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def walk(client, headers, path: str, limit: int) -> tuple[list[int], int]:
    """Follow next_cursor to the end; return every id seen and the number of pages."""
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.json
        body = response.json
        pages += 1
        assert len(body["data"]) <= limit
        seen.extend(item["id"] for item in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages
        assert len(body["data"]) == limit


# --- authentication and scopes ----------------------------------------------------------------

ENDPOINTS = [
    ("/api/v1/transactions", "transactions:read"),
    ("/api/v1/transactions/{mercury}", "transactions:read"),
    (f"/api/v1/registrants/{JUANA}", "registrants:read"),
    ("/api/v1/flags", "flags:read"),
    (f"/api/v1/aggregates?{PUNO_WEEK}", "aggregates:read"),
]


def _url(template: str, market: Market) -> str:
    return template.format(mercury=market.transactions["mercury"])


class TestAuthentication:
    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    @pytest.mark.parametrize(
        ("header", "error"),
        [
            (None, None),
            ("Bearer recpo_not-a-token", "invalid_token"),
            ("Bearer something-else", "invalid_token"),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer ", None),
        ],
    )
    def test_no_or_bad_token_is_401(self, client, market, path, scope, header, error):
        headers = {"Authorization": header} if header else {}
        response = client.get(_url(path, market), headers=headers)
        problem(response, 401, "unauthorized")
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="recpo-api"')
        assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)

    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    def test_scope_decides(self, client, market, token, path, scope):
        others = ",".join(s for s in ALL_READ.split(",") if s != scope) + ",personal_data"
        refused = client.get(_url(path, market), headers=token(others))
        body = problem(refused, 403, "insufficient-scope")
        assert body["required_scope"] == scope
        assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
        allowed = client.get(_url(path, market), headers=token(scope))
        assert allowed.status_code == 200
        assert allowed.mimetype == "application/json"
        assert allowed.headers["Cache-Control"] == "no-store"

    @pytest.mark.parametrize(("path", "scope"), ENDPOINTS)
    def test_revoked_token_is_refused(self, client, market, token, runner, path, scope):
        headers = token(ALL_READ, institution="UIF-Perú")
        assert client.get(_url(path, market), headers=headers).status_code == 200
        prefix = headers["Authorization"].removeprefix("Bearer ")[:12]
        result = runner.invoke(args=["api", "revoke-token", prefix])
        assert result.exit_code == 0, result.output
        response = client.get(_url(path, market), headers=headers)
        body = problem(response, 401, "unauthorized")
        assert "revoked" in body["detail"]

    def test_only_the_hash_is_stored(self, client, token, db_session):
        secret = token()["Authorization"].removeprefix("Bearer ")
        assert secret.startswith("recpo_") and len(secret) == 6 + 43
        row = db_session.scalars(sa.select(PartnerToken)).one()
        assert row.token_hash == hash_token(secret)
        assert secret not in {row.token_hash, row.token_prefix, row.scopes, row.institution}

    @pytest.mark.parametrize(
        "path", ["/api/v1/openapi.json", "/api/v1/", "/api/v1/problems/rate-limited"]
    )
    def test_public_documents_need_no_token(self, client, path):
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "application/json"

    @pytest.mark.parametrize(
        ("method", "path", "status", "slug"),
        [
            ("GET", "/api/v1/nothing-here", 404, "not-found"),
            ("GET", "/api/v1/transactions/abc", 404, "not-found"),
            ("GET", "/api/v1/problems/no-such-problem", 404, "not-found"),
            # A line break in a path: no route matches it at all, not even the catch-all.
            ("GET", "/api/v1/transactions/ab%0Acd", 404, "not-found"),
            ("GET", "/api/v1/nothing%0Ahere", 404, "not-found"),
            ("POST", "/api/v1/transactions", 405, "method-not-allowed"),
            ("DELETE", "/api/v1/flags", 405, "method-not-allowed"),
        ],
    )
    def test_unknown_paths_and_methods_are_problems(self, client, method, path, status, slug):
        problem(client.open(path, method=method), status, slug)


# --- transactions -------------------------------------------------------------------------------

PUNO = [f"{kind}-{day}" for kind in ("dore", "native") for day in range(23, 30)] + ["mercury"]
DORE_ANANEA = [f"dore-{day}" for day in range(23, 30)] + ["mercury"]
EVERYTHING = [*PUNO, "before", "after", "mdd"]


class TestTransactions:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", EVERYTHING),
            (f"{PUNO_WEEK}&department=PUNO", PUNO),
            (f"{PUNO_WEEK}&department=puno", PUNO),
            (f"{PUNO_WEEK}&ubigeo=21", PUNO),
            (f"{PUNO_WEEK}&ubigeo=2110", DORE_ANANEA),
            (f"{PUNO_WEEK}&ubigeo=211002", DORE_ANANEA),
            (f"{PUNO_WEEK}&ubigeo=210101", [f"native-{d}" for d in range(23, 30)]),
            ("department=MADRE%20DE%20DIOS", ["mdd"]),
            (PUNO_WEEK, [*PUNO, "mdd"]),
            ("from=2026-11-29&to=2026-11-29", ["dore-29", "native-29"]),  # 23:30 Lima counts
            ("from=2026-11-30", ["after"]),
            ("to=2026-11-22", ["before"]),
            ("material=mercury", ["mercury"]),
            (f"material=native&{PUNO_WEEK}", [f"native-{d}" for d in range(23, 30)]),
            (f"buyer_ruc={STOCKPILER}", [*(f"native-{d}" for d in range(23, 30)), "mdd"]),
            ("buyer_ruc=20131312955&ubigeo=17", []),
            ("flagged=true", ["mercury", "mdd"]),
            ("flagged=false&department=MADRE%20DE%20DIOS", []),
            ("status=disputed", ["native-25"]),
            ("status=proposed", []),
        ],
    )
    def test_filters(self, client, market, token, query, expected):
        response = client.get(f"/api/v1/transactions?{query}&limit=500", headers=token())
        assert response.status_code == 200, response.json
        ids = [item["id"] for item in response.json["data"]]
        assert ids == sorted(market.ids(*expected))
        assert response.json["next_cursor"] is None

    def test_a_week_of_puno_as_a_partner_sees_it(self, client, market, token):
        response = client.get(
            f"/api/v1/transactions?department=PUNO&{PUNO_WEEK}&status=confirmed",
            headers=token("transactions:read"),
        )
        data = response.json["data"]
        assert len(data) == 14  # 15 in the week, one disputed
        mercury = next(item for item in data if item["material"] == "mercury")
        assert mercury == {
            "id": market.transactions["mercury"],
            "status": "confirmed",
            "declared_by": "buyer",
            "material": "mercury",
            "quantity": "2",
            "unit": "kg",
            "grade": None,
            "fine_gold_g": None,
            "price_pen": "3000.00",
            "department": "PUNO",
            "province": "SAN ANTONIO DE PUTINA",
            "district": "ANANEA",
            "ubigeo": "211002",
            "mining_right_declared": False,  # recorded before sellers were asked
            "codigo_unico": None,
            "proposed_at": "2026-11-26T17:00:00Z",
            "decided_at": "2026-11-26T17:05:00Z",
            "receipt_code": None,
            "flagged": True,
            "flag_rules": ["R7"],
            "buyer": {"role": "plant", "recpo_number": "RECPO-0001"},
            "seller": {"role": "miner", "recpo_number": None},
        }
        dore = next(item for item in data if item["material"] == "dore")
        assert (dore["quantity"], dore["grade"], dore["fine_gold_g"]) == ("25.5", "850", "21.68")

    @pytest.mark.parametrize("limit", [1, 4, 7, 19, 500])
    def test_pagination_walks_every_page_without_duplicates_or_gaps(
        self, client, market, token, limit
    ):
        seen, pages = walk(client, token(), "/api/v1/transactions", limit)
        assert seen == sorted(market.ids(*EVERYTHING))
        assert len(set(seen)) == len(seen)
        assert pages == -(-len(EVERYTHING) // limit)

    def test_pagination_with_filters_and_rows_added_meanwhile(
        self, client, market, token, database, clock
    ):
        headers = token()
        path = f"/api/v1/transactions?department=PUNO&{PUNO_WEEK}&limit=4"
        first = client.get(path, headers=headers).json
        with database.transaction() as session:  # a late Puno trade arrives mid-walk
            registrants = market.registrants
            late: dict[str, int] = {}
            _add(session, registrants, lima(28, 15), "late", late)
        seen = [item["id"] for item in first["data"]]
        cursor = first["next_cursor"]
        while cursor:
            body = client.get(f"{path}&cursor={cursor}", headers=headers).json
            seen.extend(item["id"] for item in body["data"])
            cursor = body["next_cursor"]
        assert seen == sorted(market.ids(*PUNO) | {late["late"]})

    def test_default_page_is_100(self, client, market, token):
        body = client.get("/api/v1/transactions", headers=token()).json
        assert len(body["data"]) == len(EVERYTHING)

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
            ("limit=-5", "limit"),
            ("from=2026-13-01", "from"),
            ("from=2026-02-30", "from"),
            ("from=30/11/2026", "from"),
            ("from=2026-11-30&to=2026-11-01", "from"),
            ("ubigeo=211", "ubigeo"),
            ("ubigeo=21a0", "ubigeo"),
            ("material=gold", "material"),
            ("status=done", "status"),
            ("buyer_ruc=20131312956", "buyer_ruc"),  # wrong check digit
            ("buyer_ruc=123", "buyer_ruc"),
            ("flagged=maybe", "flagged"),
            ("cursor=not-a-cursor!", "cursor"),
            ("cursor=ZmxhZ3M6MQ", "cursor"),  # a flags cursor ("flags:1")
            ("department=%20%20", "department"),
            ("department=PU%00NO", "department"),
            ("departamento=PUNO", "departamento"),
            ("material=dore&material=ore", "material"),
        ],
    )
    def test_bad_parameters_are_400_problems(self, client, market, token, query, parameter):
        response = client.get(f"/api/v1/transactions?{query}", headers=token())
        body = problem(response, 400, "invalid-parameter")
        assert body["errors"][0]["parameter"] == parameter
        assert body["instance"] == "/api/v1/transactions"

    def test_one_transaction(self, client, market, token):
        headers = token()
        ident = market.transactions["mdd"]
        body = client.get(f"/api/v1/transactions/{ident}", headers=headers).json
        assert body["id"] == ident
        assert (body["department"], body["flag_rules"]) == ("MADRE DE DIOS", ["R3"])

    def test_a_natural_persons_mining_right_only_with_personal_data(
        self, client, market, token, database
    ):
        with database.transaction() as session:
            session.get(Transaction, market.transactions["dore-24"]).codigo_unico = "010149108"
        ident = market.transactions["dore-24"]
        plain = client.get(f"/api/v1/transactions/{ident}", headers=token("transactions:read"))
        assert (plain.json["mining_right_declared"], plain.json["codigo_unico"]) == (True, None)
        assert "010149108" not in plain.get_data(as_text=True)
        full = client.get(
            f"/api/v1/transactions/{ident}", headers=token("transactions:read,personal_data")
        )
        assert full.json["codigo_unico"] == "010149108"

    def test_a_companys_mining_right_is_shown_to_every_token(
        self, client, market, token, database, clock
    ):
        with database.transaction() as session:
            session.add(
                ReinfoRegistration(
                    ruc="20100070970",
                    codigo_unico="050004511",
                    holder_name="MINERA SANCOS S.A.C.",
                    mining_right="Sancos Uno",
                    department="AYACUCHO",
                    province="LUCANAS",
                    district="SANCOS",
                    ubigeo="050621",
                    status="VIGENTE",
                    snapshot_date=clock.now().date(),
                    updated_at=clock.now(),
                )
            )
            for label in ("dore-23", "dore-24"):
                session.get(Transaction, market.transactions[label]).codigo_unico = "050004511"
            session.get(Transaction, market.transactions["dore-25"]).codigo_unico = "010149108"
        body = client.get(
            f"/api/v1/transactions?department=PUNO&{PUNO_WEEK}", headers=token("transactions:read")
        ).json
        shown = {item["id"]: item["codigo_unico"] for item in body["data"] if item["codigo_unico"]}
        assert shown == {
            market.transactions["dore-23"]: "050004511",
            market.transactions["dore-24"]: "050004511",
        }
        declared = [item["id"] for item in body["data"] if item["mining_right_declared"]]
        assert declared == sorted(market.ids("dore-23", "dore-24", "dore-25"))

    @pytest.mark.parametrize("ident", ["999999", "99999999999999999999999", "0"])
    def test_missing_transaction_is_404(self, client, market, token, ident):
        problem(client.get(f"/api/v1/transactions/{ident}", headers=token()), 404, "not-found")

    def test_parties_carry_personal_data_only_with_the_scope(self, client, market, token):
        ident = market.transactions["native-24"]
        plain = client.get(f"/api/v1/transactions/{ident}", headers=token("transactions:read"))
        for party in (plain.json["buyer"], plain.json["seller"]):
            assert not PERSONAL_KEYS & set(party)
        assert JUANA not in plain.get_data(as_text=True)
        assert "Juana" not in plain.get_data(as_text=True)
        full = client.get(
            f"/api/v1/transactions/{ident}", headers=token("transactions:read,personal_data")
        ).json
        assert full["buyer"] == {
            "role": "stockpiler",
            "recpo_number": "RECPO-0002",
            "document_type": "ruc",
            "document_number": STOCKPILER,
            "name": "Acopio Huepetuhe E.I.R.L.",
        }
        assert full["seller"]["name"] == "Juana Quispe Mamani"
        assert full["seller"]["document_number"] == JUANA
        assert full["seller"]["reinfo_ruc"] == natural_person_ruc(JUANA)


# --- registrants --------------------------------------------------------------------------------


class TestRegistrants:
    @pytest.mark.parametrize(
        ("document", "registered", "role", "standing", "may_sell", "registrations"),
        [
            (JUANA, True, "miner", "vigente", True, ["010149108"]),
            (natural_person_ruc(JUANA), True, "miner", "vigente", True, ["010149108"]),
            ("4567-8912", True, "miner", "vigente", True, ["010149108"]),
            (PEDRO, True, "miner", "vigente", True, ["070012317"]),  # EXCLUIDO one hidden
            (ROSA, True, "miner", "suspended", False, ["040155607"]),
            (PLANT, True, "plant", "not_in_reinfo", False, []),
            ("12345678", False, None, "not_in_reinfo", False, []),
            ("001234567", False, None, "no_ruc", False, []),  # a carné de extranjería
        ],
    )
    def test_status_and_standing(
        self, client, market, token, document, registered, role, standing, may_sell, registrations
    ):
        response = client.get(f"/api/v1/registrants/{document}", headers=token())
        assert response.status_code == 200, response.json
        body = response.json
        assert body["registered"] is registered
        assert body["role"] == role
        assert body["registry_status"] == ("active" if registered else None)
        assert body["reinfo"]["standing"] == standing
        assert body["reinfo"]["may_sell"] is may_sell
        assert [r["codigo_unico"] for r in body["reinfo"]["registrations"]] == registrations
        assert body["reinfo"]["reason"]

    def test_personal_data_only_with_the_scope(self, client, market, token):
        plain = client.get(f"/api/v1/registrants/{JUANA}", headers=token("registrants:read"))
        body = plain.json
        assert not {"name", "document_number", "phones"} & set(body)
        assert "ruc" not in body["reinfo"]
        assert "holder_name" not in body["reinfo"]["registrations"][0]
        assert "Juana" not in plain.get_data(as_text=True).title()
        assert "987000011" not in plain.get_data(as_text=True)
        full = client.get(
            f"/api/v1/registrants/{JUANA}", headers=token("registrants:read,personal_data")
        ).json
        assert full["name"] == "Juana Quispe Mamani"
        assert full["document_number"] == JUANA
        assert full["phones"] == ["+51987000011"]
        assert full["reinfo"]["ruc"] == natural_person_ruc(JUANA)
        assert full["reinfo"]["registrations"][0]["holder_name"] == "JUANA QUISPE MAMANI"

    def test_old_alphanumeric_carne_needs_its_type(self, client, market, token):
        headers = token()
        problem(client.get("/api/v1/registrants/AB1234", headers=headers), 400, "invalid-parameter")
        body = client.get("/api/v1/registrants/AB1234?document_type=ce", headers=headers).json
        assert (body["document_type"], body["reinfo"]["standing"]) == ("ce", "no_ruc")

    @pytest.mark.parametrize(
        ("path", "status", "slug"),
        [
            ("/api/v1/registrants/1234", 400, "invalid-parameter"),
            ("/api/v1/registrants/45678912-3", 400, "invalid-parameter"),
            ("/api/v1/registrants/20131312956", 400, "invalid-parameter"),
            ("/api/v1/registrants/%E2%80%8B", 400, "invalid-parameter"),
            (f"/api/v1/registrants/{JUANA}?document_type=passport", 400, "invalid-parameter"),
            (f"/api/v1/registrants/{JUANA}?name=x", 400, "invalid-parameter"),
            ("/api/v1/registrants/a/b", 404, "not-found"),
        ],
    )
    def test_bad_documents(self, client, market, token, path, status, slug):
        problem(client.get(path, headers=token()), status, slug)


# --- flags --------------------------------------------------------------------------------------


class TestFlags:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["r7", "r3", "r1"]),
            ("status=open", ["r7", "r1"]),
            ("status=in_review", ["r3"]),
            ("status=resolved", []),
            ("rule=r7", ["r7"]),
            ("rule=R1&status=open", ["r1"]),
            ("from=2026-11-25", ["r7", "r1"]),
            ("from=2026-11-24&to=2026-11-24", ["r3"]),
            ("to=2026-11-26", ["r7", "r3"]),
        ],
    )
    def test_filters(self, client, market, token, query, expected):
        response = client.get(f"/api/v1/flags?{query}", headers=token())
        assert response.status_code == 200, response.json
        assert [f["id"] for f in response.json["data"]] == sorted(
            market.flags[label] for label in expected
        )

    def test_pagination(self, client, market, token):
        seen, pages = walk(client, token(), "/api/v1/flags", 1)
        assert seen == sorted(market.flags.values())
        assert pages == 3

    def test_personal_data_only_with_the_scope(self, client, market, token):
        plain = client.get("/api/v1/flags?rule=R7", headers=token("flags:read"))
        flag = plain.json["data"][0]
        assert not {"phone", "document", "evidence"} & set(flag)
        assert flag["reason"] == "mercury sold by DNI [redacted] from [redacted]"
        assert JUANA not in plain.get_data(as_text=True)
        assert flag["transaction_id"] == market.transactions["mercury"]
        full = client.get("/api/v1/flags?rule=R7", headers=token("flags:read,personal_data"))
        flag = full.json["data"][0]
        assert flag["reason"] == f"mercury sold by DNI {JUANA} from +51987000011"
        assert (flag["phone"], flag["document"]) == ("+51987000011", JUANA)
        assert flag["evidence"] == {"material": "mercury", "seller": JUANA}

    @pytest.mark.parametrize(
        "query",
        ["status=closed", "rule=", "rule=" + "R" * 21, "from=yesterday", "limit=1000", "page=2"],
    )
    def test_bad_parameters(self, client, market, token, query):
        problem(client.get(f"/api/v1/flags?{query}", headers=token()), 400, "invalid-parameter")


# --- aggregates ---------------------------------------------------------------------------------


def _groups(client, headers, query: str) -> list[dict]:
    response = client.get(f"/api/v1/aggregates?{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]


class TestAggregates:
    def test_puno_week_by_department_material_and_week(self, client, market, token):
        response = client.get(f"/api/v1/aggregates?{PUNO_WEEK}", headers=token())
        body = response.json
        assert (body["from"], body["to"], body["status"]) == (
            "2026-11-23",
            "2026-11-29",
            "confirmed",
        )
        assert body["group_by"] == ["department", "material", "week"]
        week = {"week": "2026-W48", "week_start": "2026-11-23"}
        assert body["data"] == [
            {
                "department": "MADRE DE DIOS",
                "material": "dore",
                **week,
                "count": 1,
                "quantity": {"g": "25.5"},
                "fine_gold_g": "21.68",
                "price_pen": "5400.00",
            },
            {
                "department": "PUNO",
                "material": "dore",
                **week,
                "count": 7,
                "quantity": {"g": "178.5"},
                "fine_gold_g": "151.76",
                "price_pen": "37800.00",
            },
            {
                "department": "PUNO",
                "material": "mercury",
                **week,
                "count": 1,
                "quantity": {"kg": "2"},
                "fine_gold_g": None,
                "price_pen": "3000.00",
            },
            {
                "department": "PUNO",
                "material": "native",
                **week,
                "count": 6,  # the disputed one is not counted
                "quantity": {"g": "60"},
                "fine_gold_g": "54.00",
                "price_pen": "15000.00",
            },
        ]

    def test_quantities_per_unit_when_materials_are_merged(self, client, market, token):
        groups = _groups(client, token(), f"{PUNO_WEEK}&group_by=department&department=PUNO")
        assert groups == [
            {
                "department": "PUNO",
                "count": 14,
                "quantity": {"g": "238.5", "kg": "2"},
                "fine_gold_g": "205.76",
                "price_pen": "55800.00",
            }
        ]

    def test_iso_weeks_in_lima_time(self, client, market, token):
        groups = _groups(client, token(), "from=2026-11-22&to=2026-11-30&group_by=week&ubigeo=21")
        assert [(g["week"], g["week_start"], g["count"]) for g in groups] == [
            ("2026-W47", "2026-11-16", 1),  # Sunday 22nd, 23:59 Lima
            ("2026-W48", "2026-11-23", 14),  # includes Sunday 29th, 23:30 Lima
            ("2026-W49", "2026-11-30", 1),
        ]

    def test_by_ubigeo_names_the_district(self, client, market, token):
        groups = _groups(client, token(), f"{PUNO_WEEK}&group_by=ubigeo,material&material=native")
        assert groups == [
            {
                "department": "PUNO",
                "province": "PUNO",
                "district": "PUNO",
                "ubigeo": "210101",
                "material": "native",
                "count": 6,
                "quantity": {"g": "60"},
                "fine_gold_g": "54.00",
                "price_pen": "15000.00",
            }
        ]

    def test_one_total_and_other_statuses(self, client, market, token):
        headers = token()
        total = _groups(client, headers, f"{PUNO_WEEK}&group_by=")
        assert [g["count"] for g in total] == [15]
        disputed = _groups(client, headers, f"{PUNO_WEEK}&group_by=&status=disputed")
        assert [g["count"] for g in disputed] == [1]
        assert _groups(client, headers, "from=2025-01-01&to=2025-01-31") == []

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("", "from"),
            ("from=2026-11-23", "to"),
            ("from=2025-01-01&to=2026-11-30", "to"),  # more than 366 days
            (f"{PUNO_WEEK}&group_by=province", "group_by"),
            (f"{PUNO_WEEK}&group_by=week,week", "group_by"),
            (f"{PUNO_WEEK}&group_by=department,", "group_by"),
            (f"{PUNO_WEEK}&group_by=%20", "group_by"),
            (f"{PUNO_WEEK}&limit=10", "limit"),
            (f"{PUNO_WEEK}&status=unknown", "status"),
        ],
    )
    def test_bad_parameters(self, client, market, token, query, parameter):
        response = client.get(f"/api/v1/aggregates?{query}", headers=token())
        assert problem(response, 400, "invalid-parameter")["errors"][0]["parameter"] == parameter


# --- audit --------------------------------------------------------------------------------------


class TestAudit:
    def test_every_call_is_recorded(self, client, market, token, db_session, clock):
        headers = token("transactions:read", institution="Contraloría")
        client.get(f"/api/v1/transactions?department=PUNO&{PUNO_WEEK}", headers=headers)
        client.get("/api/v1/flags", headers=headers)  # 403
        client.get("/api/v1/transactions?limit=0", headers=headers)  # 400
        client.get("/api/v1/transactions")  # 401, no token
        calls = db_session.scalars(sa.select(ApiCall).order_by(ApiCall.id)).all()
        assert [(c.institution, c.endpoint, c.status) for c in calls] == [
            ("Contraloría", "/api/v1/transactions", 200),
            ("Contraloría", "/api/v1/flags", 403),
            ("Contraloría", "/api/v1/transactions", 400),
            (None, "/api/v1/transactions", 401),
        ]
        assert json.loads(calls[0].parameters) == {
            "path": {},
            "query": {"department": "PUNO", "from": "2026-11-23", "to": "2026-11-29"},
        }
        assert calls[0].method == "GET"
        assert calls[0].at == clock.now()
        assert calls[0].token_id is not None and calls[3].token_id is None

    def test_path_parameters_and_revoked_tokens_are_recorded(
        self, client, market, token, db_session, database, clock
    ):
        headers = token("registrants:read", institution="OEFA")
        client.get(f"/api/v1/registrants/{JUANA}", headers=headers)
        with database.transaction() as session:
            session.scalars(sa.select(PartnerToken)).one().revoked_at = clock.now()
        client.get(f"/api/v1/registrants/{JUANA}", headers=headers)
        calls = db_session.scalars(sa.select(ApiCall).order_by(ApiCall.id)).all()
        assert [(c.institution, c.status) for c in calls] == [("OEFA", 200), ("OEFA", 401)]
        assert json.loads(calls[0].parameters)["path"] == {"document": JUANA}

    def test_last_use_is_kept(self, client, market, token, db_session, clock):
        headers = token("flags:read")
        assert db_session.scalars(sa.select(PartnerToken)).one().last_used_at is None
        client.get("/api/v1/flags", headers=headers)
        db_session.expire_all()
        assert db_session.scalars(sa.select(PartnerToken)).one().last_used_at == clock.now()

    def test_the_audit_log_is_append_only(self, client, market, token, connection):
        client.get("/api/v1/flags", headers=token())
        for statement in (
            "UPDATE partner_api_calls SET status = 200",
            "DELETE FROM partner_api_calls",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # noqa: SIM117
                with connection.begin_nested():
                    connection.execute(sa.text(statement))


# --- rate limits --------------------------------------------------------------------------------


class TestRateLimits:
    def test_per_token_with_retry_after(self, app, client, market, token):
        app.extensions["partner_api"].token_rate = Rate(count=3, period=60, burst=3)
        first, second = token("flags:read", "SUNAT"), token("flags:read", "UIF")
        for _ in range(3):
            assert client.get("/api/v1/flags", headers=first).status_code == 200
        refused = client.get("/api/v1/flags", headers=first)
        problem(refused, 429, "rate-limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 20
        assert client.get("/api/v1/flags", headers=second).status_code == 200

    def test_callers_without_a_token_are_limited_per_address(self, app, client):
        app.extensions["partner_api"].anonymous_rate = Rate(count=2, period=60, burst=2)
        assert [client.get("/api/v1/flags").status_code for _ in range(3)] == [401, 401, 429]
        problem(client.get("/api/v1/openapi.json"), 429, "rate-limited")


# --- the `recpo api` commands -------------------------------------------------------------------


class TestCommands:
    def test_create_list_revoke(self, runner, client, market, db_session):
        result = runner.invoke(
            args=["api", "create-token", "SUNAT", "--scopes", "transactions:read, personal_data"]
        )
        assert result.exit_code == 0, result.output
        secret = result.stdout.strip()
        assert secret.startswith("recpo_") and "\n" not in secret
        assert "shown only this once" in result.stderr
        headers = {"Authorization": f"Bearer {secret}"}
        body = client.get("/api/v1/transactions?material=mercury", headers=headers).json
        assert body["data"][0]["seller"]["name"] == "Juana Quispe Mamani"

        listed = runner.invoke(args=["api", "list-tokens"])
        assert listed.exit_code == 0
        line = listed.output.splitlines()[1]
        assert "SUNAT" in line and "personal_data,transactions:read" in line
        assert secret not in listed.output and secret[:12] in line

        ident = db_session.scalars(sa.select(PartnerToken.id)).one()
        revoked = runner.invoke(args=["api", "revoke-token", str(ident)])
        assert revoked.exit_code == 0 and "revoked" in revoked.output
        assert client.get("/api/v1/transactions", headers=headers).status_code == 401

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["SUNAT", "--scopes", "transactions:write"], "unknown scope transactions:write"),
            (["SUNAT", "--scopes", ","], "at least one scope"),
            (["  ", "--scopes", "flags:read"], "name is empty"),
        ],
    )
    def test_create_refuses(self, runner, db_session, args, message):
        result = runner.invoke(args=["api", "create-token", *args])
        assert result.exit_code != 0
        assert message in result.output
        assert db_session.scalars(sa.select(PartnerToken)).all() == []

    def test_revoke_unknown(self, runner):
        result = runner.invoke(args=["api", "revoke-token", "42"])
        assert result.exit_code != 0 and "no token" in result.output
