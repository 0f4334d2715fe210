"""The partner API against its own OpenAPI document: the document is valid OpenAPI 3.1, and
schemathesis, fuzzing every operation it describes through the Flask app (WSGI), finds no server
error and no answer (status, content type, headers, body) the document does not allow."""

from __future__ import annotations

from collections import Counter

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from gateway.partner_api.openapi import paths
from gateway.ratelimit import Rate
from tests.gateway.test_partner_api import (  # noqa: F401 - fixtures
    ALL_READ,
    market,
    token,
)

# Examples per operation and generation mode: enough to reach every parameter and the error
# paths, and the whole file runs in well under a minute.
MAX_EXAMPLES = 60


@pytest.fixture
def bearer(token) -> dict[str, str]:  # noqa: F811 - the imported fixture
    """A token holding every scope, personal data included (the largest answers)."""
    return token(f"{ALL_READ},personal_data")


@pytest.fixture
def api_schema(app, market, bearer):  # noqa: F811 - the imported fixture
    """The document as served by the app, loaded by schemathesis over WSGI (no rate limits),
    with the token given to schemathesis for the document's `bearer` security scheme."""
    unlimited = Rate(count=1_000_000, period=1, burst=1_000_000)
    app.extensions["partner_api"].token_rate = unlimited
    app.extensions["partner_api"].anonymous_rate = unlimited
    secret = bearer["Authorization"].removeprefix("Bearer ")
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"bearer": {"bearer": secret}}}})
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)


def _list_parameters(path: str) -> set[str]:
    """The operation's query parameters that are lists (sent comma-separated: form style, explode
    false)."""
    return {
        parameter["name"]
        for parameter in paths()[path]["get"].get("parameters", [])
        if parameter.get("schema", {}).get("type") == "array"
    }


def _sent_as_an_empty_list(case, lists: set[str]) -> bool:
    """Whether a list parameter went as `name=`: the form style sends the list `[""]` byte for
    byte as it sends an empty list, which the document allows; whatever list the fuzzer built, the
    request on the wire is valid."""
    return any((case.query or {}).get(name) in ("", [""]) for name in lists)


def _runs() -> list[tuple[str, GenerationMode]]:
    """Every operation with valid data; those with parameters also with invalid data."""
    runs = []
    for path, item in sorted(paths().items()):
        runs.append((path, GenerationMode.POSITIVE))
        if item["get"].get("parameters"):
            runs.append((path, GenerationMode.NEGATIVE))
    return runs


@pytest.mark.parametrize(("path", "mode"), _runs())
def test_every_answer_conforms_to_the_document(api_schema, path, mode):
    """Schema-valid and schema-breaking requests: never a 5xx, and every answer is documented.

    All of schemathesis's checks run but `positive_data_acceptance`: some schema-valid values are
    still refused with a documented 400 because JSON Schema cannot express the rule (a RUC's
    check digit, `from` after `to`, a cursor the API never gave out).
    """
    operation = api_schema[path]["GET"]
    statuses: Counter[int] = Counter()
    lists = _list_parameters(path)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        if mode is GenerationMode.NEGATIVE:
            assume(not _sent_as_an_empty_list(case, lists))
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        statuses[response.status_code] += 1

    fuzz()
    assert not any(status >= 500 for status in statuses), statuses
    if mode is GenerationMode.POSITIVE:
        assert not statuses.keys() & {401, 403}, statuses  # the token was accepted throughout
        if "{" not in path:
            assert statuses[200] > 0, statuses  # real answers were checked against the schema
    else:
        assert any(400 <= status < 500 for status in statuses), statuses


class TestDocument:
    def test_is_valid_openapi_3_1(self, client):
        document = client.get("/api/v1/openapi.json").json
        assert document["openapi"].startswith("3.1.")
        errors = [str(error) for error in OPENAPI_31_VALIDATOR.iter_errors(document)]
        assert errors == []

    def test_every_schema_is_valid_json_schema_2020_12(self, client):
        document = client.get("/api/v1/openapi.json").json
        for name, component in document["components"]["schemas"].items():
            assert jsonschema_rs.meta.is_valid(component), name

    def test_describes_every_route_of_the_blueprint(self, app, client):
        document = client.get("/api/v1/openapi.json").json
        [server] = document["servers"]
        assert server["url"] == app.extensions["recpo"].settings.public_base_url + "/api/v1"
        described = {
            "/api/v1" + path.replace("{", "<").replace("}", ">") for path in document["paths"]
        }
        routes = {
            rule.rule.replace("<int:", "<")
            for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("partner_api.") and rule.endpoint != "partner_api.unknown"
        }
        assert routes == described
        scheme = document["components"]["securitySchemes"]["bearer"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        for path, item in document["paths"].items():
            operation = item["get"]
            public = operation.get("security") == []
            assert public or list(operation["security"][0]["bearer"]), path
            codes = set(operation["responses"])
            assert "429" in codes and "200" in codes, path
            if not public:
                assert {"400", "401", "403"} <= codes, path
