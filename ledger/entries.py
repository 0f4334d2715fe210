"""Canonical entry bytes and keyed commitments to personal identifiers.

Canonical form: UTF-8 JSON, keys sorted by code point, no insignificant whitespace, non-ASCII
written as itself. Values are limited to strings, integers within +-(2**53 - 1) (exact in every
JSON parser), booleans, null, lists and objects with string keys; decimals travel as strings.
This is not RFC 8785 (which sorts keys by UTF-16 code units); the exact bytes are what count.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

ENTRY_VERSION = 1
GENESIS_PREV = "0" * 64
MAX_SAFE_INT = 2**53 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_COMMIT_DOMAIN = b"ledger/commit/v1\x00"


def _check(value: object, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise ValueError(f"{path}: integer {value} is outside +-(2**53 - 1)")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object key {key!r} is not a string")
            _check(item, f"{path}.{key}")
        return
    raise ValueError(
        f"{path}: {type(value).__name__} is not allowed (give floats and decimals as strings)"
    )


def canonical_json(obj: object) -> bytes:
    """Return the canonical UTF-8 JSON bytes of `obj`; raise ValueError for disallowed values."""
    _check(obj, "$")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("strings must not contain lone surrogates") from exc


def make_entry(
    kind: str, body: dict[str, Any], prev_leaf_hash: bytes | None, version: int = ENTRY_VERSION
) -> bytes:
    """Return the canonical bytes of `{"v", "kind", "prev", "body"}`; prev None starts the chain."""
    check_kind(kind)
    if not isinstance(body, dict):
        raise ValueError("entry body must be a dict")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("entry version must be a positive integer")
    if prev_leaf_hash is None:
        prev = GENESIS_PREV
    elif isinstance(prev_leaf_hash, bytes) and len(prev_leaf_hash) == 32:
        prev = prev_leaf_hash.hex()
    else:
        raise ValueError("previous leaf hash must be 32 bytes or None")
    return canonical_json({"v": version, "kind": kind, "prev": prev, "body": body})


def check_kind(kind: object) -> None:
    """Refuse an entry kind the envelope cannot carry."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("entry kind must be a non-empty string")


def entry_from_body(kind: str, body: bytes, prev_leaf_hash: bytes | None) -> bytes:
    """Return `make_entry(kind, json.loads(body), prev_leaf_hash)` without parsing the body again.

    `body` must be `canonical_json` of a dict (what `Log.append` queued). The envelope's keys sort
    as body < kind < prev < v, so its canonical bytes are the body's bytes spliced in between.
    """
    check_kind(kind)
    if prev_leaf_hash is None:
        prev = GENESIS_PREV
    elif isinstance(prev_leaf_hash, bytes) and len(prev_leaf_hash) == 32:
        prev = prev_leaf_hash.hex()
    else:
        raise ValueError("previous leaf hash must be 32 bytes or None")
    if not body.startswith(b"{"):
        raise ValueError("entry body must be an object")
    kind_json = json.dumps(kind, ensure_ascii=False).encode("utf-8")
    return b'{"body":%s,"kind":%s,"prev":"%s","v":%d}' % (
        body,
        kind_json,
        prev.encode("ascii"),
        ENTRY_VERSION,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text} is not allowed")


def parse_entry(data: bytes) -> dict[str, Any]:
    """Parse entry bytes, checking the envelope and that the bytes are exactly canonical."""
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except UnicodeDecodeError as exc:
        raise ValueError("entry is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"entry is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"v", "kind", "prev", "body"}:
        raise ValueError("entry must be an object with exactly v, kind, prev and body")
    v = obj["v"]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError("entry version must be a positive integer")
    if not isinstance(obj["kind"], str) or not obj["kind"]:
        raise ValueError("entry kind must be a non-empty string")
    if not isinstance(obj["prev"], str) or not _HEX64.fullmatch(obj["prev"]):
        raise ValueError("entry prev must be 64 lowercase hex digits")
    if not isinstance(obj["body"], dict):
        raise ValueError("entry body must be an object")
    if canonical_json(obj) != data:
        raise ValueError("entry bytes are not in canonical form")
    return obj


def commit(secret: bytes, label: str, value: str) -> str:
    """Return a hex HMAC-SHA256 commitment to `value`, domain-separated by `label`.

    Callers normalise `value` first (e.g. strip spaces from a document number), or equal
    identifiers will commit differently.
    """
    if len(secret) < 16:
        raise ValueError("commitment secret must be at least 16 bytes")
    if not label:
        raise ValueError("commitment label must be non-empty")
    raw_label = label.encode("utf-8")
    if len(raw_label) > 0xFFFF:
        raise ValueError("commitment label is too long")
    # Length-prefixing the label keeps (label, value) pairs from running into each other.
    msg = _COMMIT_DOMAIN + len(raw_label).to_bytes(2, "big") + raw_label + value.encode("utf-8")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()
