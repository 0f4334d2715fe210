import hashlib
import random
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.entries import (
    GENESIS_PREV,
    canonical_json,
    commit,
    entry_from_body,
    make_entry,
    parse_entry,
)

KEY = b"s" * 32


def test_stable_bytes():
    entry = make_entry("sale", {"qty_g": "12.50", "a": 1, "ok": True, "none": None}, None)
    assert entry == (
        b'{"body":{"a":1,"none":null,"ok":true,"qty_g":"12.50"},'
        b'"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}'
    )


def test_prev_hash_is_hex():
    prev = hashlib.sha256(b"x").digest()
    entry = make_entry("sale", {}, prev)
    assert parse_entry(entry)["prev"] == prev.hex()
    assert parse_entry(make_entry("sale", {}, None))["prev"] == GENESIS_PREV
    with pytest.raises(ValueError):
        make_entry("sale", {}, prev[:31])
    with pytest.raises(ValueError):
        make_entry("sale", {}, prev.hex())


def test_nested_key_order_does_not_matter():
    a = {"z": {"b": [1, {"y": 2, "x": 3}], "a": "s"}, "m": None}
    b = {"m": None, "z": {"a": "s", "b": [1, {"x": 3, "y": 2}]}}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == b'{"m":null,"z":{"a":"s","b":[1,{"x":3,"y":2}]}}'


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(body=st.dictionaries(st.text(), json_values, max_size=6), seed=st.integers())
def test_insertion_order_never_matters(body, seed):
    items = list(body.items())
    random.Random(seed).shuffle(items)
    shuffled = dict(items)
    assert make_entry("k", shuffled, None) == make_entry("k", body, None)
    parsed = parse_entry(make_entry("k", body, None))
    assert parsed["body"] == body


def test_non_ascii_is_written_as_utf8():
    data = canonical_json({"nombre": "Ñuñoa", "qu": "Allinllachu, mamay"})
    assert "Ñuñoa".encode() in data
    assert b"\\u" not in data
    entry = make_entry("sale", {"lugar": "Puerto Maldonado – Tambopata"}, None)
    assert parse_entry(entry)["body"]["lugar"] == "Puerto Maldonado – Tambopata"


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        1.0,
        float("nan"),
        float("inf"),
        Decimal("1.5"),
        b"bytes",
        {1: "int key"},
        {"nested": [1, 2.0]},
        2**53,
        -(2**53),
        {"s": {1, 2}},
        "lone \ud800 surrogate",
        object(),
    ],
)
def test_disallowed_values(value):
    with pytest.raises(ValueError):
        canonical_json(value)
    with pytest.raises(ValueError):
        make_entry("sale", {"x": value}, None)


def test_make_entry_arguments():
    for kind in ["", None]:
        with pytest.raises(ValueError):
            make_entry(kind, {}, None)
    with pytest.raises(ValueError):
        make_entry("sale", [], None)
    for version in [0, True, "1"]:
        with pytest.raises(ValueError):
            make_entry("sale", {}, None, version=version)
    assert parse_entry(make_entry("sale", {}, None, version=2))["v"] == 2


@pytest.mark.parametrize(
    "data",
    [
        b'{"body":{},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1} ',
        b'{"kind":"sale","body":{},"prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{}, "kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{"n":"\\u00f1"},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{"x":1.0},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{"x":NaN},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{"x":1,"x":2},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{},"kind":"sale","prev":"' + b"A" * 64 + b'","v":1}',
        b'{"body":{},"kind":"sale","prev":"' + b"0" * 63 + b'","v":1}',
        b'{"body":{},"kind":"","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":[],"kind":"sale","prev":"' + b"0" * 64 + b'","v":1}',
        b'{"body":{},"kind":"sale","prev":"' + b"0" * 64 + b'","v":true}',
        b'{"body":{},"kind":"sale","prev":"' + b"0" * 64 + b'","v":1,"extra":1}',
        b'{"body":{},"kind":"sale","v":1}',
        b"[]",
        b"\xff",
        b"",
    ],
)
def test_parse_entry_rejects(data):
    with pytest.raises(ValueError):
        parse_entry(data)


def test_parse_entry_accepts_exact_canonical_bytes():
    entry = make_entry("sale", {"b": [1, "dos"], "a": {"ñ": None}}, hashlib.sha256(b"").digest())
    parsed = parse_entry(entry)
    assert parsed["kind"] == "sale"
    assert canonical_json(parsed) == entry


def test_commitments():
    c = commit(KEY, "dni", "12345678")
    assert len(c) == 64 and int(c, 16) >= 0
    assert commit(KEY, "dni", "12345678") == c
    assert commit(KEY, "ruc", "12345678") != c
    assert commit(b"t" * 32, "dni", "12345678") != c
    assert commit(KEY, "dni", "12345679") != c
    assert "12345678" not in c
    # The label/value boundary is unambiguous.
    assert commit(KEY, "ab", "c") != commit(KEY, "a", "bc")
    with pytest.raises(ValueError):
        commit(b"short", "dni", "1")
    with pytest.raises(ValueError):
        commit(KEY, "", "1")


@given(
    kind=st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1),
    body=st.dictionaries(st.text(alphabet=st.characters(exclude_categories=("Cs",))), json_values),
    prev=st.none() | st.binary(min_size=32, max_size=32),
)
def test_entry_from_queued_body_is_make_entry(kind, body, prev):
    # The sequencer splices the queued canonical body into the envelope instead of parsing it.
    assert entry_from_body(kind, canonical_json(body), prev) == make_entry(kind, body, prev)


def test_entry_from_body_refuses_what_make_entry_refuses():
    with pytest.raises(ValueError):
        entry_from_body("", b"{}", None)
    with pytest.raises(ValueError):
        entry_from_body("k", b"[]", None)
    with pytest.raises(ValueError):
        entry_from_body("k", b"{}", b"short")
