"""The OpenAPI 3.1 document of the partner API, written by hand next to the code it describes.

`tests/gateway/test_partner_api_schema.py` fuzzes the API from this document (schemathesis) and
checks every answer against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from gateway.partner_api.core import PROBLEM_JSON, PROBLEMS, bp, json_response
from gateway.partner_api.params import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT
from gateway.partner_api.views import (
    DEFAULT_GROUPS,
    FLAG_STATUSES,
    GROUPS,
    MATERIALS,
    MAX_AGGREGATE_DAYS,
    TRANSACTION_STATUSES,
)
from recpo.runtime import current_runtime
from registry import partners
from registry.identifiers import DocumentType
from registry.models import RegistrantStatus, ReinfoStatus, Role

DECIMAL = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "examples": ["21.68"]}
NULLABLE_DECIMAL = {**DECIMAL, "type": ["string", "null"]}
DATE = {"type": "string", "format": "date"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_TEXT = {"type": ["string", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before the next call.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The bearer challenge (RFC 6750).",
        "required": True,
        "schema": {"type": "string"},
    }
}

RESPONSES = {
    "BadRequest": _problem("A parameter is malformed, out of range, repeated or unknown."),
    "Unauthorized": _problem("No token, an unknown token, or a revoked token.", WWW_AUTHENTICATE),
    "Forbidden": _problem("The token lacks the scope this endpoint requires.", WWW_AUTHENTICATE),
    "NotFound": _problem("No such resource."),
    "TooManyRequests": _problem("Over the rate limit.", RETRY_AFTER),
    "InternalError": _problem("The call could not be answered (or audited)."),
}


def _errors(not_found: bool = False) -> dict:
    codes = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden"}
    if not_found:
        codes["404"] = "NotFound"
    codes |= {"429": "TooManyRequests", "500": "InternalError"}
    return {code: {"$ref": f"#/components/responses/{name}"} for code, name in codes.items()}


def _param(name: str, description: str, schema: dict, **more: Any) -> dict:
    return {"name": name, "in": "query", "description": description, "schema": schema, **more}


def _params_ref(*names: str) -> list[dict]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


PARAMETERS = {
    "from": _param(
        "from", "First calendar day included (Lima time), YYYY-MM-DD.", DATE, example="2026-11-23"
    ),
    "to": _param(
        "to", "Last calendar day included (Lima time), YYYY-MM-DD.", DATE, example="2026-11-29"
    ),
    "department": _param(
        "department",
        "Department as written in REINFO (case-insensitive), e.g. PUNO, MADRE DE DIOS.",
        {"type": "string", "minLength": 1, "maxLength": 100},
        example="PUNO",
    ),
    "ubigeo": _param(
        "ubigeo",
        "INEI ubigeo prefix: 2 digits a department (21 Puno), 4 a province, 6 a district.",
        {"type": "string", "pattern": "^[0-9]{2}([0-9]{2}){0,2}$"},
        example="21",
    ),
    "material": _param("material", "Material traded.", {"type": "string", "enum": MATERIALS}),
    "limit": _param(
        "limit",
        f"Items per page (default {DEFAULT_LIMIT}).",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    "cursor": _param(
        "cursor",
        "Opaque: the `next_cursor` of the previous page of the same list.",
        {"type": "string", "minLength": 1, "maxLength": 64},
    ),
}


def _party_schema() -> dict:
    return {
        "type": "object",
        "description": "A party to the transaction. Identity fields only with `personal_data`.",
        "required": ["role", "recpo_number"],
        "additionalProperties": False,
        "properties": {
            "role": {"type": "string", "enum": [r.value for r in Role]},
            "recpo_number": {**NULLABLE_TEXT, "description": "RECPO registration of a buyer."},
            "document_type": {"type": "string", "enum": [d.value for d in DocumentType]},
            "document_number": {"type": "string"},
            "name": {"type": "string"},
            "reinfo_ruc": {
                "type": ["string", "null"],
                "description": "Seller only: the RUC checked in REINFO.",
            },
        },
    }


def _page_schema(item: str) -> dict:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "data": {"type": "array", "items": _ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    }


TRANSACTION_FIELDS = {
    "id": {"type": "integer"},
    "status": {"type": "string", "enum": TRANSACTION_STATUSES},
    "declared_by": {"type": "string", "enum": ["buyer", "seller"]},
    "material": {"type": "string", "enum": MATERIALS},
    "quantity": {**DECIMAL, "description": "Gross quantity, in `unit`."},
    "unit": {"type": "string", "enum": ["g", "kg", "t"]},
    "grade": {
        **NULLABLE_DECIMAL,
        "description": "Fineness in ‰ (gold products) or g/t (ore, tailings, carbon); "
        "null for mercury.",
    },
    "fine_gold_g": {**NULLABLE_DECIMAL, "description": "Fine gold in grams; null for mercury."},
    "price_pen": {**DECIMAL, "description": "Total price in soles."},
    "department": NULLABLE_TEXT,
    "province": NULLABLE_TEXT,
    "district": NULLABLE_TEXT,
    "ubigeo": NULLABLE_TEXT,
    "mining_right_declared": {
        "type": "boolean",
        "description": "Whether the seller declared the mining right the gold comes from "
        "(transactions recorded before it was asked have none).",
    },
    "codigo_unico": {
        "type": ["string", "null"],
        "pattern": "^[0-9]{9}$",
        "description": "The declared mining right: its REINFO código único (9 digits). "
        "Null when none was declared, and without `personal_data` when REINFO lists the "
        "right under a natural person (the code would name its holder); a right listed only "
        "under companies (RUC 20) is always shown. Red flag R2 says when it is not the "
        "seller's, or not VIGENTE.",
    },
    "proposed_at": TIME,
    "decided_at": NULLABLE_TIME,
    "receipt_code": {
        **NULLABLE_TEXT,
        "description": "Receipt of a confirmed transaction: check it at /r/{code} and "
        "download its offline proof at /r/{code}/proof.",
    },
    "flagged": {"type": "boolean"},
    "flag_rules": {"type": "array", "items": {"type": "string"}},
    "buyer": _ref("Party"),
    "seller": _ref("Party"),
}

FLAG_FIELDS = {
    "id": {"type": "integer"},
    "rule": {"type": "string", "description": "R1 to R10, DISPUTE, ..."},
    "reason": {
        "type": "string",
        "description": "Why, in English; without `personal_data`, numbers that could be "
        "documents or phones read [redacted].",
    },
    "status": {"type": "string", "enum": FLAG_STATUSES},
    "transaction_id": {"type": ["integer", "null"]},
    "created_at": TIME,
    "updated_at": TIME,
}
FLAG_PERSONAL = {
    "phone": NULLABLE_TEXT,
    "document": NULLABLE_TEXT,
    "evidence": {"type": "object", "description": "What the rule saw (JSON)."},
}

REINFO_REGISTRATION = {
    "type": "object",
    "required": [
        "codigo_unico",
        "mining_right",
        "department",
        "province",
        "district",
        "ubigeo",
        "status",
        "snapshot_date",
    ],
    "additionalProperties": False,
    "properties": {
        "codigo_unico": {"type": "string", "pattern": "^[0-9]{9}$"},
        "mining_right": {"type": "string"},
        "department": {"type": "string"},
        "province": {"type": "string"},
        "district": {"type": "string"},
        "ubigeo": NULLABLE_TEXT,
        "status": {"type": "string", "enum": [s.value for s in ReinfoStatus]},
        "snapshot_date": DATE,
        "holder_name": {"type": "string", "description": "Only with `personal_data`."},
    },
}

REGISTRANT = {
    "type": "object",
    "required": [
        "document_type",
        "registered",
        "role",
        "registry_status",
        "recpo_number",
        "reinfo",
    ],
    "additionalProperties": False,
    "properties": {
        "document_type": {"type": "string", "enum": [d.value for d in DocumentType]},
        "registered": {"type": "boolean", "description": "Known to the RECPO registry."},
        "role": {"type": ["string", "null"], "enum": [*(r.value for r in Role), None]},
        "registry_status": {
            "type": ["string", "null"],
            "enum": [*(s.value for s in RegistrantStatus), None],
        },
        "recpo_number": NULLABLE_TEXT,
        "reinfo": {
            "type": "object",
            "required": ["standing", "may_sell", "reason", "as_of", "registrations"],
            "additionalProperties": False,
            "properties": {
                "standing": {
                    "type": "string",
                    "enum": ["vigente", "not_in_reinfo", "suspended", "excluded", "no_ruc"],
                },
                "may_sell": {
                    "type": "boolean",
                    "description": "True when at least one registration is VIGENTE.",
                },
                "reason": {"type": "string"},
                "as_of": {"type": ["string", "null"], "format": "date"},
                "ruc": {"type": ["string", "null"], "description": "Only with `personal_data`."},
                "registrations": {"type": "array", "items": _ref("ReinfoRegistration")},
            },
        },
        "document_number": {"type": "string", "description": "Only with `personal_data`."},
        "name": {"type": ["string", "null"], "description": "Only with `personal_data`."},
        "phones": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Active phones (E.164); only with `personal_data`.",
        },
    },
}

AGGREGATE_GROUP = {
    "type": "object",
    "description": "One group; the grouping fields present are those asked for in `group_by` "
    "(`ubigeo` also gives the department, province and district).",
    "required": ["count", "quantity", "fine_gold_g", "price_pen"],
    "additionalProperties": False,
    "properties": {
        "department": NULLABLE_TEXT,
        "province": NULLABLE_TEXT,
        "district": NULLABLE_TEXT,
        "ubigeo": NULLABLE_TEXT,
        "material": {"type": "string"},
        "week": {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$", "examples": ["2026-W48"]},
        "week_start": {**DATE, "description": "Monday of the ISO week (Lima time)."},
        "count": {"type": "integer", "minimum": 0},
        "quantity": {
            "type": "object",
            "description": 'Gross quantity per unit, e.g. {"g": "120.5", "kg": "2"}.',
            "additionalProperties": DECIMAL,
        },
        "fine_gold_g": NULLABLE_DECIMAL,
        "price_pen": DECIMAL,
    },
}


def _schemas() -> dict:
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "detail"],
                        "properties": {
                            "parameter": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    },
                },
                "required_scope": {"type": "string"},
            },
        },
        "Index": {
            "type": "object",
            "required": ["name", "version", "openapi"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "openapi": {"type": "string", "format": "uri"},
            },
        },
        "ProblemType": {
            "type": "object",
            "required": ["type", "title", "status", "description"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "description": {"type": "string"},
            },
        },
        "Party": _party_schema(),
        "Transaction": {
            "type": "object",
            "required": list(TRANSACTION_FIELDS),
            "additionalProperties": False,
            "properties": TRANSACTION_FIELDS,
        },
        "TransactionPage": _page_schema("Transaction"),
        "Flag": {
            "type": "object",
            "required": list(FLAG_FIELDS),
            "additionalProperties": False,
            "properties": {**FLAG_FIELDS, **FLAG_PERSONAL},
        },
        "FlagPage": _page_schema("Flag"),
        "ReinfoRegistration": REINFO_REGISTRATION,
        "Registrant": REGISTRANT,
        "AggregateGroup": AGGREGATE_GROUP,
        "Aggregates": {
            "type": "object",
            "required": ["from", "to", "status", "group_by", "data"],
            "additionalProperties": False,
            "properties": {
                "from": DATE,
                "to": DATE,
                "status": {"type": "string", "enum": TRANSACTION_STATUSES},
                "group_by": {"type": "array", "items": {"type": "string", "enum": GROUPS}},
                "data": {"type": "array", "items": _ref("AggregateGroup")},
            },
        },
    }


def _ok(schema: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    scope: str,
    parameters: list,
    ok: dict,
    not_found: bool = False,
) -> dict:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "description": f"{description}\n\nRequires the scope `{scope}`.",
            "security": [{"bearer": [scope]}],
            "parameters": parameters,
            "responses": {"200": ok, **_errors(not_found)},
        }
    }


def paths() -> dict:
    """The operations, keyed by path relative to the server URL (…/api/v1)."""
    list_params = _params_ref("from", "to", "department", "ubigeo", "material")
    return {
        "/transactions": _operation(
            "listTransactions",
            "List transactions",
            "Transactions ordered by id, filtered; a page of at most `limit`, and the cursor of "
            "the next. Dates apply to when the transaction was proposed (Lima time).",
            partners.TRANSACTIONS_READ,
            [
                *list_params,
                _param(
                    "status",
                    "Transaction status.",
                    {"type": "string", "enum": TRANSACTION_STATUSES},
                ),
                _param(
                    "buyer_ruc",
                    "The buyer's RUC (11 digits, valid check digit).",
                    {"type": "string", "pattern": "^[0-9]{11}$"},
                    example="20131312955",
                ),
                _param(
                    "flagged",
                    "true: only transactions with a red flag; false: only those without.",
                    {"type": "boolean"},
                ),
                *_params_ref("limit", "cursor"),
            ],
            _ok("TransactionPage", "A page of transactions."),
        ),
        "/transactions/{transaction_id}": _operation(
            "getTransaction",
            "One transaction",
            "A transaction by id.",
            partners.TRANSACTIONS_READ,
            [
                {
                    "name": "transaction_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                }
            ],
            _ok("Transaction", "The transaction."),
            not_found=True,
        ),
        "/registrants/{document}": _operation(
            "getRegistrant",
            "Registry status and REINFO standing of a document",
            "Whether a DNI, RUC or carné de extranjería is registered with RECPO (role, "
            "status) and whether it may sell gold today per REINFO (a DNI is checked "
            "through its natural-person RUC). An unknown but valid document answers "
            "200 with `registered: false`.",
            partners.REGISTRANTS_READ,
            [
                {
                    "name": "document",
                    "in": "path",
                    "required": True,
                    "description": "DNI (8 digits), CE (9) or RUC (11).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 20},
                    "example": "45678912",
                },
                _param(
                    "document_type",
                    "Needed only for older alphanumeric carnés (ce).",
                    {"type": "string", "enum": [d.value for d in DocumentType]},
                ),
            ],
            _ok("Registrant", "The document's status."),
            not_found=True,
        ),
        "/flags": _operation(
            "listFlags",
            "List red flags",
            "Red flags ordered by id, filtered; paged like transactions. Dates apply to when the "
            "flag was raised (Lima time).",
            partners.FLAGS_READ,
            [
                _param("status", "Review status.", {"type": "string", "enum": FLAG_STATUSES}),
                _param(
                    "rule",
                    "Rule code, e.g. R1, R7, DISPUTE (case-insensitive).",
                    {"type": "string", "minLength": 1, "maxLength": 20},
                ),
                *_params_ref("from", "to", "limit", "cursor"),
            ],
            _ok("FlagPage", "A page of red flags."),
        ),
        "/aggregates": _operation(
            "getAggregates",
            "Volumes by region, material and ISO week",
            "Count, gross quantity per unit, fine gold and total price of the transactions in "
            f"a range of at most {MAX_AGGREGATE_DAYS} days (default: confirmed ones), grouped "
            "by any of department, ubigeo (district), material and ISO week (Lima time).",
            partners.AGGREGATES_READ,
            [
                {**PARAMETERS["from"], "required": True},
                {**PARAMETERS["to"], "required": True},
                _param(
                    "group_by",
                    f"Comma-separated; default {','.join(DEFAULT_GROUPS)}; empty for one total.",
                    {
                        "type": "array",
                        "items": {"type": "string", "enum": GROUPS},
                        "uniqueItems": True,
                    },
                    style="form",
                    explode=False,
                ),
                *_params_ref("department", "ubigeo", "material"),
                _param(
                    "status",
                    "Transactions counted (default confirmed).",
                    {"type": "string", "enum": TRANSACTION_STATUSES, "default": "confirmed"},
                ),
            ],
            _ok("Aggregates", "The groups, ordered by week, region and material."),
        ),
        "/": {
            "get": {
                "operationId": "getIndex",
                "summary": "Where to start",
                "security": [],
                "responses": {
                    "200": _ok("Index", "The API's name, version and OpenAPI document."),
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                },
            }
        },
        "/problems/{slug}": {
            "get": {
                "operationId": "getProblemType",
                "summary": "What a problem type means",
                "security": [],
                "parameters": [
                    {
                        "name": "slug",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(PROBLEMS)},
                        "example": "rate-limited",
                    }
                ],
                "responses": {
                    "200": _ok("ProblemType", "The problem type."),
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                },
            }
        },
    }


def document() -> dict:
    """Return the OpenAPI document, with the server at this deployment's public URL."""
    base = current_runtime().settings.public_base_url
    scopes = "\n".join(f"- `{name}`: {text}" for name, text in partners.SCOPES.items())
    problems = "\n".join(
        f"- `{slug}` ({status}): {title}" for slug, (status, title, _) in PROBLEMS.items()
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RECPO partner API",
            "version": "1.0.0",
            "summary": "Transactions, registrants, red flags and volumes of Peru's gold registry.",
            "description": (
                "Read-only JSON API for partner institutions (tax office, financial-intelligence "
                "unit, comptroller, environmental agencies).\n\n"
                "**Authentication**: `Authorization: Bearer recpo_...`, a token DGFM creates "
                "for an institution with `recpo api create-token INSTITUTION --scopes ...`. "
                f"Scopes:\n{scopes}\n\n"
                "**Lists** are ordered by id and paged: pass each answer's `next_cursor` as "
                f"`cursor` until it is null (`limit` 1 to {MAX_LIMIT}). **Dates** are calendar "
                "days in Lima; times are UTC; decimals are strings.\n\n"
                "**Rate limits** apply per token; over the limit the answer is 429 with "
                "`Retry-After`. Every call is recorded (institution, endpoint, parameters, "
                "status, time).\n\n"
                "**Errors** are RFC 9457 `application/problem+json`; their `type` is a URL "
                f"under {base}/api/v1/problems/:\n{problems}"
            ),
        },
        "servers": [{"url": f"{base}/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "recpo_ followed by 43 URL-safe characters",
                    "description": "A token of your institution, shown once when created.",
                }
            },
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "schemas": _schemas(),
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document (no token needed)."""
    return json_response(document())
