"""The ledger's public HTTP interface (DESIGN.md §4): exact paths, JSON shapes and errors."""

from __future__ import annotations

import base64

import pytest

from gateway.ledger_api import current_log
from ledger import merkle
from ledger.note import Verifier, open_checkpoint
from ledger.receipts import damm_check_digit, format_code
from recpo.runtime import current_runtime


@pytest.fixture
def filled(app):
    """Ten entries in the app's log, sequenced; returns their receipt codes."""
    with app.app_context():
        log, database = current_log(), current_runtime().database
        codes = []
        with database.transaction() as session:
            for i in range(10):
                codes.append(log.append(session, "test", {"n": i, "place": "Ananea"}).receipt_code)
        log.sequence(database)
    return codes


def _tree(client, size: int) -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    for i in range(size):
        tree.append(base64.b64decode(client.get(f"/ledger/entries/{i}").json["entry"]))
    return tree


class TestCheckpointAndKey:
    def test_checkpoint_is_a_signed_note_verifiable_with_the_served_key(self, client, filled):
        key = client.get("/ledger/key")
        assert key.status_code == 200
        assert key.mimetype == "text/plain"
        assert key.get_data(as_text=True).count("\n") == 1
        verifier = Verifier.from_text(key.get_data(as_text=True).strip())
        response = client.get("/ledger/checkpoint")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        checkpoint, _ = open_checkpoint(response.get_data(as_text=True), [verifier])
        assert checkpoint.origin == "recpo.example/ledger"
        assert checkpoint.size == 10
        assert checkpoint.root == _tree(client, 10).root()

    def test_empty_log_serves_the_empty_tree(self, client):
        text = client.get("/ledger/checkpoint").get_data(as_text=True)
        lines = text.split("\n")
        assert lines[1] == "0"
        assert base64.b64decode(lines[2]) == merkle.EMPTY_ROOT


class TestEntries:
    def test_entry_shape(self, client, filled):
        response = client.get("/ledger/entries/3")
        assert response.status_code == 200
        body = response.json
        assert set(body) == {"index", "entry", "leaf_hash"}
        assert body["index"] == 3
        data = base64.b64decode(body["entry"])
        assert body["leaf_hash"] == merkle.leaf_hash(data).hex()
        assert b'"n":3' in data

    def test_beyond_the_tree_is_404(self, client, filled):
        assert client.get("/ledger/entries/10").status_code == 404


class TestProofs:
    def test_inclusion_proof_verifies(self, client, filled):
        tree = _tree(client, 10)
        for index in (0, 4, 9):
            response = client.get(f"/ledger/proof/inclusion?index={index}&size=10")
            assert response.status_code == 200
            body = response.json
            assert set(body) == {"index", "size", "leaf_hash", "path"}
            path = [bytes.fromhex(h) for h in body["path"]]
            leaf = bytes.fromhex(body["leaf_hash"])
            assert merkle.verify_inclusion(leaf, index, 10, path, tree.root())

    def test_consistency_proof_verifies(self, client, filled):
        tree = _tree(client, 10)
        response = client.get("/ledger/proof/consistency?old=3&new=10")
        assert response.status_code == 200
        body = response.json
        assert set(body) == {"old", "new", "path"}
        path = [bytes.fromhex(h) for h in body["path"]]
        assert merkle.verify_consistency(3, 10, tree.root(3), tree.root(10), path)

    @pytest.mark.parametrize(
        ("query", "status", "message"),
        [
            ("/ledger/proof/inclusion?size=5", 400, "'index' is required"),
            ("/ledger/proof/inclusion?index=x&size=5", 400, "non-negative whole number"),
            ("/ledger/proof/inclusion?index=-1&size=5", 400, "non-negative whole number"),
            ("/ledger/proof/inclusion?index=5&size=5", 400, "must be below size"),
            ("/ledger/proof/inclusion?index=1&size=11", 404, "beyond the tree"),
            ("/ledger/proof/consistency?old=4&new=3", 400, "must not exceed"),
            ("/ledger/proof/consistency?old=1&new=99", 404, "beyond the tree"),
            ("/ledger/proof/consistency?old=1", 400, "'new' is required"),
        ],
    )
    def test_bad_parameters(self, client, filled, query, status, message):
        response = client.get(query)
        assert response.status_code == status
        assert message in response.json["error"]


class TestTiles:
    def test_partial_level0_tile_holds_the_leaf_hashes(self, client, filled):
        response = client.get("/ledger/tile/0/000.p/10")
        assert response.status_code == 200
        assert response.mimetype == "application/octet-stream"
        tree = _tree(client, 10)
        assert response.data == b"".join(tree.subtree_hash(0, i) for i in range(10))

    def test_entry_bundle(self, client, filled):
        response = client.get("/ledger/tile/entries/000.p/10")
        assert response.status_code == 200
        entries = merkle.decode_entry_bundle(response.data)
        assert len(entries) == 10
        assert entries[4] == base64.b64decode(client.get("/ledger/entries/4").json["entry"])

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("tile/0/000", 404),  # the full tile does not exist yet
            ("tile/0/000.p/11", 404),  # wider than the tree
            ("tile/0/001.p/2", 404),
            ("tile/0/abc", 400),
            ("tile/0/000.p/0", 400),
        ],
    )
    def test_tiles_outside_the_checkpoint(self, client, filled, path, status):
        assert client.get(f"/ledger/{path}").status_code == status


class TestReceipts:
    def test_verified_receipt_as_json(self, client, filled):
        code = filled[6]
        response = client.get(f"/r/{code}", headers={"Accept": "application/json"})
        assert response.status_code == 200
        body = response.json
        assert body["status"] == "verified"
        assert body["code"] == format_code(code)
        assert body["index"] == 6
        assert body["record"] == {"n": 6, "place": "Ananea"}
        assert body["checkpoint"]["size"] == 10

    def test_formatted_code_with_spaces_is_accepted(self, client, filled):
        response = client.get(
            f"/r/{format_code(filled[0])}", headers={"Accept": "application/json"}
        )
        assert response.json["status"] == "verified"

    def test_html_page_escapes_and_shows_the_status(self, client, app):
        with app.app_context():
            log, database = current_log(), current_runtime().database
            with database.transaction() as session:
                code = log.append(session, "test", {"note": "<script>alert(1)</script>"})
            log.sequence(database)
        response = client.get(f"/r/{code.receipt_code}")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "verificado" in html
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;" in html

    def test_pending_receipt(self, client, app):
        with app.app_context():
            log, database = current_log(), current_runtime().database
            with database.transaction() as session:
                code = log.append(session, "test", {"n": 1}).receipt_code
        body = client.get(f"/r/{code}", headers={"Accept": "application/json"}).json
        assert body["status"] == "pending"

    def test_typo_not_found_and_malformed(self, client, filled):
        code = filled[2]
        wrong_digit = code[:3] + str((int(code[3]) + 1) % 10) + code[4:]
        assert client.get(f"/r/{wrong_digit}").status_code == 400
        assert (
            client.get(f"/r/{wrong_digit}", headers={"Accept": "application/json"}).json["status"]
            == "typo"
        )
        # A well-formed code (valid check digit) that was never issued.
        unknown = "123456789012345"
        unknown += damm_check_digit(unknown)
        response = client.get(f"/r/{unknown}", headers={"Accept": "application/json"})
        assert (response.status_code, response.json["status"]) == (404, "not_found")
        response = client.get("/r/12ab", headers={"Accept": "application/json"})
        assert (response.status_code, response.json["status"]) == (400, "malformed")
